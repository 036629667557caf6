//! `set`: sets fields to templates or literal values.
//!
//! ```yaml
//! - set: { venue: "{exchange}.{market_type}", routed_at_ms: "{@now_ms}", schema: 2 }
//! ```
//! Strings are templates; one placeholder alone keeps its JSON type (`"{@now_ms}"` is a
//! number). A mapping `{expr: "…"}` is an expression (see `rules/expr.rs`), computed:
//!
//! ```yaml
//! - set:
//!     notional: { expr: "price * quantity" }
//!     mid: { expr: "(bids[0].price + asks[0].price) / 2" }
//!     spread_bps: { expr: "round((asks[0].price - bids[0].price) / asks[0].price * 10000, 2)" }
//! ```
//! Every value is rendered from the payload as it was before this step, then set; a
//! missing field or a value of the wrong type fails the step (the route's `on_error`).
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
use crate::rules::expr::Expression;
use crate::rules::lazy::{JsonRoot, LazyObject, Slot};
use crate::rules::template::Template;

const KIND: &str = "set";

#[derive(Debug)]
enum SetValue {
    Literal(Value),
    Template(Template),
    Expr(Expression),
}

#[derive(Debug)]
pub struct Set {
    fields: Vec<(FieldPath, SetValue)>,
}

pub fn build(config: &Value, ctx: &BuildContext<'_>) -> Result<Box<dyn Transform>, TransformError> {
    let raw: BTreeMap<String, Value> = parse_field_map(KIND, config)?;
    let mut fields = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        let field = parse_field(KIND, &name)?;
        let value = match value {
            Value::String(text) => SetValue::Template(
                Template::compile(&text, ctx.scope)
                    .map_err(|source| TransformError::Template { kind: KIND, source })?,
            ),
            Value::Object(map) if map.len() == 1 && map.contains_key("expr") => {
                let Some(Value::String(text)) = map.get("expr") else {
                    return Err(TransformError::Config {
                        kind: KIND,
                        message: format!("{name}: `expr` takes a string"),
                    });
                };
                SetValue::Expr(Expression::compile(text, ctx.scope, None).map_err(|e| {
                    TransformError::Config {
                        kind: KIND,
                        message: format!("{name}: {e}"),
                    }
                })?)
            }
            other => SetValue::Literal(other),
        };
        fields.push((field, value));
    }
    Ok(Box::new(Set { fields }))
}

impl Transform for Set {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn apply_object(
        &self,
        object: Map<String, Value>,
        ctx: &MessageContext<'_>,
    ) -> Result<Applied, TransformError> {
        let mut payload = Value::Object(object);
        let rendered = self.render(ctx, &payload)?;
        for (field, v) in rendered {
            set_field(KIND, &mut payload, field, v)?;
        }
        Ok(Applied::One(payload))
    }

    fn is_lazy(&self) -> bool {
        true
    }

    fn apply_lazy(
        &self,
        object: &mut LazyObject<'_>,
        ctx: &MessageContext<'_>,
    ) -> Result<(), TransformError> {
        let rendered = self.render(ctx, &*object)?;
        for (field, v) in rendered {
            set_field_lazy(KIND, object, field, Slot::from_value(v))?;
        }
        Ok(())
    }
}

impl Set {
    /// Every value, rendered from the payload as it is before any is set.
    fn render<R: JsonRoot + ?Sized>(
        &self,
        ctx: &MessageContext<'_>,
        payload: &R,
    ) -> Result<Vec<(&FieldPath, Value)>, TransformError> {
        let mut rendered = Vec::with_capacity(self.fields.len());
        for (field, value) in &self.fields {
            let v = match value {
                SetValue::Literal(v) => v.clone(),
                SetValue::Template(t) => t
                    .render_value(ctx, payload)
                    .map_err(|source| TransformError::Template { kind: KIND, source })?,
                SetValue::Expr(e) => {
                    e.eval(ctx, payload).map_err(|err| TransformError::Failed {
                        kind: KIND,
                        field: field.as_str().into(),
                        message: err.to_string(),
                    })?
                }
            };
            rendered.push((field, v));
        }
        Ok(rendered)
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use serde_json::json;

    #[test]
    fn sets_templates_and_literals() {
        let out = apply(
            "set: {venue: '{exchange}.{$.market_type}', at: '{@now_ms}', v: 2, meta.src: x, copy: '{$.p}'}",
            json!({"market_type": "spot", "p": [1]}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"market_type": "spot", "p": [1], "venue": "binance.spot", "at": NOW, "v": 2,
                   "meta": {"src": "x"}, "copy": [1]})
        );
    }

    #[test]
    fn computes_expressions() {
        let out = apply(
            "set: {notional: {expr: price * quantity}, mid: {expr: '(bid + ask) / 2'}, \
             key: {expr: 'capture.exchange + \":\" + side'}, big: {expr: price * quantity > 10}}",
            json!({"price": "2.5", "quantity": 4, "bid": "1", "ask": "2", "side": "buy"}),
        )
        .unwrap();
        assert_eq!(out["notional"], json!(10));
        assert_eq!(out["mid"], json!(1.5));
        assert_eq!(out["key"], json!("binance:buy"));
        assert_eq!(out["big"], json!(false));
        let err = apply("set: {n: {expr: price * 2}}", json!({})).unwrap_err();
        assert!(err.to_string().contains("price is missing"), "{err}");
        let err = apply("set: {n: {expr: price * 2}}", json!({"price": "x"})).unwrap_err();
        assert!(err.to_string().contains("expected a number"), "{err}");
        assert!(config_error("set: {n: {expr: '\"a\" * 2'}}").contains("expected a number"));
        assert!(config_error("set: {n: {expr: 'capture.nope'}}").contains("no capture"));
        assert!(config_error("set: {n: {expr: 5}}").contains("takes a string"));
    }

    #[test]
    fn invalid_config() {
        assert!(config_error("set: [a]").contains("invalid config"));
        assert!(config_error("set: {}").contains("at least one"));
        assert!(config_error("set: {a: '{market}'}").contains("capture {market}"));
        assert!(config_error("set: {'a..b': 1}").contains("empty segment"));
    }

    #[test]
    fn missing_path_and_wrong_types_are_errors() {
        let err = apply("set: {a: '{$.missing}'}", json!({})).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let err = apply("set: {a: 1}", json!([1])).unwrap_err();
        assert!(err.to_string().contains("not a json object"), "{err}");
        let err = apply("set: {a.b: 1}", json!({"a": 5})).unwrap_err();
        assert!(err.to_string().contains("not an object"), "{err}");
    }
}
