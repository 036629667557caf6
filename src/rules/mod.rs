//! The rule language: routes (`routes.d/*.yaml`) and transform pipelines (`transforms/*.yaml`)
//! compiled once into an immutable [`RouteTable`], and what a compiled route does to one
//! message. Pure: no actix and no network; `load.rs` is the only file that reads files.
//! Used by the live router (`crate::router`), the routes API and the `check` / `test`
//! commands.
//!
//! Read it top-down from the bottom layer; a module imports only modules of its own or a
//! lower layer, never one that imports it back.
//!
//! 1. **Primitives** — no rule-language imports beyond this layer:
//!    `headers` (the header multimap), `context` (what a message shows templates,
//!    conditions and steps), `value` (numbers as exchanges write them), `lazy` (a JSON
//!    object payload read field by field, and the `JsonRoot` the others read), `path`
//!    (JSONPath), `pattern` (subject patterns with captures), `template` (`{capture}`,
//!    `{$.path}`, `{@now_ms}`), `yaml` (YAML nodes that know their line).
//! 2. **What runs on a message** — `condition` (`when:`) and `steps` (the `Transform`
//!    trait, its registry, the pipeline, one file per step kind; stateful kinds go there).
//! 3. **The compiled route** — `message` (an output and the exact subject, header map and
//!    payload it hands to async-nats; the dead-letter headers), `route`
//!    (`CompiledRoute::process`: match, parse, filter, transform, render, `on_error`, dead
//!    letters) and `table` (every route; dry runs).
//! 4. **Compilation** — `compile` (texts to a table, every problem with `file:line`,
//!    lint).
//! 5. **Loading** — `load` (reads `routes.d/` and `transforms/`).
//! 6. **Tools** — `testcase` (`*.test.yaml` cases) and [`cli`] (`check` / `test`).
//!
//! Where new parts go: an expression language for computed values belongs in layer 1
//! beside `template`, so that `condition` and the steps can use it; a new step kind,
//! stateless or stateful, is one file in `steps/` registered in `steps/registry.rs`, and
//! its config is built by what `compile/pipeline.rs` already calls.

pub mod cli;
pub(crate) mod compile;
pub(crate) mod condition;
pub(crate) mod context;
pub(crate) mod expr;
pub(crate) mod headers;
pub(crate) mod lazy;
pub(crate) mod load;
pub(crate) mod message;
pub(crate) mod path;
pub(crate) mod pattern;
pub(crate) mod route;
pub(crate) mod steps;
pub(crate) mod table;
pub(crate) mod template;
pub(crate) mod testcase;
pub(crate) mod value;
pub(crate) mod yaml;

pub use compile::{RuleProblem, SourceFile, TableError, TableSettings};
pub use headers::{HeaderError, Headers};
pub use message::{NatsMessage, OutputMessage};
pub use route::{
    CompiledOutput, CompiledRoute, FailureAction, OnError, RouteError, RouteOutcome, RouteSource,
    RouteState,
};
pub use steps::StepEvents;
pub use table::{RouteResult, RouteTable};
