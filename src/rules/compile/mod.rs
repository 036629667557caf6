//! Layer 4 of the rule language: compilation, from rule texts to a
//! [`RouteTable`](crate::rules::RouteTable). Pure (no
//! I/O: `load.rs` above reads the directories), and it collects **every** problem as
//! `file:line: route NAME: problem`.
//!
//! Read in this order:
//!
//! - [`input`]: what it takes — [`SourceFile`]s and [`TableSettings`] from `broker.yaml`;
//! - [`problem`]: what it gives on failure — [`RuleProblem`], [`TableError`];
//! - [`fields`]: reading serde-typed fields of a mapping; the name rule;
//! - [`pipeline`]: named pipelines from `transforms/`, a route's `transform:` list;
//! - [`source`], [`output`]: a route's `source:` and one `to:` entry;
//! - [`lint`]: an output against the route's own `from` (loops) and the streams;
//! - [`route`]: one `routes:` entry, field by field, using the files above;
//! - [`table`]: [`RouteTable::compile`](crate::rules::RouteTable::compile), every file, duplicate names across files.
//!
//! Imports the layers below (primitives, conditions, steps, the compiled route and table);
//! nothing below imports it.

pub(crate) mod fields;
pub(crate) mod input;
pub(crate) mod lint;
pub(crate) mod output;
pub(crate) mod pipeline;
pub(crate) mod problem;
pub(crate) mod route;
pub(crate) mod source;
pub(crate) mod table;

pub use input::{SourceFile, TableSettings};
pub use problem::{RuleProblem, TableError};
