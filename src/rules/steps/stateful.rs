//! Layer 2 (steps): what the stateful step kinds (`dedupe`, `throttle`, `window`,
//! `sequence_check`) implement and share. A stateful step is built once like any step, but
//! its per-key state is not in the step: it lives in a [`PipelineState`] that the route's
//! task owns and hands in with every message, so the hot path takes no lock and the state
//! can outlive one version of the compiled route (a reload that leaves the step's config
//! alone keeps it, see [`PipelineState::carry_over`]).
//!
//! Time is the caller's: the routing time of each message (`MessageContext::now_ms`) and
//! the time given to [`Stateful::tick`], which emits what is due (a conflated message at
//! the end of its interval, a closed window) without a new input. Route tests set both.
//!
//! Every step bounds its keys (`max_keys`; the oldest key is evicted and counted) and
//! reports what it did in [`StepEvents`]: counters for the route's metrics and the side
//! messages a step sends besides the message itself (a sequence-gap alert).

use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde_json::{Map, Value};

use super::transform::{Applied, TransformError};
use crate::rules::context::MessageContext;
use crate::rules::headers::Headers;

/// The most keys a stateful step keeps unless its `max_keys` says otherwise.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// The most keys any stateful step may be configured to keep.
pub const MAX_KEYS_LIMIT: usize = 10_000_000;

/// What the stateful steps did, for the route's metrics and its extra messages.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StepEvents {
    /// Messages dropped as repeats: `dedupe` duplicates, `sequence_check` duplicates or old.
    pub deduplicated: u64,
    /// Messages `throttle` dropped or replaced by a later one.
    pub conflated: u64,
    /// Messages that came after their window closed.
    pub late: u64,
    /// Sequence gaps found.
    pub gaps: u64,
    /// Keys evicted because a step reached its `max_keys`.
    pub evictions: u64,
    /// The number of the input being run (set by the route, counting up per input): what
    /// [`Stateful::holding_since`] answers in. Not a counter; kept by `take_events`.
    pub input: u64,
    /// Messages a step sends besides the one it passes on (sequence-gap alerts).
    pub alerts: Vec<Alert>,
}

impl StepEvents {
    /// Adds `other`'s counts and alerts to these.
    pub fn absorb(&mut self, other: StepEvents) {
        self.deduplicated += other.deduplicated;
        self.conflated += other.conflated;
        self.late += other.late;
        self.gaps += other.gaps;
        self.evictions += other.evictions;
        self.input = self.input.max(other.input);
        self.alerts.extend(other.alerts);
    }

    pub fn is_empty(&self) -> bool {
        StepEvents {
            input: 0,
            ..self.clone()
        } == StepEvents::default()
    }
}

/// A message a step sends on its own (rendered by the step; published by the route as is).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub subject: String,
    pub jetstream: bool,
    pub payload: Value,
}

/// A message a step held and lets go of at a tick, with what its outputs need to render:
/// the subject and headers of the input it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub subject: String,
    pub headers: Headers,
    pub payload: Value,
}

/// One stateful step kind. `state` is always the value [`Stateful::new_state`] made.
pub trait Stateful: Send + Sync + fmt::Debug {
    fn kind(&self) -> &'static str;
    /// The step's config as written, to tell whether a reload changed it.
    fn config(&self) -> &Value;
    /// Fresh, empty state.
    fn new_state(&self) -> Box<dyn Any + Send + Sync>;
    /// Runs the step on one message (a JSON object).
    fn apply(
        &self,
        object: Map<String, Value>,
        ctx: &MessageContext<'_>,
        state: &mut dyn Any,
        events: &mut StepEvents,
    ) -> Result<Applied, TransformError>;
    /// Lets go of what is due at `now_ms`, in due order. A step that never holds anything
    /// for later (dedupe, sequence_check) has nothing to let go of.
    fn tick(&self, _now_ms: i64, _state: &mut dyn Any, _events: &mut StepEvents) -> Vec<Emitted> {
        Vec::new()
    }
    /// When [`Stateful::tick`] next has something to do, if ever.
    fn next_due(&self, _state: &dyn Any) -> Option<i64> {
        None
    }
    /// Keys held.
    fn keys(&self, state: &dyn Any) -> usize;
    /// True when the step can hold an input's effect past the input (a window, a
    /// conflated message): a JetStream input is then acked only once that effect is out.
    fn holds_inputs(&self) -> bool {
        false
    }
    /// The number ([`StepEvents::input`]) of the earliest input whose effect is still held
    /// (an open window, a conflated message not yet sent): inputs before it are fully
    /// reflected in what the step let out. `None` when nothing is held.
    fn holding_since(&self, _state: &dyn Any) -> Option<u64> {
        None
    }
}

