//! `dedupe`: drops a message whose key was seen within the window (a trade a collector sent
//! twice, a reconnection replaying the last updates).
//!
//! ```yaml
//! - dedupe: { key: "{exchange}:{symbol}:{$.trade_id}", window: 10m, max_keys: 1000000 }
//! ```
//! The window starts at a key's first sighting (routing time); a repeat within it is
//! dropped and counted (`prism_route_state_deduplicated_total`), a sighting after it counts
//! as new. At most `max_keys` keys (default 100,000) are remembered: when full, the oldest
//! is forgotten and counted as an eviction. A key that does not render (a missing field)
//! fails the step.
//!
//! Keys are remembered by a 64-bit keyed hash (SipHash with a random key per process), not
//! as text: 16 bytes a key instead of the text twice, and no allocation per message. Two
//! different keys with the same hash would make the second look like a repeat; with a
//! million keys held the chance that any two collide is about 3 in 100 million.
//!
//! Layer 2 (a stateful step kind): imports `steps/stateful.rs`, `steps/transform.rs` and
//! the template primitive.

use std::any::Any;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::stateful::{
    check_max_keys, downcast, keyed, millis, Stateful, StepEvents, DEFAULT_MAX_KEYS,
};
use super::transform::{parse_config, Applied, BuildContext, TransformError};
use crate::config::Span;
use crate::rules::context::MessageContext;
use crate::rules::template::Template;

const KIND: &str = "dedupe";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DedupeConfig {
    key: String,
    window: Span,
    #[serde(default = "default_max_keys")]
    max_keys: usize,
}

fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}

#[derive(Debug)]
pub struct Dedupe {
    config: Value,
    key: Template,
    window_ms: i64,
    max_keys: usize,
}

/// A hasher for keys that are hashes already.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Keys (by hash) at their first sighting; `order` is sighting order, which is time order
/// (the routing clock only moves forward), so the oldest is always at the front.
struct Seen {
    hasher: RandomState,
    at: HashMap<u64, i64, BuildHasherDefault<Identity>>,
    order: VecDeque<(u64, i64)>,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            hasher: RandomState::new(),
            at: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Forgets the oldest key (if the map still has it from that sighting).
    fn pop_oldest(&mut self) -> bool {
        let Some((key, at)) = self.order.pop_front() else {
            return false;
        };
        if self.at.get(&key) == Some(&at) {
            self.at.remove(&key);
        }
        true
    }
}

pub fn build(config: &Value, ctx: &BuildContext<'_>) -> Result<Box<dyn Stateful>, TransformError> {
    let c: DedupeConfig = parse_config(KIND, config)?;
    Ok(Box::new(Dedupe {
        config: config.clone(),
        key: Template::compile(&c.key, ctx.scope)
            .map_err(|source| TransformError::Template { kind: KIND, source })?,
        window_ms: millis(KIND, "window", c.window)?,
        max_keys: check_max_keys(KIND, c.max_keys)?,
    }))
}

impl Stateful for Dedupe {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn config(&self) -> &Value {
        &self.config
    }

    fn new_state(&self) -> Box<dyn Any + Send + Sync> {
        Box::new(Seen::new())
    }

    fn apply(
        &self,
        object: Map<String, Value>,
        ctx: &MessageContext<'_>,
        state: &mut dyn Any,
        events: &mut StepEvents,
    ) -> Result<Applied, TransformError> {
        let seen = downcast::<Seen>(KIND, state)?;
        let (payload, key) = keyed(KIND, &self.key, object, ctx)?;
        let now = ctx.now_ms;
        // forget what left the window (oldest first)
        while seen
            .order
            .front()
            .is_some_and(|(_, at)| now - at >= self.window_ms)
        {
            seen.pop_oldest();
        }
        let hash = seen.hasher.hash_one(key.as_str());
        if seen
            .at
            .get(&hash)
            .is_some_and(|at| now - at < self.window_ms)
        {
            events.deduplicated += 1;
            return Ok(Applied::Many(Vec::new()));
        }
        while seen.at.len() >= self.max_keys {
            if !seen.pop_oldest() {
                break;
            }
            events.evictions += 1;
        }
        seen.at.insert(hash, now);
        seen.order.push_back((hash, now));
        Ok(Applied::One(payload))
    }

    fn keys(&self, state: &dyn Any) -> usize {
        state.downcast_ref::<Seen>().map_or(0, |s| s.at.len())
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use serde_json::json;

    #[test]
    fn drops_repeats_within_the_window() {
        let mut s = Harness::new("dedupe: {key: '{exchange}:{$.id}', window: 1s, max_keys: 2}");
        assert_eq!(s.feed(0, json!({"id": 1})).len(), 1);
        assert_eq!(s.feed(10, json!({"id": 1})).len(), 0);
        assert_eq!(s.feed(20, json!({"id": 2})).len(), 1);
        assert_eq!(s.events.deduplicated, 1);
        // after the window the key is new again
        assert_eq!(s.feed(1_000, json!({"id": 1})).len(), 1);
        assert_eq!(s.feed(1_001, json!({"id": 1})).len(), 0);
        assert_eq!(s.keys(), 2);
        // full: a third key evicts the oldest
        assert_eq!(s.feed(1_002, json!({"id": 3})).len(), 1);
        assert_eq!(s.events.evictions, 1);
        let err = s.try_feed(1_003, json!({})).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn invalid_config() {
        assert!(config_error("dedupe: {key: x}").contains("window"));
        assert!(config_error("dedupe: {key: x, window: 1s, max_keys: 0}").contains("max_keys"));
        assert!(config_error("dedupe: {key: '{nope}', window: 1s}").contains("capture"));
        assert!(config_error("dedupe: {key: x, window: 0}").contains("at least 1ms"));
    }
}
