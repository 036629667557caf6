//! `remove`: deletes fields (`- remove: [publisher, data_source]`); missing ones are skipped.
//!
//! Layer 2 (a step kind): imports `steps/transform.rs`, `steps/fields.rs` and primitives.

use serde_json::{Map, Value};

use super::fields::FieldPath;
use super::transform::{parse_fields, Applied, BuildContext, Transform, TransformError};
use crate::rules::context::MessageContext;
use crate::rules::lazy::LazyObject;

const KIND: &str = "remove";

#[derive(Debug)]
pub struct Remove {
    fields: Vec<FieldPath>,
}

pub fn build(
    config: &Value,
    _ctx: &BuildContext<'_>,
) -> Result<Box<dyn Transform>, TransformError> {
    Ok(Box::new(Remove {
        fields: parse_fields(KIND, config)?,
    }))
}

impl Transform for Remove {
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
            field.take(&mut payload);
        }
        Ok(Applied::One(payload))
    }

    fn is_lazy(&self) -> bool {
        true
    }

    fn apply_lazy(
        &self,
        object: &mut LazyObject<'_>,
        _ctx: &MessageContext<'_>,
    ) -> Result<(), TransformError> {
        for field in &self.fields {
            field.take_lazy(object);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use serde_json::json;

    #[test]
    fn removes_present_and_skips_missing() {
        let out = apply(
            "remove: [a, m.x, nope]",
            json!({"a": 1, "b": 2, "m": {"x": 1, "y": 2}}),
        );
        assert_eq!(out.unwrap(), json!({"b": 2, "m": {"y": 2}}));
    }

    #[test]
    fn invalid_config_and_wrong_types() {
        assert!(config_error("remove: a").contains("invalid config"));
        assert!(config_error("remove: [1]").contains("invalid config"));
        assert!(config_error("remove: []").contains("at least one"));
        assert!(apply("remove: [a]", json!(5)).is_err());
    }
}