/// The state of every stateful step of one route, in pipeline order. Owned by the route's
/// task; a dry run uses a fresh one.
#[derive(Default)]
pub struct PipelineState {
    /// `(kind, config, state)` of each stateful step.
    pub(crate) steps: Vec<(String, Value, Box<dyn Any + Send + Sync>)>,
}

impl fmt::Debug for PipelineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.steps.iter().map(|(kind, _, _)| kind))
            .finish()
    }
}

impl PipelineState {
    /// Keeps the state of each step whose kind and config are unchanged (matched in order);
    /// the others start empty. `fresh` is the new pipeline's fresh state.
    pub fn carry_over(self, fresh: PipelineState) -> PipelineState {
        self.carry_over_all(fresh).0
    }

    /// [`PipelineState::carry_over`], and whether every old step's state was kept.
    pub fn carry_over_all(mut self, mut fresh: PipelineState) -> (PipelineState, bool) {
        for slot in &mut fresh.steps {
            if let Some(i) = self
                .steps
                .iter()
                .position(|(k, c, _)| *k == slot.0 && *c == slot.1)
            {
                let (_, _, state) = self.steps.remove(i);
                slot.2 = state;
            }
        }
        (fresh, self.steps.is_empty())
    }

    /// How many steps kept their state in [`PipelineState::carry_over`] terms: for tests.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Keys in the order they were inserted, with their due time: the bookkeeping that
/// `max_keys` eviction and due-time ticks share. `T` is the per-key state.
#[derive(Debug)]
pub struct KeyedState<T> {
    entries: HashMap<String, Entry<T>>,
    /// `(insertion counter, key)`: the oldest key first.
    order: BTreeSet<(u64, String)>,
    /// `(due ms, insertion counter, key)` of keys with something due.
    due: BTreeSet<(i64, u64, String)>,
    counter: u64,
    max_keys: usize,
}

#[derive(Debug)]
struct Entry<T> {
    id: u64,
    due: Option<i64>,
    value: T,
}

impl<T> KeyedState<T> {
    pub fn new(max_keys: usize) -> Self {
        KeyedState {
            entries: HashMap::new(),
            order: BTreeSet::new(),
            due: BTreeSet::new(),
            counter: 0,
            max_keys: max_keys.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut T> {
        self.entries.get_mut(key).map(|e| &mut e.value)
    }

    pub fn get(&self, key: &str) -> Option<&T> {
        self.entries.get(key).map(|e| &e.value)
    }

    /// Inserts a key as the newest (evicting the oldest when full; counted in `events`).
    pub fn insert(&mut self, key: String, value: T, events: &mut StepEvents) -> &mut T {
        self.insert_evicting(key, value, events, |_| {})
    }

    /// [`KeyedState::insert`], handing each evicted value to `evicted`.
    pub fn insert_evicting(
        &mut self,
        key: String,
        value: T,
        events: &mut StepEvents,
        mut evicted: impl FnMut(T),
    ) -> &mut T {
        self.remove(&key);
        while self.entries.len() >= self.max_keys {
            let Some((_, oldest)) = self.order.first().cloned() else {
                break;
            };
            if let Some(value) = self.remove(&oldest) {
                evicted(value);
            }
            events.evictions += 1;
        }
        self.counter += 1;
        let id = self.counter;
        self.order.insert((id, key.clone()));
        let entry = self.entries.entry(key).or_insert(Entry {
            id,
            due: None,
            value,
        });
        &mut entry.value
    }

    pub fn remove(&mut self, key: &str) -> Option<T> {
        let entry = self.entries.remove(key)?;
        self.order.remove(&(entry.id, key.to_string()));
        if let Some(at) = entry.due {
            self.due.remove(&(at, entry.id, key.to_string()));
        }
        Some(entry.value)
    }

    /// Sets (or moves) the key's due time; `None` clears it.
    pub fn set_due(&mut self, key: &str, due: Option<i64>) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if entry.due == due {
            return;
        }
        if let Some(at) = entry.due {
            self.due.remove(&(at, entry.id, key.to_string()));
        }
        if let Some(at) = due {
            self.due.insert((at, entry.id, key.to_string()));
        }
        entry.due = due;
    }

    /// The earliest due time.
    pub fn next_due(&self) -> Option<i64> {
        self.due.first().map(|(at, _, _)| *at)
    }

    /// Takes the keys due at or before `now_ms`, earliest first (their due time cleared).
    pub fn take_due(&mut self, now_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        while self.due.first().is_some_and(|(at, _, _)| *at <= now_ms) {
            if let Some((_, _, key)) = self.due.pop_first() {
                if let Some(entry) = self.entries.get_mut(&key) {
                    entry.due = None;
                }
                out.push(key);
            }
        }
        out
    }
}

/// Numbers of the inputs whose effect a step holds (a multiset): the earliest is what
/// [`Stateful::holding_since`] answers, in O(1).
#[derive(Debug, Default)]
pub struct Since(std::collections::BTreeMap<u64, u32>);

impl Since {
    pub fn add(&mut self, at: u64) {
        *self.0.entry(at).or_insert(0) += 1;
    }

