//! `keep`: keeps only the listed top-level fields (`- keep: [symbol, price, quantity]`);
//! listed fields that are missing are simply absent from the result.
//!
//! Layer 2 (a step kind): imports `steps/transform.rs`, `steps/fields.rs` and primitives.

use serde_json::{Map, Value};

use super::transform::{parse_config, Applied, BuildContext, Transform, TransformError};
use crate::rules::context::MessageContext;

const KIND: &str = "keep";

#[derive(Debug)]
pub struct Keep {
    fields: Vec<String>,
}

pub fn build(
    config: &Value,
    _ctx: &BuildContext<'_>,
) -> Result<Box<dyn Transform>, TransformError> {
    let fields: Vec<String> = parse_config(KIND, config)?;
    if fields.is_empty() || fields.iter().any(|f| f.is_empty() || f.contains('.')) {
        return Err(TransformError::Config {
            kind: KIND,
            message: "needs a list of top-level field names (no dots)".into(),
        });
    }
    Ok(Box::new(Keep { fields }))
}

impl Transform for Keep {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn apply_object(
        &self,
        mut map: Map<String, Value>,
        _ctx: &MessageContext<'_>,
    ) -> Result<Applied, TransformError> {
        let mut kept = Map::new();
        for f in &self.fields {
            if let Some(v) = map.remove(f) {
                kept.insert(f.clone(), v);
            }
        }
        Ok(Applied::One(Value::Object(kept)))
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use serde_json::json;

    #[test]
    fn keeps_listed_fields_only() {
        let out = apply(
            "keep: [a, c, missing]",
            json!({"a": 1, "b": 2, "c": {"d": 3}}),
        )
        .unwrap();
        assert_eq!(out, json!({"a": 1, "c": {"d": 3}}));
    }

    #[test]
    fn invalid_config_and_wrong_types() {
        assert!(config_error("keep: {a: 1}").contains("invalid config"));
        assert!(config_error("keep: []").contains("top-level"));
        assert!(config_error("keep: [a.b]").contains("top-level"));
        assert!(apply("keep: [a]", json!([1])).is_err());
    }
}
