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
//! Steps see the payload as JSON and the message context (captures, headers, time); they
//! never do I/O. The kinds shipped today are stateless. Stateful kinds (dedupe, throttle,
//! window, sequence checks) go here too, one file each, registered in [`registry`] like the
//! others; their per-key state will belong to the route's task.
//!
//! Imports only the primitives of layer 1 (`context`, `headers`, `path`, `template`,
//! `value`, `yaml`); nothing below `rules/` imports this module back except the route
//! (`route.rs`) and its compiler (`compile/`), which sit above it.

pub(crate) mod fields;
pub(crate) mod pipeline;
pub(crate) mod registry;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod transform;

mod explode;
mod extract;
mod keep;
mod regex_replace;
mod remove;
mod rename;
mod set;
mod timestamp;
mod to_number;
mod to_string;

pub use pipeline::Pipeline;
pub use transform::{Applied, BuildContext, TransformError};
