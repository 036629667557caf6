//! `window`: tumbling windows per key by event time, with aggregations — candles from
//! trades.
//!
//! ```yaml
//! - window:
//!     key: "{exchange}.{market_type}.{symbol}"
//!     size: 1m
//!     time_from: "$.trade_ts_ms"     # event time; time_unit: epoch_ms (default),
//!                                    # epoch_s, epoch_us, epoch_ns
//!     lateness: 2s                   # how long a window waits for late messages
//!     late: dead_letter              # or drop: what happens to a message after that
//!     carry: [exchange, market_type, symbol]
//!     aggregate:
//!       open: { first: price }
//!       high: { max: price }
//!       low: { min: price }
//!       close: { last: price }
//!       volume: { sum: quantity }
//!       trades: count
//!       avg_price: { avg: price }
//! ```
//! Windows are `[start, start + size)`, aligned on multiples of `size` since the epoch. A
//! message is absorbed (nothing passes on); when a window closes one message is emitted
//! with the `carry` fields (from the window's first message), every aggregate, `start_ms`
//! and `end_ms` (= `start_ms + size`, exclusive). Aggregations are over numbers (numeric
//! strings read as numbers); `first` / `last` take the value of the earliest / latest
//! event time (arrival order on ties); `count` counts messages. A message whose time or
//! aggregated field is missing or not a number fails the step.
//!
//! A window closes when the key's event time reaches `end + lateness` (a later message
//! arrived), or when the routing clock does — shifted by the key's lag between routing
//! time and event time (rounded up to 250 ms), so live data closes `lateness` after the minute ends while a replay
//! of old data closes as its own time moves on. A message for a window that closed is
//! late: counted (`prism_route_state_late_total`) and dead-lettered or dropped (`late:`).
//! At most `max_keys` keys; when full the oldest key is forgotten with its open windows
//! and counted as an eviction.
//!
//! Layer 2 (a stateful step kind): imports `steps/stateful.rs`, `steps/transform.rs`,
//! `steps/fields.rs` and primitives.

use std::any::Any;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::FieldPath;
use super::stateful::{
    check_max_keys, downcast, keyed, millis, Emitted, KeyedState, Since, Stateful, StepEvents,
    DEFAULT_MAX_KEYS,
};
use super::transform::{parse_config, parse_field, Applied, BuildContext, TransformError};
use crate::config::Span;
use crate::rules::context::MessageContext;
use crate::rules::expr::number_to_json;
use crate::rules::path::CompiledPath;
use crate::rules::template::Template;
use crate::rules::value::as_number;

const KIND: &str = "window";

