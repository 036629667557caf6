//! The `Transform` trait, its registry, and one file per built-in step kind.
//!
//! A step in YAML is a one-key mapping, `{kind: config}` (`- to_number: [price]`). The
//! registry maps the kind to a builder that deserializes the config type of that kind
//! (unknown fields rejected), compiles templates, JSONPaths and regexes once, and returns a
//! boxed [`Transform`]. Adding a kind is adding one file and one line to [`REGISTRY`].
//! Transforms see the payload as JSON and the [`MessageContext`] (captures, headers, time);
//! they never do I/O. Fields are named with dots for nesting (`meta.venue`).

mod explode;
mod extract;
mod fields;
mod keep;
mod regex_replace;
mod remove;
mod rename;
mod set;
mod timestamp;
mod to_number;
mod to_string;

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::routing::template::{CaptureScope, TemplateError};
use crate::routing::yaml::{Node, Problem};
use crate::routing::MessageContext;

pub use fields::FieldPath;

/// Why a step could not be built, or failed on one message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransformError {
    #[error("unknown transform kind `{kind}` (known: {known})")]
    UnknownKind { kind: String, known: String },
    #[error("a transform step is a mapping with one key, the kind (`- rename: {{a: b}}`), found {found}")]
    StepShape { found: String },
    #[error("{kind}: invalid config: {message}")]
    Config { kind: &'static str, message: String },
    #[error("{kind}: the payload is not a json object")]
    NotObject { kind: &'static str },
    #[error("{kind}: field {field:?} is missing")]
    Missing { kind: &'static str, field: String },
    #[error("{kind}: field {field:?} is {found}, expected {expected}")]
    WrongType {
        kind: &'static str,
        field: String,
        expected: &'static str,
        found: String,
    },
    #[error("{kind}: {source}")]
    Template {
        kind: &'static str,
        source: TemplateError,
    },
    #[error("{kind}: field {field:?}: {message}")]
    Failed {
        kind: &'static str,
        field: String,
        message: String,
    },
}

impl TransformError {
    /// A `WrongType` error describing `found` by its JSON type.
    pub fn wrong_type(
        kind: &'static str,
        field: &str,
        expected: &'static str,
        found: &Value,
    ) -> Self {
        TransformError::WrongType {
            kind,
            field: field.into(),
            expected,
            found: describe(found),
        }
    }
}

/// A JSON value described for an error message: its type and a short rendering.
pub fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => return "null".into(),
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => return "a list".into(),
        Value::Object(_) => return "an object".into(),
    };
    let mut text = value.to_string();
    if text.chars().count() > 40 {
        text = text.chars().take(40).collect();
        text.push('…');
    }
    format!("{kind} ({text})")
}

/// What one step did to one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The (changed) message.
    One(Value),
    /// Several messages in its place (`explode`); may be empty.
    Many(Vec<Value>),
}

/// One compiled step. Every kind works on JSON objects: a kind implements
/// [`Transform::apply_object`], and [`Transform::apply`] refuses any other payload.
pub trait Transform: Send + Sync + fmt::Debug {
    /// The registry key of this kind.
    fn kind(&self) -> &'static str;
    /// Applies the step to one message that is a JSON object.
    fn apply_object(
        &self,
        object: Map<String, Value>,
        ctx: &MessageContext<'_>,
    ) -> Result<Applied, TransformError>;
    /// Applies the step to one message; a payload that is not an object is an error.
    fn apply(&self, payload: Value, ctx: &MessageContext<'_>) -> Result<Applied, TransformError> {
        match payload {
            Value::Object(object) => self.apply_object(object, ctx),
            _ => Err(TransformError::NotObject { kind: self.kind() }),
        }
    }
}

/// What builders may know: which capture names templates may use.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    pub scope: CaptureScope<'a>,
}

