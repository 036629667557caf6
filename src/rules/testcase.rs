//! Route test files (`*.test.yaml`) for `prism-broker test`: each case gives an input
//! subject, optional headers and a payload, and what must come out — outputs (subject,
//! exact payload or a subset of it, headers, msg_id, jetstream), dead letters, or a drop.
//! Runs against a compiled [`RouteTable`] with no NATS; failures come with a line-per-field
//! diff.
//!
//! Layer 6 (tools) of [`crate::rules`]; imports `table`, `route`, `headers`, `yaml`.
//!
//! ```yaml
//! cases:
//!   - name: spot trade becomes canonical
//!     subject: trade.binance.spot.BTC-USDT
//!     now_ms: 1795290133500          # optional fixed routing time
//!     headers: { X-Source: test }    # optional
//!     payload: {"price": "1.5", ...}
//!     expect:
//!       outputs:                      # every output of every route, in table order
//!         - route: trades-canonical   # optional
//!           subject: canonical.trade.binance.spot.BTC-USDT
//!           payload_subset: {price: 1.5}
//!       dead_letters: [{route: x, error: "substring"}]   # default: none
//!       drop: true                    # shorthand for no outputs and no dead letters
//! ```
//!
//! A multi-message case gives `steps` instead of one `subject` and `payload`: inputs, each
//! at its routing time, and clock moves, in order. The routes keep their state through the
//! case (dedupe, throttle, windows, sequence checks); before each input and at each clock
//! move the stateful steps are ticked at every due time reached, in order, so what they
//! emit without a new input comes out when it would live. The expected outputs are every
//! output of the case, in order; `at_ms` checks when one came out.
//!
//! ```yaml
//!   - name: conflation publishes the last update when the interval ends
//!     steps:
//!       - {at_ms: 1000, subject: orderbook.binance.spot.BTC-USDT, payload: {...}}
//!       - {at_ms: 1100, subject: orderbook.binance.spot.BTC-USDT, payload: {...}}
//!       - {advance: 1s}              # or {at_ms: 2000}
//!     expect:
//!       outputs:
//!         - {subject: book.binance.spot.BTC-USDT, at_ms: 1000}
//!         - {subject: book.binance.spot.BTC-USDT, at_ms: 1250, payload_subset: {...}}
//! ```

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::headers::Headers;
use super::message::OutputMessage;
use super::route::{FailureAction, RouteOutcome, RouteState};
use super::table::RouteTable;
use super::yaml::{self, Node};
use crate::config::Span;

/// Why a test file could not be read as test cases.
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default)]
    pub payload: Option<Value>,
    #[serde(default)]
    pub now_ms: Option<i64>,
    /// A multi-message case: inputs and clock moves in order.
    #[serde(default)]
    pub steps: Option<Vec<CaseStep>>,
    pub expect: Expect,
}