/// The routing-time lag a window's close is shifted by is rounded up to this many ms.
const LAG_STEP: i64 = 250;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
enum Late {
    #[default]
    DeadLetter,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
enum Unit {
    EpochS,
    #[default]
    EpochMs,
    EpochUs,
    EpochNs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowConfig {
    key: String,
    size: Span,
    time_from: String,
    #[serde(default)]
    time_unit: Unit,
    #[serde(default)]
    lateness: Option<Span>,
    #[serde(default)]
    late: Late,
    #[serde(default)]
    carry: Vec<String>,
    aggregate: BTreeMap<String, Value>,
    #[serde(default = "default_max_keys")]
    max_keys: usize,
}

fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    First,
    Last,
    Min,
    Max,
    Sum,
    Count,
    Avg,
}

#[derive(Debug)]
struct Aggregate {
    target: FieldPath,
    op: Op,
    /// `None` for `count`.
    field: Option<FieldPath>,
}

#[derive(Debug)]
pub struct Window {
    config: Value,
    key: Template,
    size_ms: i64,
    lateness_ms: i64,
    late: Late,
    time_from: CompiledPath,
    unit: Unit,
    carry: Vec<FieldPath>,
    aggregates: Vec<Aggregate>,
    max_keys: usize,
}

/// One aggregate's running value.
#[derive(Debug, Clone, Copy)]
enum Acc {
    /// `first` / `last`: (event time, value).
    Pick(i64, f64),
    Num(f64),
    /// `avg`: sum and count.
    Avg(f64, u64),
    None,
}

/// One open window.
#[derive(Debug)]
struct Open {
    accs: Vec<Acc>,
    count: u64,
    carried: Map<String, Value>,
    /// The number of its first input.
    since: u64,
}

/// One key's windows.
#[derive(Debug)]
struct KeyWindows {
    open: BTreeMap<i64, Open>,
    /// Windows starting before this are closed: a message for them is late.
    closed_before: i64,
    max_event: i64,
    /// Routing time minus event time when `max_event` was last raised.
    lag: i64,
    subject: String,
    headers: crate::rules::headers::Headers,
}

/// Every key's windows, and when the first message of each open window was routed.
#[derive(Debug)]
struct Keys {
    keys: KeyedState<KeyWindows>,
    since: Since,
}

fn config_err(message: String) -> TransformError {
    TransformError::Config {
        kind: KIND,
        message,
    }
}

fn parse_aggregate(name: &str, value: &Value) -> Result<Aggregate, TransformError> {
    let target = parse_field(KIND, name)?;
    let (op, field) = match value {
        Value::String(s) if s == "count" => (Op::Count, None),
        Value::Object(m) if m.len() == 1 => {
            let (op, field) = m
                .iter()
                .next()
                .map_or(("", &Value::Null), |(k, v)| (k.as_str(), v));
            let op = match op {
                "first" => Op::First,
                "last" => Op::Last,
                "min" => Op::Min,
                "max" => Op::Max,
                "sum" => Op::Sum,
                "avg" => Op::Avg,
                "count" => Op::Count,
                other => {
                    return Err(config_err(format!(
                        "aggregate {name}: unknown aggregation `{other}` \
                         (known: first, last, min, max, sum, count, avg)"
                    )))
                }
            };
            let Value::String(field) = field else {
                return Err(config_err(
                    format!("aggregate {name}: `{op:?}` takes a field name").to_lowercase(),
                ));
            };
            (op, Some(parse_field(KIND, field)?))
        }
        _ => {
            return Err(config_err(format!(
            "aggregate {name}: write `{{first: FIELD}}` (or last, min, max, sum, avg) or `count`"
        )))
        }
    };
    Ok(Aggregate { target, op, field })
}

pub fn build(config: &Value, ctx: &BuildContext<'_>) -> Result<Box<dyn Stateful>, TransformError> {
    let c: WindowConfig = parse_config(KIND, config)?;
    if c.aggregate.is_empty() {
        return Err(config_err("`aggregate` needs at least one field".into()));
    }
    let aggregates = c
        .aggregate
        .iter()
        .map(|(name, v)| parse_aggregate(name, v))
        .collect::<Result<Vec<_>, _>>()?;
    let lateness_ms = match c.lateness {
        Some(span) => i64::try_from(span.duration().as_millis()).unwrap_or(i64::MAX),
        None => 0,
    };
    Ok(Box::new(Window {
        config: config.clone(),
        key: Template::compile(&c.key, ctx.scope)
            .map_err(|source| TransformError::Template { kind: KIND, source })?,
        size_ms: millis(KIND, "size", c.size)?,
        lateness_ms,
        late: c.late,
        time_from: CompiledPath::compile(&c.time_from)
            .map_err(|e| config_err(format!("`time_from`: {e}")))?,
        unit: c.time_unit,
        carry: c
            .carry
            .iter()
            .map(|f| parse_field(KIND, f))
            .collect::<Result<_, _>>()?,
        aggregates,
        max_keys: check_max_keys(KIND, c.max_keys)?,
    }))
}

/// The largest event time a window takes, in epoch milliseconds either side of 1970.
const MAX_EVENT_MS: f64 = 9_007_199_254_740_992.0;

impl Window {
    fn event_ms(&self, payload: &Value) -> Result<i64, TransformError> {
        let raw = self
            .time_from
            .first(payload)
            .ok_or_else(|| TransformError::Missing {
                kind: KIND,
                field: self.time_from.as_str().into(),
            })?;
        let n = as_number(raw).ok_or_else(|| {
            TransformError::wrong_type(KIND, self.time_from.as_str(), "an epoch number", raw)
        })?;
        let ms = match self.unit {
            Unit::EpochS => (n * 1_000.0).floor(),
            Unit::EpochMs => n.floor(),
            Unit::EpochUs => (n / 1_000.0).floor(),
            Unit::EpochNs => (n / 1_000_000.0).floor(),
        };
        // beyond ±2^53 ms (285,000 years) the window arithmetic could overflow
        if ms.abs() > MAX_EVENT_MS {
            return Err(TransformError::wrong_type(
                KIND,
                self.time_from.as_str(),
                "an epoch time within 285,000 years of 1970",
                raw,
            ));
        }
        Ok(ms as i64)
    }

