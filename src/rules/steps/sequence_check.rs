//! `sequence_check`: follows a sequence number per key and tells an order-book delta that
//! follows its predecessor from a duplicate or an old one (dropped) and from one after a
//! gap (it still flows, and a gap event is published).
//!
//! ```yaml
//! - sequence_check:
//!     key: "{exchange}.{market_type}.{symbol}"
//!     sequence: "$.last_update_id"
//!     previous: "$.prev_update_id"      # optional: the sequence of the update before
//!     alert: { subject: "system.alert.sequence_gap.{exchange}.{symbol}", jetstream: true }
//! ```
//! Without `previous`, a message is in order when its sequence is the last one plus 1 (a
//! counter). With `previous` — feeds that carry the prior update's id in each delta, such as
//! Binance futures `pu` or OKX `prevSeqId` — it is in order when `previous` equals the last
//! sequence. A sequence at or below the last one is a duplicate or old: dropped and counted
//! (`prism_route_state_deduplicated_total`). Anything else is a gap: counted
//! (`prism_route_state_gaps_total`), the message flows on, and the alert subject gets
//! `{"key", "expected", "received", "previous", "subject", "detected_at_ms"}`
//! (`expected` is the sequence, or with `previous` the previous id, that would have been in
//! order). A key's first message is in order. Sequences are integers (numbers or numeric
//! strings); a missing or non-integer one fails the step. At most `max_keys` keys.
//!
//! Layer 2 (a stateful step kind): imports `steps/stateful.rs`, `steps/transform.rs` and
//! primitives.

use std::any::Any;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::stateful::{
    check_max_keys, downcast, keyed, Alert, KeyedState, Stateful, StepEvents, DEFAULT_MAX_KEYS,
};
use super::transform::{parse_config, Applied, BuildContext, TransformError};
use crate::rules::context::MessageContext;
use crate::rules::path::CompiledPath;
use crate::rules::template::Template;
use crate::rules::value::as_number;

const KIND: &str = "sequence_check";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertConfig {
    subject: String,
    #[serde(default)]
    jetstream: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SequenceConfig {
    key: String,
    sequence: String,
    #[serde(default)]
    previous: Option<String>,
    alert: AlertConfig,
    #[serde(default = "default_max_keys")]
    max_keys: usize,
}

fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}

#[derive(Debug)]
pub struct SequenceCheck {
    config: Value,
    key: Template,
    sequence: CompiledPath,
    previous: Option<CompiledPath>,
    alert_subject: Template,
    alert_jetstream: bool,
    max_keys: usize,
}

type Keys = KeyedState<i64>;

fn path(field: &str, text: &str) -> Result<CompiledPath, TransformError> {
    CompiledPath::compile(text).map_err(|e| TransformError::Config {
        kind: KIND,
        message: format!("`{field}`: {e}"),
    })
}

pub fn build(config: &Value, ctx: &BuildContext<'_>) -> Result<Box<dyn Stateful>, TransformError> {
    let c: SequenceConfig = parse_config(KIND, config)?;
    let template = |text: &str| {
        Template::compile(text, ctx.scope)
            .map_err(|source| TransformError::Template { kind: KIND, source })
    };
    Ok(Box::new(SequenceCheck {
        config: config.clone(),
        key: template(&c.key)?,
        sequence: path("sequence", &c.sequence)?,
        previous: c
            .previous
            .as_deref()
            .map(|p| path("previous", p))
            .transpose()?,
        alert_subject: template(&c.alert.subject)?,
        alert_jetstream: c.alert.jetstream,
        max_keys: check_max_keys(KIND, c.max_keys)?,
    }))
}

/// An integer sequence at `path`.
fn integer(path: &CompiledPath, payload: &Value) -> Result<i64, TransformError> {
    let raw = path.first(payload).ok_or_else(|| TransformError::Missing {
        kind: KIND,
        field: path.as_str().into(),
    })?;
    as_number(raw)
        .filter(|n| n.fract() == 0.0 && n.abs() < 9.0e15)
        .map(|n| n as i64)
        .ok_or_else(|| TransformError::wrong_type(KIND, path.as_str(), "an integer", raw))
}

impl Stateful for SequenceCheck {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn config(&self) -> &Value {
        &self.config
    }

    fn new_state(&self) -> Box<dyn Any + Send + Sync> {
        Box::new(Keys::new(self.max_keys))
    }

