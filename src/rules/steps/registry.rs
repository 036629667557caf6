//! Layer 2 (steps): the registry of step kinds. A step in YAML is a one-key mapping,
//! `{kind: config}` (`- to_number: [price]`); [`build_step`] looks the kind up in
//! [`REGISTRY`] (stateless kinds) or [`STATEFUL`] (kinds that keep state per key) and calls
//! its builder. Adding a kind is adding one file beside this one and one line here.

use serde_json::Value;

use super::stateful::Stateful;
use super::transform::{BuildContext, Builder, Transform, TransformError};
use super::{
    dedupe, explode, extract, keep, regex_replace, remove, rename, sequence_check, set, throttle,
    timestamp, to_number, to_string, window,
};
use crate::rules::yaml::Node;

/// Builds a stateful step of one kind from its config.
pub type StatefulBuilder =
    fn(&Value, &BuildContext<'_>) -> Result<Box<dyn Stateful>, TransformError>;

/// Every stateful kind and its builder.
const STATEFUL: &[(&str, StatefulBuilder)] = &[
    ("dedupe", dedupe::build),
    ("throttle", throttle::build),
    ("window", window::build),
    ("sequence_check", sequence_check::build),
];

/// A built step.
#[derive(Debug)]
pub enum BuiltStep {
    Plain(Box<dyn Transform>),
    Stateful(Box<dyn Stateful>),
}

/// Every built-in kind and its builder.
const REGISTRY: &[(&str, Builder)] = &[
    ("set", set::build),
    ("rename", rename::build),
    ("remove", remove::build),
    ("keep", keep::build),
    ("to_number", to_number::build),
    ("to_string", to_string::build),
    ("extract", extract::build),
    ("regex_replace", regex_replace::build),
    ("timestamp", timestamp::build),
    ("explode", explode::build),
];

/// The builder registered under `kind`.
pub fn builder(kind: &str) -> Option<Builder> {
    REGISTRY.iter().find(|(k, _)| *k == kind).map(|(_, b)| *b)
}

/// Builds one step from its YAML node (`{kind: config}`).
pub fn build_step(node: &Node, ctx: &BuildContext<'_>) -> Result<BuiltStep, TransformError> {
    let entry = match node.as_map() {
        Some([entry]) => entry,
        _ => {
            return Err(TransformError::StepShape {
                found: match node.as_map() {
                    Some(entries) => format!(
                        "a mapping with keys {}",
                        entries
                            .iter()
                            .map(|e| e.key.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => node.kind().into(),
                },
            })
        }
    };
    let config = entry.value.to_json();
    if let Some((_, build)) = STATEFUL.iter().find(|(k, _)| *k == entry.key) {
        return build(&config, ctx).map(BuiltStep::Stateful);
    }
    let build = builder(&entry.key).ok_or_else(|| TransformError::UnknownKind {
        kind: entry.key.clone(),
        known: REGISTRY
            .iter()
            .map(|(k, _)| *k)
            .chain(STATEFUL.iter().map(|(k, _)| *k))
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    build(&config, ctx).map(BuiltStep::Plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::steps::testing::*;

    #[test]
    fn registry_names_are_unique_and_resolve() {
        for (i, (kind, _)) in REGISTRY.iter().enumerate() {
            assert!(REGISTRY[i + 1..].iter().all(|(k, _)| k != kind), "{kind}");
            assert!(STATEFUL.iter().all(|(k, _)| k != kind), "{kind}");
            assert!(builder(kind).is_some());
        }
        assert!(builder("frobnicate").is_none());
    }

    #[test]
    fn step_shape_and_unknown_kind() {
        assert!(config_error("frobnicate: {}").contains("unknown transform kind `frobnicate`"));
        assert!(config_error("rename: {a: b}\nremove: [c]").contains("one key"));
        assert!(config_error("[rename]").contains("one key"));
    }
}