    /// When a window starting at `start` closes by the routing clock.
    fn close_at(&self, start: i64, lag: i64) -> i64 {
        start + self.size_ms + self.lateness_ms + lag.max(0)
    }

    fn due(&self, w: &KeyWindows) -> Option<i64> {
        w.open
            .keys()
            .next()
            .map(|start| self.close_at(*start, w.lag))
    }

    /// The emitted message of a closed window.
    fn candle(&self, start: i64, open: Open) -> Value {
        let mut out = open.carried;
        let mut payload = Value::Object(std::mem::take(&mut out));
        for (agg, acc) in self.aggregates.iter().zip(open.accs) {
            let value = match acc {
                Acc::Pick(_, v) | Acc::Num(v) => number_to_json(v).unwrap_or(Value::Null),
                Acc::Avg(sum, n) if n > 0 => number_to_json(sum / n as f64).unwrap_or(Value::Null),
                Acc::Avg(..) | Acc::None => Value::Null,
            };
            let value = if agg.op == Op::Count {
                Value::from(open.count)
            } else {
                value
            };
            let _ = agg.target.set(&mut payload, value);
        }
        if let Value::Object(m) = &mut payload {
            m.insert("start_ms".into(), Value::from(start));
            m.insert("end_ms".into(), Value::from(start + self.size_ms));
        }
        payload
    }

    /// Closes every window of `w` whose close the key's event time or `now` reached.
    fn close(&self, w: &mut KeyWindows, now: i64, since: &mut Since) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some((&start, _)) = w.open.iter().next() {
            let end = start + self.size_ms;
            let by_event = w.max_event >= end + self.lateness_ms;
            let by_clock = now >= self.close_at(start, w.lag);
            if !(by_event || by_clock) {
                break;
            }
            if let Some(open) = w.open.remove(&start) {
                since.remove(open.since);
                w.closed_before = w.closed_before.max(end);
                out.push(self.candle(start, open));
            }
        }
        out
    }
}