    fn apply(
        &self,
        object: Map<String, Value>,
        ctx: &MessageContext<'_>,
        state: &mut dyn Any,
        events: &mut StepEvents,
    ) -> Result<Applied, TransformError> {
        let keys = downcast::<Keys>(KIND, state)?;
        let (payload, key) = keyed(KIND, &self.key, object, ctx)?;
        let seq = integer(&self.sequence, &payload)?;
        let previous = self
            .previous
            .as_ref()
            .map(|p| integer(p, &payload))
            .transpose()?;
        let Some(last) = keys.get_mut(&key) else {
            keys.insert(key, seq, events);
            return Ok(Applied::One(payload));
        };
        if seq <= *last {
            events.deduplicated += 1;
            return Ok(Applied::Many(Vec::new()));
        }
        let (expected, in_order) = match previous {
            Some(p) => (*last, p == *last),
            None => (*last + 1, seq == *last + 1),
        };
        *last = seq;
        if !in_order {
            events.gaps += 1;
            let subject = self
                .alert_subject
                .render_subject(ctx, &payload)
                .map_err(|source| TransformError::Template { kind: KIND, source })?;
            let mut body = json!({
                "key": key,
                "expected": expected,
                "received": previous.unwrap_or(seq),
                "sequence": seq,
                "subject": ctx.subject,
                "detected_at_ms": ctx.now_ms,
            });
            if let (Some(p), Value::Object(m)) = (previous, &mut body) {
                m.insert("previous".into(), Value::from(p));
            }
            events.alerts.push(Alert {
                subject,
                jetstream: self.alert_jetstream,
                payload: body,
            });
        }
        Ok(Applied::One(payload))
    }

    fn keys(&self, state: &dyn Any) -> usize {
        state.downcast_ref::<Keys>().map_or(0, Keys::len)
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use serde_json::json;

    #[test]
    fn counters_in_order_old_and_gaps() {
        let mut h = Harness::new(
            "sequence_check: {key: '{$.s}', sequence: $.n, alert: {subject: 'gap.{exchange}'}}",
        );
        assert_eq!(h.feed(0, json!({"s": "a", "n": 5})).len(), 1);
        assert_eq!(h.feed(0, json!({"s": "a", "n": "6"})).len(), 1);
        assert!(h.feed(0, json!({"s": "a", "n": 6})).is_empty(), "duplicate");
        assert!(h.feed(0, json!({"s": "a", "n": 2})).is_empty(), "old");
        assert_eq!(
            h.feed(7, json!({"s": "a", "n": 9})).len(),
            1,
            "a gap still flows"
        );
        assert_eq!(h.events.deduplicated, 2);
        assert_eq!(h.events.gaps, 1);
        let alert = &h.events.alerts[0];
        assert_eq!(alert.subject, "gap.binance");
        assert_eq!(alert.payload["expected"], json!(7));
        assert_eq!(alert.payload["received"], json!(9));
        assert_eq!(alert.payload["key"], json!("a"));
        assert_eq!(h.feed(0, json!({"s": "a", "n": 10})).len(), 1);
        assert_eq!(h.events.gaps, 1);
        assert!(h.try_feed(0, json!({"s": "a", "n": 1.5})).is_err());
        assert!(h.try_feed(0, json!({"s": "a"})).is_err());
    }

    #[test]
    fn previous_ids() {
        let mut h = Harness::new(
            "sequence_check: {key: '{$.s}', sequence: $.u, previous: $.pu, \
             alert: {subject: gap, jetstream: true}}",
        );
        assert_eq!(h.feed(0, json!({"s": "a", "u": 100, "pu": 90})).len(), 1);
        assert_eq!(h.feed(0, json!({"s": "a", "u": 130, "pu": 100})).len(), 1);
        assert_eq!(h.events.gaps, 0);
        assert_eq!(h.feed(0, json!({"s": "a", "u": 170, "pu": 150})).len(), 1);
        assert_eq!(h.events.gaps, 1);
        let alert = &h.events.alerts[0];
        assert!(alert.jetstream);
        assert_eq!(alert.payload["expected"], json!(130));
        assert_eq!(alert.payload["received"], json!(150));
        assert_eq!(alert.payload["previous"], json!(150));
    }

    #[test]
    fn invalid_config() {
        assert!(config_error("sequence_check: {key: x, sequence: $.n}").contains("alert"));
        assert!(
            config_error("sequence_check: {key: x, sequence: n, alert: {subject: a}}")
                .contains("sequence")
        );
    }
}
