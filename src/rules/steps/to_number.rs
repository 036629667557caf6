//! `to_number`: turns numeric strings into JSON numbers (`- to_number: [price, quantity]`).
//! Integers stay integers (`"12"` → `12`), decimals become floats (`"67234.56000000"` →
//! `67234.56`). Missing fields and `null` are left alone; numbers stay as they are; any
//! other value (text that is not a number, a list, an object, a boolean) is an error.
//!
//! Layer 2 (a step kind): imports `steps/transform.rs`, `steps/fields.rs` and primitives.

use serde_json::{Map, Number, Value};

use super::fields::FieldPath;
use super::transform::{parse_fields, Applied, BuildContext, Transform, TransformError};
use crate::rules::context::MessageContext;
use crate::rules::lazy::{LazyObject, Slot};
use crate::rules::value::parse_decimal;

const KIND: &str = "to_number";

#[derive(Debug)]
pub struct ToNumber {
    fields: Vec<FieldPath>,
}

pub fn build(
    config: &Value,
    _ctx: &BuildContext<'_>,
) -> Result<Box<dyn Transform>, TransformError> {
    Ok(Box::new(ToNumber {
        fields: parse_fields(KIND, config)?,
    }))
}

/// The number a numeric string stands for: an integer when it is written as one.
fn number_from_text(text: &str) -> Option<Number> {
    let t = text.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Some(Number::from(i));
    }
    if let Ok(u) = t.parse::<u64>() {
        return Some(Number::from(u));
    }
    parse_decimal(t).and_then(Number::from_f64)
}

impl Transform for ToNumber {
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
            convert(field, slot)?;
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
            // a plain string converts without being parsed first
            if let Some(key) = field.top_level() {
                if let Some(n) = object.plain_str(key).and_then(number_from_text) {
                    object.insert(key, Slot::from_value(Value::Number(n)));
                    continue;
                }
            }
            // read first: a field left as it is stays verbatim
            if matches!(
                field.get_lazy(object),
                None | Some(Value::Null | Value::Number(_))
            ) {
                continue;
            }
            if let Some(slot) = field.get_mut_lazy(object) {
                convert(field, slot)?;
            }
        }
        Ok(())
    }
}

/// A numeric string becomes its number; `null` and numbers stay; anything else is an error.
fn convert(field: &FieldPath, slot: &mut Value) -> Result<(), TransformError> {
    let number = match slot {
        Value::Null | Value::Number(_) => return Ok(()),
        Value::String(text) => number_from_text(text),
        _ => None,
    };
    match number {
        Some(n) => {
            *slot = Value::Number(n);
            Ok(())
        }
        None => Err(TransformError::wrong_type(
            KIND,
            field.as_str(),
            "a numeric string",
            slot,
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use serde_json::json;

    #[test]
    fn converts_numeric_strings() {
        let out = apply(
            "to_number: [price, quantity, id, already, n, missing]",
            json!({"price": "67234.56000000", "quantity": "12", "id": "18446744073709551615",
                   "already": 1.5, "n": null}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"price": 67234.56, "quantity": 12, "id": 18446744073709551615u64,
                   "already": 1.5, "n": null})
        );
    }

    #[test]
    fn wrong_types_are_errors() {
        for bad in [
            json!("abc"),
            json!("inf"),
            json!([1]),
            json!({"a": 1}),
            json!(true),
        ] {
            let err = apply("to_number: [p]", json!({"p": bad})).unwrap_err();
            assert!(
                err.to_string().contains("expected a numeric string"),
                "{err}"
            );
        }
        assert!(apply("to_number: [p]", json!("x")).is_err());
    }

    #[test]
    fn invalid_config() {
        assert!(config_error("to_number: price").contains("invalid config"));
        assert!(config_error("to_number: []").contains("at least one"));
        assert!(config_error("to_number: {fields: [a]}").contains("invalid config"));
    }
}