    pub fn remove(&mut self, at: u64) {
        if let Some(n) = self.0.get_mut(&at) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(&at);
            }
        }
    }

    pub fn first(&self) -> Option<u64> {
        self.0.keys().next().copied()
    }
}

/// The state of a step, as the kind made it; a mismatch is a bug, reported as an error of
/// the message rather than a panic.
pub fn downcast<'a, T: 'static>(
    kind: &'static str,
    state: &'a mut dyn Any,
) -> Result<&'a mut T, TransformError> {
    state
        .downcast_mut::<T>()
        .ok_or_else(|| TransformError::Failed {
            kind,
            field: String::new(),
            message: "internal: state of another kind".into(),
        })
}

/// The payload of a stateful step's message and its state key rendered from it.
pub fn keyed(
    kind: &'static str,
    key: &crate::rules::template::Template,
    object: Map<String, Value>,
    ctx: &MessageContext<'_>,
) -> Result<(Value, String), TransformError> {
    let payload = Value::Object(object);
    let key = key
        .render_string(ctx, &payload)
        .map_err(|source| TransformError::Template { kind, source })?;
    Ok((payload, key))
}

/// Parses a `max_keys` value: at least 1, at most [`MAX_KEYS_LIMIT`].
pub fn check_max_keys(kind: &'static str, max_keys: usize) -> Result<usize, TransformError> {
    if max_keys == 0 || max_keys > MAX_KEYS_LIMIT {
        return Err(TransformError::Config {
            kind,
            message: format!("`max_keys` is 1 to {MAX_KEYS_LIMIT}, found {max_keys}"),
        });
    }
    Ok(max_keys)
}

/// A duration in milliseconds from a config `Span`, at least 1 ms.
pub fn millis(
    kind: &'static str,
    field: &str,
    span: crate::config::Span,
) -> Result<i64, TransformError> {
    let ms = i64::try_from(span.duration().as_millis()).unwrap_or(i64::MAX);
    if ms < 1 {
        return Err(TransformError::Config {
            kind,
            message: format!("`{field}` must be at least 1ms"),
        });
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_state_evicts_the_oldest_and_ticks_in_due_order() {
        let mut events = StepEvents::default();
        let mut s: KeyedState<u32> = KeyedState::new(2);
        s.insert("a".into(), 1, &mut events);
        s.insert("b".into(), 2, &mut events);
        s.set_due("a", Some(50));
        s.set_due("b", Some(10));
        assert_eq!(s.next_due(), Some(10));
        s.insert("c".into(), 3, &mut events);
        assert_eq!(events.evictions, 1);
        assert!(s.get("a").is_none());
        assert_eq!(s.next_due(), Some(10));
        assert_eq!(s.take_due(5), Vec::<String>::new());
        assert_eq!(s.take_due(60), vec!["b".to_string()]);
        assert_eq!(s.next_due(), None);
        assert_eq!(s.remove("b"), Some(2));
        assert_eq!(s.len(), 1);
        assert!(s.get("c").is_some());
    }
}
