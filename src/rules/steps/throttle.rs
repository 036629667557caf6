//! `throttle`: at most one message per key per interval — conflation, the usual way to thin
//! an order book that updates 100 times a second down to what a screen or a strategy uses.
//!
//! ```yaml
//! - throttle: { key: "{exchange}.{symbol}", interval: 250ms, emit: latest }
//! ```
//! A key's first message passes at once and opens an interval. Within it, with
//! `emit: first` the others are dropped; with `emit: latest` (the default) each replaces the
//! one held before it, and the last one is published when the interval ends — without a new
//! input arriving — and opens the next interval. Nothing is held longer than one interval.
//! Dropped and replaced messages are counted (`prism_route_state_conflated_total`). At most
//! `max_keys` keys (default 100,000); when full the oldest is forgotten (a message it held
//! is lost) and counted as an eviction.
//!
//! Layer 2 (a stateful step kind): imports `steps/stateful.rs`, `steps/transform.rs` and
//! the template primitive.

use std::any::Any;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::stateful::{
    check_max_keys, downcast, keyed, millis, Emitted, KeyedState, Since, Stateful, StepEvents,
    DEFAULT_MAX_KEYS,
};
use super::transform::{parse_config, Applied, BuildContext, TransformError};
use crate::config::Span;
use crate::rules::context::MessageContext;
use crate::rules::template::Template;

const KIND: &str = "throttle";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Emit {
    First,
    Latest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottleConfig {
    key: String,
    interval: Span,
    #[serde(default = "latest")]
    emit: Emit,
    #[serde(default = "default_max_keys")]
    max_keys: usize,
}

fn latest() -> Emit {
    Emit::Latest
}

fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}

#[derive(Debug)]
pub struct Throttle {
    config: Value,
    key: Template,
    interval_ms: i64,
    emit: Emit,
    max_keys: usize,
}

/// One key's interval.
#[derive(Debug)]
struct Interval {
    until: i64,
    /// `emit: latest`: the last message of the interval, and its input number.
    held: Option<(Emitted, u64)>,
}

/// Every key's interval, and when each held message was routed.
#[derive(Debug)]
struct Keys {
    keys: KeyedState<Interval>,
    since: Since,
}

pub fn build(config: &Value, ctx: &BuildContext<'_>) -> Result<Box<dyn Stateful>, TransformError> {
    let c: ThrottleConfig = parse_config(KIND, config)?;
    Ok(Box::new(Throttle {
        config: config.clone(),
        key: Template::compile(&c.key, ctx.scope)
            .map_err(|source| TransformError::Template { kind: KIND, source })?,
        interval_ms: millis(KIND, "interval", c.interval)?,
        emit: c.emit,
        max_keys: check_max_keys(KIND, c.max_keys)?,
    }))
}

impl Stateful for Throttle {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn config(&self) -> &Value {
        &self.config
    }

    fn new_state(&self) -> Box<dyn Any + Send + Sync> {
        Box::new(Keys {
            keys: KeyedState::new(self.max_keys),
            since: Since::default(),
        })
    }

    fn apply(
        &self,
        object: Map<String, Value>,
        ctx: &MessageContext<'_>,
        state: &mut dyn Any,
        events: &mut StepEvents,
    ) -> Result<Applied, TransformError> {
        let Keys { keys, since } = downcast::<Keys>(KIND, state)?;
        let (payload, key) = keyed(KIND, &self.key, object, ctx)?;
        let now = ctx.now_ms;
        let until = now + self.interval_ms;
        match keys.get_mut(&key) {
            Some(interval) if now < interval.until => {
                events.conflated += 1;
                if self.emit == Emit::Latest {
                    let held = Emitted {
                        subject: ctx.subject.to_string(),
                        headers: ctx.headers.clone(),
                        payload,
                    };
                    if let Some((_, at)) = interval.held.replace((held, events.input)) {
                        since.remove(at);
                    }
                    since.add(events.input);
                }
                Ok(Applied::Many(Vec::new()))
            }
            Some(interval) => {
                // The interval ended and its tick did not run yet: what it held goes first.
                let held = interval.held.take();
                interval.until = until;
                keys.set_due(&key, Some(until));
                Ok(match held {
                    Some((held, at)) => {
                        since.remove(at);
                        Applied::Many(vec![held.payload, payload])
                    }
                    None => Applied::One(payload),
                })
            }
            None => {
                keys.insert_evicting(key.clone(), Interval { until, held: None }, events, |i| {
                    if let Some((_, at)) = i.held {
                        since.remove(at);
                    }
                });
                keys.set_due(&key, Some(until));
                Ok(Applied::One(payload))
            }
        }
    }

