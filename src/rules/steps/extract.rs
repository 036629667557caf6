//! `extract`: copies JSONPath results into fields.
//!
//! ```yaml
//! - extract: { best_bid_price: "$.bids[0].price", bid_prices: "$.bids[*].price" }
//! ```
//! A singular path (names and indices only) sets its value; a path that can select several
//! values sets the list of them. A path that selects nothing leaves the field unset.
//!
//! Layer 2 (a step kind): imports `steps/transform.rs`, `steps/fields.rs` and primitives.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fields::FieldPath;
use super::transform::{
    parse_field, parse_field_map, set_field, Applied, BuildContext, Transform, TransformError,
};
use crate::rules::context::MessageContext;
use crate::rules::path::CompiledPath;

const KIND: &str = "extract";

#[derive(Debug)]
pub struct Extract {
    fields: Vec<(FieldPath, CompiledPath)>,
}

pub fn build(
    config: &Value,
    _ctx: &BuildContext<'_>,
) -> Result<Box<dyn Transform>, TransformError> {
    let raw: BTreeMap<String, String> = parse_field_map(KIND, config)?;
    let fields = raw
        .iter()
        .map(|(field, path)| {
            let path = CompiledPath::compile(path).map_err(|e| TransformError::Config {
                kind: KIND,
                message: e.to_string(),
            })?;
            Ok((parse_field(KIND, field)?, path))
        })
        .collect::<Result<_, TransformError>>()?;
    Ok(Box::new(Extract { fields }))
}

impl Transform for Extract {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn apply_object(
        &self,
        object: Map<String, Value>,
        _ctx: &MessageContext<'_>,
    ) -> Result<Applied, TransformError> {
        let mut payload = Value::Object(object);
        let mut found = Vec::with_capacity(self.fields.len());
        for (field, path) in &self.fields {
            let value = if path.is_singular() {
                path.first(&payload).cloned()
            } else {
                let all = path.all(&payload);
                (!all.is_empty()).then(|| Value::Array(all.into_iter().cloned().collect()))
            };
            if let Some(v) = value {
                found.push((field, v));
            }
        }
        for (field, v) in found {
            set_field(KIND, &mut payload, field, v)?;
        }
        Ok(Applied::One(payload))
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use serde_json::json;

    #[test]
    fn extracts_single_and_many() {
        let book = json!({"bids": [{"price": "2"}, {"price": "1"}]});
        let out = apply(
            "extract: {best: '$.bids[0].price', all: '$.bids[*].price', none: '$.asks[0].price'}",
            book.clone(),
        )
        .unwrap();
        assert_eq!(out["best"], json!("2"));
        assert_eq!(out["all"], json!(["2", "1"]));
        assert!(
            out.get("none").is_none(),
            "missing path leaves the field unset"
        );
    }

    #[test]
    fn invalid_config_and_wrong_types() {
        assert!(config_error("extract: {a: 'bids'}").contains("jsonpath"));
        assert!(config_error("extract: {a: '$.['}").contains("jsonpath"));
        assert!(config_error("extract: [a]").contains("invalid config"));
        assert!(config_error("extract: {}").contains("at least one"));
        assert!(apply("extract: {a: '$.x'}", json!([1])).is_err());
    }
}
