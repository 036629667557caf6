//! Layer 2 of the rule language: the transform steps, one file per kind.
//!
//! - [`transform`]: the [`Transform`] trait every kind implements, [`TransformError`], the
//!   [`BuildContext`] builders get, and the config helpers the kinds share.
//! - [`fields`]: dotted field names (`meta.venue`) the kinds read and write.
//! - one file per built-in kind: [`set`], [`rename`], [`remove`], [`keep`], [`to_number`],
//!   [`to_string`], [`extract`], [`regex_replace`], [`timestamp`], [`explode`]. Each has a
//!   config type (unknown fields rejected), a `build` function that compiles templates,
//!   JSONPaths and regexes once, and a runtime type implementing [`Transform`].
//! - [`registry`]: kind name → builder; `build_step` builds one YAML step.
//! - [`pipeline`]: an ordered list of built steps, run on each message.
//!
//! - [`stateful`]: the [`Stateful`](stateful::Stateful) trait of the kinds that keep state
//!   per key, the [`PipelineState`] the route's task owns, bounded keyed state, and one
//!   file per stateful kind: [`dedupe`], [`throttle`], [`window`], [`sequence_check`].
//!
//! Steps see the payload as JSON and the message context (captures, headers, time); they
//! never do I/O. A stateful step gets its state from the caller with every message and at
//! every tick, so the state belongs to the route's task and the clock to the caller.
//!
//! Imports only the primitives of layer 1 (`context`, `headers`, `path`, `template`,
//! `value`, `yaml`); nothing below `rules/` imports this module back except the route
//! (`route.rs`) and its compiler (`compile/`), which sit above it.

pub(crate) mod fields;
pub(crate) mod pipeline;
pub(crate) mod registry;
pub(crate) mod stateful;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod transform;

mod dedupe;
mod explode;
mod extract;
mod keep;
mod regex_replace;
mod remove;
mod rename;
mod sequence_check;
mod set;
mod throttle;
mod timestamp;
mod to_number;
mod to_string;
mod window;

pub use pipeline::Pipeline;
pub use stateful::{Alert, PipelineState, StepEvents};
pub use transform::{Applied, BuildContext, TransformError};