impl Stateful for Window {
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
        let ts = self.event_ms(&payload)?;
        let start = ts.div_euclid(self.size_ms) * self.size_ms;
        // read every aggregated value before touching the state: a bad message changes nothing
        let mut values = Vec::with_capacity(self.aggregates.len());
        for agg in &self.aggregates {
            let v = match &agg.field {
                None => 0.0,
                Some(field) => {
                    let raw = field.get(&payload).ok_or_else(|| TransformError::Missing {
                        kind: KIND,
                        field: field.as_str().into(),
                    })?;
                    as_number(raw).ok_or_else(|| {
                        TransformError::wrong_type(KIND, field.as_str(), "a number", raw)
                    })?
                }
            };
            values.push(v);
        }
        if keys.get(&key).is_none() {
            let fresh = KeyWindows {
                open: BTreeMap::new(),
                closed_before: i64::MIN,
                max_event: i64::MIN,
                lag: 0,
                subject: ctx.subject.to_string(),
                headers: ctx.headers.clone(),
            };
            keys.insert_evicting(key.clone(), fresh, events, |w| {
                for open in w.open.values() {
                    since.remove(open.since);
                }
            });
        }
        let Some(w) = keys.get_mut(&key) else {
            return Ok(Applied::Many(Vec::new()));
        };
        if start < w.closed_before {
            events.late += 1;
            return match self.late {
                Late::Drop => Ok(Applied::Many(Vec::new())),
                Late::DeadLetter => Err(TransformError::Late {
                    kind: KIND,
                    message: format!(
                        "event time {ts} is in the window starting {start}, closed already"
                    ),
                }),
            };
        }
        if ts > w.max_event {
            w.max_event = ts;
            // in steps of LAG_STEP, so the close time (and the task's timer) moves only when
            // the feed's lag really changes, not with every message's jitter
            let lag = (ctx.now_ms - ts).max(0);
            w.lag = (lag + LAG_STEP - 1) / LAG_STEP * LAG_STEP;
        }
        if w.subject != ctx.subject {
            w.subject = ctx.subject.to_string();
        }
        if !w.open.contains_key(&start) {
            since.add(events.input);
        }
        let open = w.open.entry(start).or_insert_with(|| Open {
            accs: vec![Acc::None; self.aggregates.len()],
            count: 0,
            carried: self
                .carry
                .iter()
                .filter_map(|f| f.get(&payload).map(|v| (f.as_str().to_string(), v.clone())))
                .collect(),
            since: events.input,
        });
        open.count += 1;
        for ((agg, acc), v) in self.aggregates.iter().zip(open.accs.iter_mut()).zip(values) {
            *acc = match (agg.op, *acc) {
                (Op::First, Acc::Pick(t, _)) if t <= ts => *acc,
                (Op::First, _) => Acc::Pick(ts, v),
                (Op::Last, Acc::Pick(t, _)) if t > ts => *acc,
                (Op::Last, _) => Acc::Pick(ts, v),
                (Op::Min, Acc::Num(m)) => Acc::Num(m.min(v)),
                (Op::Max, Acc::Num(m)) => Acc::Num(m.max(v)),
                (Op::Sum, Acc::Num(m)) => Acc::Num(m + v),
                (Op::Min | Op::Max | Op::Sum, _) => Acc::Num(v),
                (Op::Avg, Acc::Avg(s, n)) => Acc::Avg(s + v, n + 1),
                (Op::Avg, _) => Acc::Avg(v, 1),
                (Op::Count, _) => Acc::None,
            };
        }
        let closed = self.close(w, ctx.now_ms, since);
        let due = self.due(w);
        keys.set_due(&key, due);
        Ok(Applied::Many(closed))
    }

    fn tick(&self, now_ms: i64, state: &mut dyn Any, _events: &mut StepEvents) -> Vec<Emitted> {
        let Some(Keys { keys, since }) = state.downcast_mut::<Keys>() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for key in keys.take_due(now_ms) {
            let Some(w) = keys.get_mut(&key) else {
                continue;
            };
            let candles = self.close(w, now_ms, since);
            let (subject, headers) = (w.subject.clone(), w.headers.clone());
            let due = self.due(w);
            out.extend(candles.into_iter().map(|payload| Emitted {
                subject: subject.clone(),
                headers: headers.clone(),
                payload,
            }));
            keys.set_due(&key, due);
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
        true
    }

    fn holding_since(&self, state: &dyn Any) -> Option<u64> {
        state.downcast_ref::<Keys>()?.since.first()
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use serde_json::json;

    const CANDLES: &str = "window: {key: '{$.s}', size: 1m, time_from: $.t, lateness: 2s, \
        carry: [s], aggregate: {open: {first: p}, high: {max: p}, low: {min: p}, \
        close: {last: p}, volume: {sum: q}, trades: count, avg: {avg: p}}}";

    fn trade(s: &str, t: i64, p: &str, q: f64) -> serde_json::Value {
        json!({"s": s, "t": t, "p": p, "q": q})
    }

    #[test]
    fn candles_close_by_clock_and_by_event_time() {
        let mut h = Harness::new(CANDLES);
        // routing time = event time + 100 ms
        assert!(h.feed(60_100, trade("a", 60_000, "10", 1.0)).is_empty());
        assert!(h.feed(60_600, trade("a", 60_500, "12", 2.0)).is_empty());
        assert!(h.feed(60_400, trade("a", 60_300, "9", 0.5)).is_empty());
        assert!(h.feed(119_100, trade("a", 119_000, "11", 1.5)).is_empty());
        // due: end 120000 + lateness 2000 + lag 100 rounded up to 250
        assert_eq!(h.next_due(), Some(122_250));
        assert!(h.tick(122_249).is_empty());
        let candles = h.tick(122_250);
        assert_eq!(
            candles,
            vec![
                json!({"s": "a", "open": 10, "high": 12, "low": 9, "close": 11,
                        "volume": 5, "trades": 4, "avg": 10.5,
                        "start_ms": 60_000, "end_ms": 120_000})
            ]
        );
        // a message for the closed window is late and dead-lettered
        let err = h
            .try_feed(122_200, trade("a", 119_999, "1", 1.0))
            .unwrap_err();
        assert!(err.to_string().contains("closed already"), "{err}");
        assert_eq!(h.events.late, 1);
        // by event time: a message 2 s past the next window's end closes it
        assert!(h.feed(122_400, trade("a", 120_000, "5", 1.0)).is_empty());
        let out = h.feed(182_400, trade("a", 182_000, "6", 1.0));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["start_ms"], json!(120_000));
        assert_eq!(out[0]["trades"], json!(1));
        assert_eq!(h.holding_since(), Some(182_400));
    }

    #[test]
    fn a_replay_closes_windows_as_its_own_time_moves() {
        let mut h = Harness::new(CANDLES);
        // data an hour old, routed now
        let now = 3_600_000 + 60_000;
        assert!(h.feed(now, trade("a", 60_000, "1", 1.0)).is_empty());
        assert!(h.feed(now + 1, trade("a", 61_000, "2", 1.0)).is_empty());
        assert!(
            h.tick(now + 10).is_empty(),
            "lag keeps the clock from closing it"
        );
        let out = h.feed(now + 2, trade("a", 122_000, "3", 1.0));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["close"], json!(2));
    }

    #[test]
    fn late_drop_and_bad_messages() {
        let mut h = Harness::new(&CANDLES.replace("lateness: 2s", "lateness: 0s, late: drop"));
        h.feed(60_000, trade("a", 60_000, "1", 1.0));
        assert_eq!(h.tick(120_000).len(), 1);
        assert!(h.feed(120_001, trade("a", 60_001, "1", 1.0)).is_empty());
        assert_eq!(h.events.late, 1);
        assert!(h
            .try_feed(0, json!({"s": "a", "t": 1, "p": "x", "q": 1}))
            .is_err());
        assert!(h.try_feed(0, json!({"s": "a", "p": "1", "q": 1})).is_err());
        // event times the window arithmetic cannot hold are errors, not overflows
        for t in [
            json!(3.8e99),
            json!(-3.8e99),
            json!(i64::MAX),
            json!(i64::MIN),
        ] {
            let err = h
                .try_feed(0, json!({"s": "a", "t": t, "p": "1", "q": 1}))
                .unwrap_err();
            assert!(err.to_string().contains("285,000 years"), "{err}");
        }
    }

    #[test]
    fn invalid_config() {
        assert!(
            config_error("window: {key: x, size: 1m, time_from: $.t, aggregate: {}}")
                .contains("at least one")
        );
        assert!(config_error(
            "window: {key: x, size: 1m, time_from: $.t, aggregate: {a: {median: p}}}"
        )
        .contains("unknown aggregation"));
        assert!(
            config_error("window: {key: x, size: 1m, time_from: t, aggregate: {a: count}}")
                .contains("time_from")
        );
    }
}