/// Builds a step of one kind from its config.
pub type Builder = fn(&Value, &BuildContext<'_>) -> Result<Box<dyn Transform>, TransformError>;

/// Every built-in kind and its builder.
pub const REGISTRY: &[(&str, Builder)] = &[
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
pub fn build_step(
    node: &Node,
    ctx: &BuildContext<'_>,
) -> Result<Box<dyn Transform>, TransformError> {
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
    let build = builder(&entry.key).ok_or_else(|| TransformError::UnknownKind {
        kind: entry.key.clone(),
        known: REGISTRY
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    build(&entry.value.to_json(), ctx)
}

/// Deserializes a step's config, naming the kind and the field on failure.
pub fn parse_config<T: DeserializeOwned>(
    kind: &'static str,
    config: &Value,
) -> Result<T, TransformError> {
    serde_path_to_error::deserialize(config).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        TransformError::Config {
            kind,
            message: if path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            },
        }
    })
}

/// A config that lists dotted field names (`[price, meta.venue]`), at least one.
pub fn parse_fields(kind: &'static str, config: &Value) -> Result<Vec<FieldPath>, TransformError> {
    let names: Vec<String> = parse_config(kind, config)?;
    if names.is_empty() {
        return Err(needs_a_field(kind));
    }
    names.iter().map(|n| parse_field(kind, n)).collect()
}

/// A config that maps field names to values (`{a: b}`), at least one entry.
pub fn parse_field_map<T: DeserializeOwned>(
    kind: &'static str,
    config: &Value,
) -> Result<BTreeMap<String, T>, TransformError> {
    let map: BTreeMap<String, T> = parse_config(kind, config)?;
    if map.is_empty() {
        return Err(needs_a_field(kind));
    }
    Ok(map)
}

fn needs_a_field(kind: &'static str) -> TransformError {
    TransformError::Config {
        kind,
        message: "needs at least one field".into(),
    }
}

/// Sets `field` in `payload`, naming the kind and the field when a parent is not an object.
pub fn set_field(
    kind: &'static str,
    payload: &mut Value,
    field: &FieldPath,
    value: Value,
) -> Result<(), TransformError> {
    field
        .set(payload, value)
        .map_err(|message| TransformError::Failed {
            kind,
            field: field.as_str().into(),
            message,
        })
}

pub fn parse_field(kind: &'static str, name: &str) -> Result<FieldPath, TransformError> {
    FieldPath::parse(name).map_err(|message| TransformError::Config { kind, message })
}

/// An ordered list of steps, run on each message in turn.
#[derive(Debug, Default)]
pub struct Pipeline {
    steps: Vec<Box<dyn Transform>>,
}

impl Pipeline {
    /// Builds every step of `steps`, recording a problem (at the step's line) for each
    /// step that does not build.
    pub fn build(steps: &[&Node], ctx: &BuildContext<'_>, problems: &mut Vec<Problem>) -> Pipeline {
        let mut built = Vec::with_capacity(steps.len());
        for (i, node) in steps.iter().enumerate() {
            match build_step(node, ctx) {
                Ok(step) => built.push(step),
                Err(e) => problems.push(Problem::new(node.line, format!("step {}: {e}", i + 1))),
            }
        }
        Pipeline { steps: built }
    }

    pub fn from_steps(steps: Vec<Box<dyn Transform>>) -> Pipeline {
        Pipeline { steps }
    }

    /// Adds the steps of `other` after this pipeline's.
    pub fn append(&mut self, other: Pipeline) {
        self.steps.extend(other.steps);
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Runs every step; the result holds zero or more messages.
    pub fn run(
        &self,
        payload: Value,
        ctx: &MessageContext<'_>,
    ) -> Result<Vec<Value>, TransformError> {
        Ok(match self.apply(payload, ctx)? {
            Applied::One(v) => vec![v],
            Applied::Many(vs) => vs,
        })
    }

    /// Runs every step; a single message (the common case) stays off the heap-allocated list.
    pub fn apply(
        &self,
        payload: Value,
        ctx: &MessageContext<'_>,
    ) -> Result<Applied, TransformError> {
        let mut current = Applied::One(payload);
        for step in &self.steps {
            current = match current {
                Applied::One(v) => step.apply(v, ctx)?,
                Applied::Many(messages) => {
                    let mut next = Vec::with_capacity(messages.len());
                    for m in messages {
                        match step.apply(m, ctx)? {
                            Applied::One(v) => next.push(v),
                            Applied::Many(vs) => next.extend(vs),
                        }
                    }
                    Applied::Many(next)
                }
            };
        }
        Ok(current)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the per-kind tests: build a step from inline YAML, apply it.
    use super::*;
    use crate::routing::headers::Headers;
    use crate::routing::yaml;

    pub const NOW: i64 = 1_795_290_133_500;

    pub fn build(text: &str) -> Result<Box<dyn Transform>, TransformError> {
        let node = yaml::parse(text).map_err(|e| TransformError::StepShape {
            found: e.to_string(),
        })?;
        let names = vec!["exchange".to_string(), "symbol".to_string()];
        build_step(
            &node,
            &BuildContext {
                scope: CaptureScope::Names(&names),
            },
        )
    }

    pub fn run(step: &dyn Transform, payload: Value) -> Result<Applied, TransformError> {
        let headers = Headers::new();
        let ctx = MessageContext {
            subject: "trade.binance.spot.BTC-USDT",
            captures: &["binance", "BTC-USDT"],
            headers: &headers,
            now_ms: NOW,
        };
        step.apply(payload, &ctx)
    }

    /// Builds and applies a step that must give exactly one message.
    pub fn apply(text: &str, payload: Value) -> Result<Value, TransformError> {
        let step = build(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        match run(step.as_ref(), payload)? {
            Applied::One(v) => Ok(v),
            Applied::Many(vs) => panic!("expected one message, got {vs:?}"),
        }
    }

    pub fn config_error(text: &str) -> String {
        match build(text) {
            Ok(step) => panic!("{text} built: {step:?}"),
            Err(e) => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::routing::headers::Headers;
    use crate::routing::yaml;
    use serde_json::json;

    #[test]
    fn registry_names_are_unique_and_resolve() {
        for (i, (kind, _)) in REGISTRY.iter().enumerate() {
            assert!(REGISTRY[i + 1..].iter().all(|(k, _)| k != kind), "{kind}");
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

    #[test]
    fn pipeline_runs_steps_in_order_and_fans_out() {
        let node = yaml::parse(
            "- rename: {levels: bids}\n- explode: {field: bids, carry: [symbol]}\n- to_number: [price]\n",
        )
        .unwrap();
        let steps: Vec<&Node> = node.as_seq().unwrap().iter().collect();
        let mut problems = Vec::new();
        let ctx = BuildContext {
            scope: CaptureScope::Unchecked,
        };
        let pipeline = Pipeline::build(&steps, &ctx, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(pipeline.len(), 3);
        let headers = Headers::new();
        let mctx = MessageContext {
            subject: "s",
            captures: &[],
            headers: &headers,
            now_ms: 0,
        };
        let out = pipeline
            .run(
                json!({"symbol": "X", "levels": [{"price": "1.5"}, {"price": "2"}]}),
                &mctx,
            )
            .unwrap();
        assert_eq!(
            out,
            vec![
                json!({"symbol": "X", "price": 1.5}),
                json!({"symbol": "X", "price": 2})
            ]
        );
    }

    #[test]
    fn pipeline_build_reports_each_bad_step_with_its_line() {
        let node = yaml::parse("- rename: {a: b}\n- nope: 1\n- to_number: 5\n").unwrap();
        let steps: Vec<&Node> = node.as_seq().unwrap().iter().collect();
        let mut problems = Vec::new();
        let ctx = BuildContext {
            scope: CaptureScope::Unchecked,
        };
        Pipeline::build(&steps, &ctx, &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].line, 2);
        assert!(problems[0]
            .message
            .starts_with("step 2: unknown transform kind"));
        assert_eq!(problems[1].line, 3);
    }

    #[test]
    fn describe_is_short() {
        assert_eq!(describe(&json!("x")), "a string (\"x\")");
        assert_eq!(describe(&json!([1])), "a list");
        assert!(describe(&json!("y".repeat(100))).ends_with("…)"));
    }
}
