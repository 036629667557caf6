//! Layer 2 (steps): what every step kind implements and shares. A step is built once from
//! its config ([`Builder`], given a [`BuildContext`]) into a boxed [`Transform`], and then
//! applied to one message at a time; it never does I/O. The config helpers below are what
//! the kinds share (serde errors naming the kind and field, field lists and maps).
//!
//! Imports the primitives only (context, templates, values); the kinds, the registry and the
//! pipeline import this file, never the other way round.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::fields::FieldPath;
use crate::rules::context::MessageContext;
use crate::rules::lazy::{LazyObject, Slot};
use crate::rules::template::{CaptureScope, TemplateError};
use crate::rules::value::describe;

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
    /// A message for a window that closed already (`window` with `late: dead_letter`).
    #[error("{kind}: late: {message}")]
    Late { kind: &'static str, message: String },
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
    /// True when the kind also works on a lazily read object ([`Transform::apply_lazy`]),
    /// turning one message into one, with the same effect and errors as `apply_object`.
    fn is_lazy(&self) -> bool {
        false
    }
    /// Applies the step to a lazily read object, reading and changing only the fields it
    /// names. Called only when [`Transform::is_lazy`] says so.
    fn apply_lazy(
        &self,
        _object: &mut LazyObject<'_>,
        _ctx: &MessageContext<'_>,
    ) -> Result<(), TransformError> {
        Err(TransformError::Failed {
            kind: self.kind(),
            field: String::new(),
            message: "internal: the step has no lazy form".into(),
        })
    }
}

/// What builders may know: which capture names templates may use.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    pub scope: CaptureScope<'a>,
}

/// Builds a step of one kind from its config.
pub type Builder = fn(&Value, &BuildContext<'_>) -> Result<Box<dyn Transform>, TransformError>;

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
    field.set(payload, value).map_err(set_failed(kind, field))
}

/// The error of a field that could not be set (a parent is not an object).
fn set_failed<'f>(
    kind: &'static str,
    field: &'f FieldPath,
) -> impl FnOnce(String) -> TransformError + 'f {
    move |message| TransformError::Failed {
        kind,
        field: field.as_str().into(),
        message,
    }
}

/// [`set_field`] on a lazily read payload.
pub fn set_field_lazy<'a>(
    kind: &'static str,
    payload: &mut LazyObject<'a>,
    field: &FieldPath,
    slot: Slot<'a>,
) -> Result<(), TransformError> {
    field
        .set_lazy(payload, slot)
        .map_err(set_failed(kind, field))
}

pub fn parse_field(kind: &'static str, name: &str) -> Result<FieldPath, TransformError> {
    FieldPath::parse(name).map_err(|message| TransformError::Config { kind, message })
}
