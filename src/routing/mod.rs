//! Pure rule language: subject patterns, conditions, templates and the compiled route table.
//! No actix and no I/O; used by the live router and by the `check` / `test` commands.

pub mod cli;
pub mod headers;
pub mod path;
pub mod yaml;
