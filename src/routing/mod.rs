//! Pure rule language: subject patterns, conditions, templates and the compiled route table.
//! No actix and no I/O; used by the live router and by the `check` / `test` commands.

pub mod cli;
pub mod condition;
pub mod headers;
pub mod path;
pub mod pattern;
pub mod route;
pub mod table;
pub mod template;
pub mod testcase;
pub mod yaml;

pub use headers::Headers;
pub use route::{
    CompiledRoute, FailureAction, OnError, OutputMessage, RouteError, RouteOutcome, RouteSource,
};
pub use table::{RouteResult, RouteTable, RuleProblem, TableError, TableSettings};

/// What templates, conditions and transforms may read about the message being routed.
#[derive(Debug, Clone, Copy)]
pub struct MessageContext<'a> {
    /// The subject the message arrived on.
    pub subject: &'a str,
    /// Captured values by capture index of the route's `from`.
    pub captures: &'a [&'a str],
    /// Headers of the incoming message.
    pub headers: &'a Headers,
    /// The routing time, epoch milliseconds (`{@now_ms}`).
    pub now_ms: i64,
}
