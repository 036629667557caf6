//! `to_string`: turns numbers and booleans into text (`- to_string: [trade_id]`).
//! Missing fields and `null` are left alone; lists and objects are an error.
//!
//! Layer 2 (a step kind): imports `steps/transform.rs`, `steps/fields.rs` and primitives.

use serde_json::{Map, Value};

use super::fields::FieldPath;
use super::transform::{parse_fields, Applied, BuildContext, Transform, TransformError};
use crate::rules::context::MessageContext;

const KIND: &str = "to_string";

#[derive(Debug)]
pub struct ToString {
    fields: Vec<FieldPath>,
}

pub fn build(
    config: &Value,
    _ctx: &BuildContext<'_>,
) -> Result<Box<dyn Transform>, TransformError> {
    Ok(Box::new(ToString {
        fields: parse_fields(KIND, config)?,
    }))
}

impl Transform for ToString {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn apply_object(
        &self,
        object: Map<String, Value>,
        _ctx: &MessageContext<'_>,
    ) -> Result<Applied, TransformError> {
        let mut payload = Value::Object(object);
        for field in &self.fields {
            let Some(slot) = field.get_mut(&mut payload) else {
                continue;
            };
            match slot {
                Value::Null | Value::String(_) => {}
                Value::Number(n) => *slot = Value::String(n.to_string()),
                Value::Bool(b) => *slot = Value::String(b.to_string()),
                other => {
                    return Err(TransformError::wrong_type(
                        KIND,
                        field.as_str(),
                        "a scalar",
                        other,
                    ))
                }
            }
        }
        Ok(Applied::One(payload))
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use serde_json::json;

    #[test]
    fn converts_scalars() {
        let out = apply(
            "to_string: [a, b, c, d, n, missing]",
            json!({"a": 5123456789u64, "b": 1.5, "c": true, "d": "x", "n": null}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"a": "5123456789", "b": "1.5", "c": "true", "d": "x", "n": null})
        );
    }

    #[test]
    fn wrong_types_and_invalid_config() {
        assert!(apply("to_string: [a]", json!({"a": [1]})).is_err());
        assert!(apply("to_string: [a]", json!({"a": {}})).is_err());
        assert!(apply("to_string: [a]", json!(null)).is_err());
        assert!(config_error("to_string: 5").contains("invalid config"));
        assert!(config_error("to_string: ['']").contains("empty"));
    }
}
