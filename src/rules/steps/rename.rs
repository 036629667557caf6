//! `rename`: moves fields to new names (`- rename: { trade_ts_ms: event_ts_ms }`).
//! A missing source field is skipped; the target is overwritten.
//!
//! Layer 2 (a step kind): imports `steps/transform.rs`, `steps/fields.rs` and primitives.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fields::FieldPath;
use super::transform::{
    parse_field, parse_field_map, set_field, set_field_lazy, Applied, BuildContext, Transform,
    TransformError,
};
use crate::rules::context::MessageContext;
use crate::rules::lazy::LazyObject;

const KIND: &str = "rename";

#[derive(Debug)]
pub struct Rename {
    pairs: Vec<(FieldPath, FieldPath)>,
}

pub fn build(
    config: &Value,
    _ctx: &BuildContext<'_>,
) -> Result<Box<dyn Transform>, TransformError> {
    let raw: BTreeMap<String, String> = parse_field_map(KIND, config)?;
    let pairs = raw
        .iter()
        .map(|(from, to)| Ok((parse_field(KIND, from)?, parse_field(KIND, to)?)))
        .collect::<Result<_, TransformError>>()?;
    Ok(Box::new(Rename { pairs }))
}

impl Transform for Rename {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn apply_object(
        &self,
        object: Map<String, Value>,
        _ctx: &MessageContext<'_>,
    ) -> Result<Applied, TransformError> {
        let mut payload = Value::Object(object);
        for (from, to) in &self.pairs {
            if let Some(value) = from.take(&mut payload) {
                set_field(KIND, &mut payload, to, value)?;
            }
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
        for (from, to) in &self.pairs {
            if let Some(slot) = from.take_lazy(object) {
                set_field_lazy(KIND, object, to, slot)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use serde_json::json;

    #[test]
    fn renames_and_nests() {
        let out = apply("rename: {a: b, c: meta.c}", json!({"a": 1, "c": 2, "b": 0})).unwrap();
        assert_eq!(out, json!({"b": 1, "meta": {"c": 2}}));
    }

    #[test]
    fn missing_source_is_skipped() {
        assert_eq!(
            apply("rename: {a: b}", json!({"x": 1})).unwrap(),
            json!({"x": 1})
        );
    }

    #[test]
    fn invalid_config_and_wrong_types() {
        assert!(config_error("rename: [a, b]").contains("invalid config"));
        assert!(config_error("rename: {a: [b]}").contains("invalid config"));
        assert!(config_error("rename: {}").contains("at least one"));
        assert!(apply("rename: {a: b}", json!("text")).is_err());
        assert!(apply("rename: {a: b.c}", json!({"a": 1, "b": 2})).is_err());
    }
}