/// One step of a multi-message case: an input (`subject` and `payload`, at `at_ms` or at
/// the clock as it stands), or a clock move (`at_ms` or `advance` alone).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseStep {
    #[serde(default)]
    pub at_ms: Option<i64>,
    #[serde(default)]
    pub advance: Option<Span>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default)]
    pub payload: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub outputs: Vec<ExpectedOutput>,
    #[serde(default)]
    pub dead_letters: Vec<ExpectedDeadLetter>,
    #[serde(default)]
    pub drop: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedOutput {
    #[serde(default)]
    pub route: Option<String>,
    pub subject: String,
    /// The whole payload.
    #[serde(default)]
    pub payload: Option<Value>,
    /// Fields that must be present with these values; others may exist.
    #[serde(default)]
    pub payload_subset: Option<Value>,
    /// Headers that must be present with these values; others may exist.
    #[serde(default)]
    pub headers: Option<Headers>,
    #[serde(default)]
    pub jetstream: Option<bool>,
    #[serde(default)]
    pub msg_id: Option<String>,
    /// The clock when the output came out (multi-message cases).
    #[serde(default)]
    pub at_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedDeadLetter {
    pub route: String,
    /// A substring of the error.
    #[serde(default)]
    pub error: Option<String>,
}

/// One case as read from a file, with its line.
#[derive(Debug)]
pub struct LocatedCase {
    pub line: usize,
    pub case: TestCase,
}

/// Parses a test file; every case that does not parse is reported.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<LocatedCase>, Vec<TestFileError>> {
    let invalid = |line, message: String| TestFileError::Invalid {
        file: file.into(),
        line,
        message,
    };
    let root = yaml::parse(text).map_err(|e| vec![invalid(e.line(), e.to_string())])?;
    let cases: &[Node] = match root.as_map() {
        Some(entries) => {
            if let Some(e) = entries.iter().find(|e| e.key != "cases") {
                return Err(vec![invalid(
                    e.key_line,
                    format!("unknown field `{}`, expected `cases`", e.key),
                )]);
            }
            root.get("cases").and_then(Node::as_seq).unwrap_or(&[])
        }
        None => {
            return Err(vec![invalid(
                root.line,
                "a test file is a mapping with a `cases:` list".into(),
            )])
        }
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for node in cases {
        match serde_path_to_error::deserialize::<_, TestCase>(node.to_json()) {
            Ok(case) => match case.shape_problem() {
                None => out.push(LocatedCase {
                    line: node.line,
                    case,
                }),
                Some(message) => errors.push(invalid(node.line, format!("case: {message}"))),
            },
            Err(e) => {
                let path = e.path().to_string();
                errors.push(invalid(
                    node.line,
                    format!("case: {path}: {}", e.into_inner()),
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

impl TestCase {
    /// What is wrong with the case's shape, if anything.
    fn shape_problem(&self) -> Option<String> {
        match (&self.steps, &self.subject, &self.payload) {
            (Some(_), None, None) => {}
            (Some(_), _, _) => {
                return Some(
                    "`steps` replaces `subject` and `payload`: give one or the other".into(),
                )
            }
            (None, Some(_), Some(_)) => return None,
            (None, _, _) => return Some("a case needs `subject` and `payload`, or `steps`".into()),
        }
        for (i, step) in self.steps.iter().flatten().enumerate() {
            let input = step.subject.is_some() || step.payload.is_some();
            if input && (step.subject.is_none() || step.payload.is_none()) {
                return Some(format!(
                    "steps[{i}]: an input needs `subject` and `payload`"
                ));
            }
            if input && step.advance.is_some() {
                return Some(format!("steps[{i}]: an input takes `at_ms`, not `advance`"));
            }
            if !input && step.at_ms.is_none() == step.advance.is_none() {
                return Some(format!(
                    "steps[{i}]: a clock move gives `at_ms` or `advance` (one of them)"
                ));
            }
        }
        None
    }
}

/// What the table did with a case's messages.
#[derive(Debug, Default)]
struct Observed {
    /// Route, message, and the clock when it came out.
    pub outputs: Vec<(String, OutputMessage, i64)>,
    pub dead_letters: Vec<(String, String, OutputMessage)>,
    pub dropped: Vec<(String, String)>,
}

impl Observed {
    fn record(&mut self, route: &str, outcome: RouteOutcome, at: i64) {
        match outcome {
            RouteOutcome::Outputs { messages, .. } => self
                .outputs
                .extend(messages.into_iter().map(|m| (route.to_string(), m, at))),
            RouteOutcome::Failed { error, action } => match action {
                FailureAction::DeadLetter(m) => {
                    self.dead_letters
                        .push((route.to_string(), error.to_string(), m))
                }
                FailureAction::Drop => self.dropped.push((route.to_string(), error.to_string())),
                FailureAction::PassThrough(ms) => self
                    .outputs
                    .extend(ms.into_iter().map(|m| (route.to_string(), m, at))),
            },
            RouteOutcome::Filtered | RouteOutcome::NoMatch => {}
        }
    }
}

/// Default routing time of cases without `now_ms`: fixed, so outputs are reproducible.
const DEFAULT_NOW_MS: i64 = 1_795_290_133_500;

fn observe(table: &RouteTable, case: &TestCase) -> Observed {
    let mut seen = Observed::default();
    if let Some(steps) = &case.steps {
        observe_steps(table, steps, &mut seen);
        return seen;
    }
    let (Some(subject), Some(payload)) = (&case.subject, &case.payload) else {
        return seen;
    };
    let payload = payload_bytes(payload);
    let now = case.now_ms.unwrap_or(DEFAULT_NOW_MS);
    for result in table.evaluate(subject, &case.headers, &payload, now) {
        seen.record(&result.route, result.outcome, now);
    }
    seen
}

/// Runs a multi-message case: every route with its own state, ticked at each due time.
fn observe_steps(table: &RouteTable, steps: &[CaseStep], seen: &mut Observed) {
    let routes = table.routes();
    let mut states: Vec<RouteState> = routes.iter().map(|r| r.new_state()).collect();
    // the first `at_ms` sets the clock; a case that starts with `advance` starts at the default
    let mut clock = steps.iter().find_map(|s| s.at_ms).unwrap_or(DEFAULT_NOW_MS);
    // ticks every due time up to `to`, earliest first across routes
    let advance = |to: i64, states: &mut Vec<RouteState>, seen: &mut Observed| loop {
        let next = routes
            .iter()
            .zip(states.iter())
            .enumerate()
            .filter_map(|(i, (r, s))| r.next_due(s).map(|due| (due, i)))
            .min();
        match next {
            Some((due, i)) if due <= to => {
                for outcome in routes[i].tick(due, &mut states[i]) {
                    seen.record(&routes[i].name, outcome, due);
                }
            }
            _ => break,
        }
    };
    for step in steps {
        let target = match (step.at_ms, &step.advance) {
            (Some(at), _) => at,
            (None, Some(span)) => {
                clock + i64::try_from(span.duration().as_millis()).unwrap_or(i64::MAX / 4)
            }
            (None, None) => clock,
        };
        advance(target, &mut states, seen);
        clock = clock.max(target);
        if let (Some(subject), Some(payload)) = (&step.subject, &step.payload) {
            let bytes = payload_bytes(payload);
            for (route, state) in routes.iter().zip(states.iter_mut()) {
                let outcome = route.process_with(subject, &step.headers, &bytes, clock, state);
                if outcome != RouteOutcome::NoMatch {
                    seen.record(&route.name, outcome, clock);
                }
            }
        }
    }
}

/// Runs one case; returns the diff lines (empty when it passes).
pub fn run_case(table: &RouteTable, case: &TestCase) -> Vec<String> {
    let seen = observe(table, case);
    let mut diff = Vec::new();
    let expect = &case.expect;
    if expect.drop && !expect.outputs.is_empty() {
        diff.push("`drop: true` contradicts the expected outputs".into());
    }
    if seen.outputs.len() != expect.outputs.len() {
        diff.push(format!(
            "expected {} output(s), got {}",
            expect.outputs.len(),
            seen.outputs.len()
        ));
        for (i, e) in expect.outputs.iter().enumerate() {
            diff.push(format!("  expected[{i}]: {}", e.subject));
        }
        for (i, (route, m, at)) in seen.outputs.iter().enumerate() {
            diff.push(format!(
                "  got[{i}]:      {} (route {route}, at_ms {at}) {}",
                m.subject,
                show_payload(m)
            ));
        }
    } else {
        for (i, (e, (route, m, at))) in expect.outputs.iter().zip(&seen.outputs).enumerate() {
            compare_output(i, e, route, m, &mut diff);
            if let Some(want) = e.at_ms {
                if want != *at {
                    diff.push(format!("outputs[{i}].at_ms: expected {want}, got {at}"));
                }
            }
        }
    }
    if seen.dead_letters.len() != expect.dead_letters.len() {
        diff.push(format!(
            "expected {} dead letter(s), got {}",
            expect.dead_letters.len(),
            seen.dead_letters.len()
        ));
        for (route, error, m) in &seen.dead_letters {
            diff.push(format!("  got: {} from route {route}: {error}", m.subject));
        }
    } else {
        for (e, (route, error, _)) in expect.dead_letters.iter().zip(&seen.dead_letters) {
            if &e.route != route {
                diff.push(format!(
                    "dead letter: expected route {}, got {route}",
                    e.route
                ));
            }
            if let Some(needle) = &e.error {
                if !error.contains(needle.as_str()) {
                    diff.push(format!(
                        "dead letter: expected an error containing {needle:?}, got {error:?}"
                    ));
                }
            }
        }
    }
    diff
}

fn show_payload(m: &OutputMessage) -> String {
    String::from_utf8_lossy(&m.payload).into_owned()
}

fn compare_output(
    i: usize,
    e: &ExpectedOutput,
    route: &str,
    m: &OutputMessage,
    diff: &mut Vec<String>,
) {
    let at = format!("outputs[{i}]");
    if let Some(r) = &e.route {
        if r != route {
            diff.push(format!("{at}.route: expected {r}, got {route}"));
        }
    }
    if e.subject != m.subject {
        diff.push(format!(
            "{at}.subject: expected {}, got {}",
            e.subject, m.subject
        ));
    }
    if let Some(js) = e.jetstream {
        if js != m.jetstream {
            diff.push(format!(
                "{at}.jetstream: expected {js}, got {}",
                m.jetstream
            ));
        }
    }
    if let Some(id) = &e.msg_id {
        let got = m.msg_id.as_ref().map(|v| v.as_str());
        if Some(id.as_str()) != got {
            diff.push(format!("{at}.msg_id: expected {id:?}, got {got:?}"));
        }
    }
    if let Some(headers) = &e.headers {
        for (name, values) in headers.iter() {
            let name: &str = name.as_ref();
            let got = m.headers.get_all(name);
            if got != values {
                let text = |vs: &[async_nats::HeaderValue]| -> Vec<String> {
                    vs.iter().map(|v| v.as_str().to_string()).collect()
                };
                diff.push(format!(
                    "{at}.headers.{name}: expected {:?}, got {:?}",
                    text(values),
                    text(got)
                ));
            }
        }
    }
    if e.payload.is_some() || e.payload_subset.is_some() {
        let actual: Value = match serde_json::from_slice(&m.payload) {
            Ok(v) => v,
            Err(_) => Value::String(show_payload(m)),
        };
        if let Some(expected) = &e.payload {
            json_diff(&format!("{at}.payload"), expected, &actual, false, diff);
        }
        if let Some(expected) = &e.payload_subset {
            json_diff(&format!("{at}.payload"), expected, &actual, true, diff);
        }
    }
}

/// Appends one line per differing field. Numbers compare by value (`12` = `12.0`).
fn json_diff(path: &str, expected: &Value, actual: &Value, subset: bool, diff: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => json_diff(&format!("{path}.{k}"), ev, av, subset, diff),
                    None => diff.push(format!("{path}.{k}: expected {ev}, missing")),
                }
            }
            if !subset {
                for (k, av) in a {
                    if !e.contains_key(k) {
                        diff.push(format!("{path}.{k}: unexpected {av}"));
                    }
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                json_diff(&format!("{path}[{i}]"), ev, av, subset, diff);
            }
        }
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => {}
        _ if expected == actual => {}
        _ => diff.push(format!("{path}: expected {expected}, got {actual}")),
    }
}

/// The bytes to send for a payload given in a test file or an API request: a JSON string is
/// sent as its text (so non-JSON input can be tested), any other value as JSON.
fn payload_bytes(value: &Value) -> Bytes {
    match value {
        Value::String(s) => Bytes::from(s.clone().into_bytes()),
        other => Bytes::from(other.to_string().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_diff_lists_each_field() {
        let mut d = Vec::new();
        json_diff(
            "p",
            &json!({"a": 1, "b": {"c": "x"}}),
            &json!({"a": 1.0, "b": {"c": "y"}, "z": 0}),
            false,
            &mut d,
        );
        assert_eq!(
            d,
            vec![r#"p.b.c: expected "x", got "y""#, "p.z: unexpected 0"]
        );
        let mut d = Vec::new();
        json_diff(
            "p",
            &json!({"a": 1}),
            &json!({"a": 1, "z": 0}),
            true,
            &mut d,
        );
        assert!(d.is_empty());
        json_diff("p", &json!({"m": 1}), &json!({}), true, &mut d);
        assert_eq!(d, vec!["p.m: expected 1, missing"]);
    }

    #[test]
    fn parse_errors_name_the_case_line() {
        let errs = parse_file("t.yaml", "cases:\n  - name: a\n    subject: s\n    payload: {}\n    expect: {}\n  - name: b\n    subjct: s\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].to_string().starts_with("t.yaml:6: case"),
            "{}",
            errs[0]
        );
        assert!(parse_file("t.yaml", "tests: []").is_err());
    }
}
