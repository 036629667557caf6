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

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::headers::Headers;
use super::message::OutputMessage;
use super::route::{FailureAction, RouteOutcome};
use super::table::RouteTable;
use super::yaml::{self, Node};

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
    pub subject: String,
    #[serde(default)]
    pub headers: Headers,
    pub payload: Value,
    #[serde(default)]
    pub now_ms: Option<i64>,
    pub expect: Expect,
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
            Ok(case) => out.push(LocatedCase {
                line: node.line,
                case,
            }),
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

/// What the table did with a case's message.
#[derive(Debug, Default)]
struct Observed {
    pub outputs: Vec<(String, OutputMessage)>,
    pub dead_letters: Vec<(String, String, OutputMessage)>,
    pub dropped: Vec<(String, String)>,
}

/// Default routing time of cases without `now_ms`: fixed, so outputs are reproducible.
const DEFAULT_NOW_MS: i64 = 1_795_290_133_500;

fn observe(table: &RouteTable, case: &TestCase) -> Observed {
    let payload = payload_bytes(&case.payload);
    let now = case.now_ms.unwrap_or(DEFAULT_NOW_MS);
    let mut seen = Observed::default();
    for result in table.evaluate(&case.subject, &case.headers, &payload, now) {
        match result.outcome {
            RouteOutcome::Outputs { messages, .. } => seen
                .outputs
                .extend(messages.into_iter().map(|m| (result.route.clone(), m))),
            RouteOutcome::Failed { error, action } => match action {
                FailureAction::DeadLetter(m) => {
                    seen.dead_letters.push((result.route, error.to_string(), m))
                }
                FailureAction::Drop => seen.dropped.push((result.route, error.to_string())),
                FailureAction::PassThrough(ms) => seen
                    .outputs
                    .extend(ms.into_iter().map(|m| (result.route.clone(), m))),
            },
            RouteOutcome::Filtered | RouteOutcome::NoMatch => {}
        }
    }
    seen
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
        for (i, (route, m)) in seen.outputs.iter().enumerate() {
            diff.push(format!(
                "  got[{i}]:      {} (route {route}) {}",
                m.subject,
                show_payload(m)
            ));
        }
    } else {
        for (i, (e, (route, m))) in expect.outputs.iter().zip(&seen.outputs).enumerate() {
            compare_output(i, e, route, m, &mut diff);
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