    fn tick(&self, now_ms: i64, state: &mut dyn Any, _events: &mut StepEvents) -> Vec<Emitted> {
        let Some(Keys { keys, since }) = state.downcast_mut::<Keys>() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for key in keys.take_due(now_ms) {
            let held = keys.get_mut(&key).and_then(|i| i.held.take());
            match held {
                Some((message, at)) => {
                    since.remove(at);
                    // the message sent opens the next interval
                    let until = now_ms + self.interval_ms;
                    if let Some(interval) = keys.get_mut(&key) {
                        interval.until = until;
                    }
                    keys.set_due(&key, Some(until));
                    out.push(message);
                }
                None => {
                    keys.remove(&key);
                }
            }
        }
        out
    }

    fn next_due(&self, state: &dyn Any) -> Option<i64> {
        state.downcast_ref::<Keys>()?.keys.next_due()
    }

    fn keys(&self, state: &dyn Any) -> usize {
        state.downcast_ref::<Keys>().map_or(0, |k| k.keys.len())
    }

    fn holds_inputs(&self) -> bool {
        self.emit == Emit::Latest
    }

    fn holding_since(&self, state: &dyn Any) -> Option<u64> {
        state.downcast_ref::<Keys>()?.since.first()
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use serde_json::json;

    #[test]
    fn latest_publishes_the_last_message_when_the_interval_ends() {
        let mut s = Harness::new("throttle: {key: '{$.s}', interval: 100ms}");
        assert_eq!(
            s.feed(0, json!({"s": "a", "v": 1})),
            vec![json!({"s": "a", "v": 1})]
        );
        assert!(s.feed(10, json!({"s": "a", "v": 2})).is_empty());
        assert!(s.feed(20, json!({"s": "a", "v": 3})).is_empty());
        assert_eq!(s.feed(30, json!({"s": "b", "v": 9})).len(), 1);
        assert_eq!(s.next_due(), Some(100));
        assert!(s.tick(99).is_empty());
        assert_eq!(s.tick(100), vec![json!({"s": "a", "v": 3})]);
        assert_eq!(s.events.conflated, 2);
        // the message sent at 100 opened the next interval; b had nothing held: forgotten
        assert_eq!(s.tick(130), Vec::<serde_json::Value>::new());
        assert_eq!(s.keys(), 1);
        assert!(s.feed(150, json!({"s": "a", "v": 4})).is_empty());
        assert_eq!(s.holding_since(), Some(150));
        assert_eq!(s.tick(200), vec![json!({"s": "a", "v": 4})]);
        assert_eq!(s.tick(300), Vec::<serde_json::Value>::new());
        assert_eq!(s.keys(), 0);
    }

    #[test]
    fn first_drops_the_rest_of_the_interval() {
        let mut s = Harness::new("throttle: {key: '{$.s}', interval: 100ms, emit: first}");
        assert_eq!(s.feed(0, json!({"s": "a", "v": 1})).len(), 1);
        assert!(s.feed(50, json!({"s": "a", "v": 2})).is_empty());
        assert!(s.tick(100).is_empty());
        assert_eq!(s.feed(101, json!({"s": "a", "v": 3})).len(), 1);
        assert_eq!(s.events.conflated, 1);
    }

    #[test]
    fn an_overdue_interval_sends_what_it_held_first() {
        let mut s = Harness::new("throttle: {key: '{$.s}', interval: 100ms}");
        s.feed(0, json!({"s": "a", "v": 1}));
        s.feed(50, json!({"s": "a", "v": 2}));
        assert_eq!(
            s.feed(150, json!({"s": "a", "v": 3})),
            vec![json!({"s": "a", "v": 2}), json!({"s": "a", "v": 3})]
        );
    }

    #[test]
    fn invalid_config() {
        assert!(config_error("throttle: {key: x, interval: 1s, emit: last}").contains("emit"));
        assert!(config_error("throttle: {key: x}").contains("interval"));
    }
}
