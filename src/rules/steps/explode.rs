//! `explode`: one message per element of an array field, e.g. one per order-book level.
//!
//! ```yaml
//! - explode: { field: bids, carry: [exchange, symbol, ts_ms], index: level }
//! - explode: { field: trades, as: trade }
//! ```
//! Without `as`, each element must be an object and becomes the message; with `as`, the
//! element is put under that field. `carry` copies named fields of the parent into every
//! message (missing ones are skipped) and `index` records the element's position. An empty
//! array gives no messages. A missing field or a non-array is an error.
//!
//! Layer 2 (a step kind): imports `steps/transform.rs`, `steps/fields.rs` and primitives.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::FieldPath;
use super::transform::{
    parse_config, parse_field, set_field, Applied, BuildContext, Transform, TransformError,
};
use crate::rules::context::MessageContext;

const KIND: &str = "explode";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplodeConfig {
    field: String,
    #[serde(default, rename = "as")]
    as_field: Option<String>,
    #[serde(default)]
    carry: Vec<String>,
    #[serde(default)]
    index: Option<String>,
}

#[derive(Debug)]
pub struct Explode {
    field: FieldPath,
    as_field: Option<FieldPath>,
    carry: Vec<FieldPath>,
    index: Option<FieldPath>,
}

pub fn build(
    config: &Value,
    _ctx: &BuildContext<'_>,
) -> Result<Box<dyn Transform>, TransformError> {
    let c: ExplodeConfig = parse_config(KIND, config)?;
    Ok(Box::new(Explode {
        field: parse_field(KIND, &c.field)?,
        as_field: c
            .as_field
            .as_deref()
            .map(|f| parse_field(KIND, f))
            .transpose()?,
        carry: c
            .carry
            .iter()
            .map(|f| parse_field(KIND, f))
            .collect::<Result<_, _>>()?,
        index: c
            .index
            .as_deref()
            .map(|f| parse_field(KIND, f))
            .transpose()?,
    }))
}

impl Transform for Explode {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn apply_object(
        &self,
        object: Map<String, Value>,
        _ctx: &MessageContext<'_>,
    ) -> Result<Applied, TransformError> {
        let mut payload = Value::Object(object);
        let items = match self.field.take(&mut payload) {
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(TransformError::wrong_type(
                    KIND,
                    self.field.as_str(),
                    "a list",
                    &other,
                ))
            }
            None => {
                return Err(TransformError::Missing {
                    kind: KIND,
                    field: self.field.as_str().into(),
                })
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let mut msg = match &self.as_field {
                Some(as_field) => {
                    let mut m = Value::Object(Map::new());
                    set_field(KIND, &mut m, as_field, item)?;
                    m
                }
                None if item.is_object() => item,
                None => {
                    return Err(TransformError::wrong_type(
                        KIND,
                        self.field.as_str(),
                        "a list of objects (or set `as`)",
                        &item,
                    ))
                }
            };
            for carried in &self.carry {
                if let Some(v) = carried.get(&payload) {
                    set_field(KIND, &mut msg, carried, v.clone())?;
                }
            }
            if let Some(index) = &self.index {
                set_field(KIND, &mut msg, index, Value::from(i))?;
            }
            out.push(msg);
        }
        Ok(Applied::Many(out))
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use crate::rules::steps::transform::Applied;
    use serde_json::json;

    fn explode(cfg: &str, payload: serde_json::Value) -> Result<Vec<serde_json::Value>, String> {
        let step = build_plain(cfg).map_err(|e| e.to_string())?;
        match run(step.as_ref(), payload).map_err(|e| e.to_string())? {
            Applied::Many(v) => Ok(v),
            Applied::One(v) => Ok(vec![v]),
        }
    }

    #[test]
    fn one_message_per_level_with_carried_fields() {
        let out = explode(
            "explode: {field: bids, carry: [symbol, missing], index: level}",
            json!({"symbol": "BTC", "other": 1, "bids": [{"price": "2"}, {"price": "1"}]}),
        )
        .unwrap();
        assert_eq!(
            out,
            vec![
                json!({"price": "2", "symbol": "BTC", "level": 0}),
                json!({"price": "1", "symbol": "BTC", "level": 1})
            ]
        );
    }

    #[test]
    fn scalars_with_as_and_empty_arrays() {
        let out = explode("explode: {field: xs, as: x}", json!({"xs": [1, 2]})).unwrap();
        assert_eq!(out, vec![json!({"x": 1}), json!({"x": 2})]);
        assert!(explode("explode: {field: xs, as: x}", json!({"xs": []}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn missing_and_wrong_types() {
        assert!(explode("explode: {field: xs}", json!({}))
            .unwrap_err()
            .contains("missing"));
        assert!(explode("explode: {field: xs}", json!({"xs": 5}))
            .unwrap_err()
            .contains("a list"));
        assert!(explode("explode: {field: xs}", json!({"xs": [1]}))
            .unwrap_err()
            .contains("objects"));
    }

    #[test]
    fn invalid_config() {
        assert!(config_error("explode: {carry: [a]}").contains("field"));
        assert!(config_error("explode: {field: a, keep: [b]}").contains("unknown field"));
        assert!(config_error("explode: {field: a, carry: b}").contains("invalid config"));
    }
}
