//! Conditions of a route's `when`: tests on JSONPath values of the payload, on subject
//! captures and on headers, combined with `all` / `any` / `not`. Compiled once (paths,
//! regexes); evaluating never fails: a condition on a missing path or header is false.
//!
//! Numeric comparisons (`gt`, `gte`, `lt`, `lte`, and `eq` / `ne` / `in` with a number)
//! accept JSON numbers and numeric strings, since exchanges send prices as strings.
//!
//! Layer 2 (runs on a message) of [`crate::rules`]; imports the primitives `context`,
//! `path`, `value`, `yaml`.

use regex::Regex;
use serde_json::Value;

use super::context::MessageContext;
use super::expr::{Expression, Type};
use super::lazy::JsonRoot;
use super::path::CompiledPath;
use super::template::CaptureScope;
use super::value::as_number;
use super::yaml::{Node, NodeValue, Problem};

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Path {
        path: CompiledPath,
        op: ValueOp,
    },
    Capture {
        index: usize,
        op: TextOp,
    },
    Header {
        name: String,
        op: TextOp,
    },
    /// `expr: "price * quantity > 1000"`: false when it cannot be evaluated (a missing
    /// field, a value of the wrong type).
    Expr(Expression),
}

/// A test on JSON values selected by a path.
#[derive(Debug, Clone)]
pub enum ValueOp {
    Exists(bool),
    Eq(Value),
    Ne(Value),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    In(Vec<Value>),
    Matches(Regex),
}

/// A test on text (a capture or header value).
#[derive(Debug, Clone)]
pub enum TextOp {
    Exists(bool),
    Eq(String),
    Ne(String),
    In(Vec<String>),
    Matches(Regex),
}

const VALUE_OPS: &[&str] = &[
    "exists", "eq", "ne", "gt", "gte", "lt", "lte", "in", "matches",
];
const TEXT_OPS: &[&str] = &["exists", "eq", "ne", "in", "matches"];

impl Condition {
    /// Compiles a `when` node: a list (all must hold) or a single condition.
    pub fn compile(node: &Node, captures: &[String], problems: &mut Vec<Problem>) -> Condition {
        match &node.value {
            NodeValue::Seq(items) => Condition::All(
                items
                    .iter()
                    .map(|item| Self::compile_one(item, captures, problems))
                    .collect(),
            ),
            _ => Self::compile_one(node, captures, problems),
        }
    }

    fn compile_one(node: &Node, captures: &[String], problems: &mut Vec<Problem>) -> Condition {
        // Something that never holds stands in for a broken condition; the table refuses
        // to load anyway when any problem was recorded.
        let broken = Condition::Any(Vec::new());
        let Some(entries) = node.as_map() else {
            problems.push(Problem::new(
                node.line,
                format!("a condition is a mapping, found {}", node.kind()),
            ));
            return broken;
        };
        if let [entry] = entries {
            match entry.key.as_str() {
                "all" | "any" => {
                    let Some(items) = entry.value.as_seq() else {
                        problems.push(Problem::new(
                            entry.key_line,
                            format!("`{}` takes a list of conditions", entry.key),
                        ));
                        return broken;
                    };
                    let inner = items
                        .iter()
                        .map(|i| Self::compile_one(i, captures, problems))
                        .collect();
                    return if entry.key == "all" {
                        Condition::All(inner)
                    } else {
                        Condition::Any(inner)
                    };
                }
                "not" => {
                    return Condition::Not(Box::new(Self::compile(
                        &entry.value,
                        captures,
                        problems,
                    )))
                }
                "expr" => {
                    let Some(text) = entry.value.as_str() else {
                        problems.push(Problem::new(
                            entry.value.line,
                            format!("`expr` takes a string, found {}", entry.value.kind()),
                        ));
                        return broken;
                    };
                    return match Expression::compile(
                        text,
                        CaptureScope::Names(captures),
                        Some(Type::Bool),
                    ) {
                        Ok(e) => Condition::Expr(e),
                        Err(e) => {
                            problems.push(Problem::new(entry.value.line, e.to_string()));
                            broken
                        }
                    };
                }
                _ => {}
            }
        }
        let mut subject: Option<(&str, &Node)> = None;
        let mut op: Option<(&str, &Node, usize)> = None;
        let mut ok = true;
        for e in entries {
            let key = e.key.as_str();
            if matches!(key, "path" | "capture" | "header") {
                if let Some((first, _)) = subject {
                    problems.push(Problem::new(
                        e.key_line,
                        format!("a condition tests one thing, found both `{first}` and `{key}`"),
                    ));
                    ok = false;
                }
                subject = Some((key, &e.value));
            } else if VALUE_OPS.contains(&key) {
                if let Some((first, _, _)) = op {
                    problems.push(Problem::new(
                        e.key_line,
                        format!("a condition has one operator, found both `{first}` and `{key}`"),
                    ));
                    ok = false;
                }
                op = Some((key, &e.value, e.key_line));
            } else {
                problems.push(Problem::new(
                    e.key_line,
                    format!(
                        "unknown condition field `{key}`, expected path, capture or header, \
                         one of {}, expr, or all / any / not",
                        VALUE_OPS.join(", ")
                    ),
                ));
                ok = false;
            }
        }
        let (Some((what, target)), Some((op_name, operand, op_line))) = (subject, op) else {
            if ok {
                problems.push(Problem::new(
                    node.line,
                    "a condition needs one of path / capture / header and one operator",
                ));
            }
            return broken;
        };
        if !ok {
            return broken;
        }
        let Some(target_text) = target.as_str() else {
            problems.push(Problem::new(
                target.line,
                format!("`{what}` takes a string, found {}", target.kind()),
            ));
            return broken;
        };
        let result = match what {
            "path" => CompiledPath::compile(target_text)
                .map_err(|e| e.to_string())
                .and_then(|path| value_op(op_name, operand).map(|op| Condition::Path { path, op })),
            "capture" => match captures.iter().position(|c| c == target_text) {
                None => Err(format!(
                    "condition on the capture {{{target_text}}} that the pattern does not have"
                )),
                Some(_) if op_name == "exists" => {
                    Err("captures always exist; `exists` applies to paths and headers".into())
                }
                Some(index) => text_op(op_name, operand).map(|op| Condition::Capture { index, op }),
            },
            _ => text_op(op_name, operand).map(|op| Condition::Header {
                name: target_text.into(),
                op,
            }),
        };
        match result {
            Ok(c) => c,
            Err(message) => {
                problems.push(Problem::new(op_line, message));
                broken
            }
        }
    }

    /// True when the condition holds for this message.
    pub fn eval<R: JsonRoot + ?Sized>(&self, ctx: &MessageContext<'_>, payload: &R) -> bool {
        match self {
            Condition::All(items) => items.iter().all(|c| c.eval(ctx, payload)),
            Condition::Any(items) => items.iter().any(|c| c.eval(ctx, payload)),
            Condition::Not(inner) => !inner.eval(ctx, payload),
            Condition::Path { path, op } => match op {
                ValueOp::Exists(want) => path.exists(payload) == *want,
                ValueOp::Ne(expected) => {
                    let values = path.all(payload);
                    !values.is_empty() && values.iter().all(|v| !value_eq(v, expected))
                }
                _ => path.any(payload, |v| op.test(v)),
            },
            Condition::Capture { index, op } => ctx
                .captures
                .get(*index)
                .is_some_and(|value| op.test(Some(value))),
            Condition::Expr(e) => e.eval_bool(ctx, payload).unwrap_or(false),
            Condition::Header { name, op } => match ctx.headers.get_all(name) {
                [] => op.test(None),
                values => match op {
                    TextOp::Ne(_) => values.iter().all(|v| op.test(Some(v.as_str()))),
                    _ => values.iter().any(|v| op.test(Some(v.as_str()))),
                },
            },
        }
    }

    /// True when evaluating reads the payload (so the route must parse it).
    pub fn uses_payload(&self) -> bool {
        match self {
            Condition::All(items) | Condition::Any(items) => items.iter().any(Self::uses_payload),
            Condition::Not(inner) => inner.uses_payload(),
            Condition::Path { .. } => true,
            Condition::Expr(e) => e.uses_payload(),
            Condition::Capture { .. } | Condition::Header { .. } => false,
        }
    }

    /// The values a capture is limited to by top-level `eq` / `in` conditions, if any.
    /// Used by lint to see that an output built from the capture cannot loop.
    pub fn capture_values(&self, index: usize) -> Option<Vec<String>> {
        match self {
            Condition::Capture { index: i, op } if *i == index => match op {
                TextOp::Eq(v) => Some(vec![v.clone()]),
                TextOp::In(vs) => Some(vs.clone()),
                _ => None,
            },
            Condition::All(items) => items.iter().find_map(|c| c.capture_values(index)),
            _ => None,
        }
    }
}

impl ValueOp {
    fn test(&self, value: &Value) -> bool {
        match self {
            ValueOp::Exists(want) => *want,
            ValueOp::Eq(expected) => value_eq(value, expected),
            ValueOp::Ne(expected) => !value_eq(value, expected),
            ValueOp::Gt(x) => as_number(value).is_some_and(|v| v > *x),
            ValueOp::Gte(x) => as_number(value).is_some_and(|v| v >= *x),
            ValueOp::Lt(x) => as_number(value).is_some_and(|v| v < *x),
            ValueOp::Lte(x) => as_number(value).is_some_and(|v| v <= *x),
            ValueOp::In(options) => options.iter().any(|o| value_eq(value, o)),
            ValueOp::Matches(re) => match value {
                Value::String(s) => re.is_match(s),
                Value::Number(n) => re.is_match(&n.to_string()),
                Value::Bool(b) => re.is_match(if *b { "true" } else { "false" }),
                _ => false,
            },
        }
    }
}

impl TextOp {
    fn test(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (TextOp::Exists(want), v) => v.is_some() == *want,
            (_, None) => false,
            (TextOp::Eq(x), Some(v)) => v == x,
            (TextOp::Ne(x), Some(v)) => v != x,
            (TextOp::In(xs), Some(v)) => xs.iter().any(|x| x == v),
            (TextOp::Matches(re), Some(v)) => re.is_match(v),
        }
    }
}

/// Equality as an operator means it: a number in the rule equals the same number in the
/// payload whether sent as a number or as a numeric string (`100` = `"100.0"`); a string in
/// the rule equals the same text, or a number / boolean written that way.
fn value_eq(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (_, Value::Number(e)) => match (actual, e.as_i64()) {
            (Value::Number(a), Some(ei)) if a.as_i64().is_some() => a.as_i64() == Some(ei),
            _ => match (as_number(actual), e.as_f64()) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        },
        (Value::String(a), Value::String(e)) => a == e,
        (Value::Number(a), Value::String(e)) => a.to_string() == *e,
        (Value::Bool(a), Value::String(e)) => (if *a { "true" } else { "false" }) == e,
        _ => actual == expected,
    }
}

fn value_op(op: &str, operand: &Node) -> Result<ValueOp, String> {
    let number = || {
        let value = operand.to_json();
        as_number(&value).ok_or_else(|| format!("`{op}` takes a number, found {}", operand.kind()))
    };
    Ok(match op {
        "exists" => match operand.value {
            NodeValue::Bool(b) => ValueOp::Exists(b),
            _ => {
                return Err(format!(
                    "`exists` takes true or false, found {}",
                    operand.kind()
                ))
            }
        },
        "eq" => ValueOp::Eq(operand.to_json()),
        "ne" => ValueOp::Ne(operand.to_json()),
        "gt" => ValueOp::Gt(number()?),
        "gte" => ValueOp::Gte(number()?),
        "lt" => ValueOp::Lt(number()?),
        "lte" => ValueOp::Lte(number()?),
        "in" => match operand.to_json() {
            Value::Array(items) => ValueOp::In(items),
            _ => return Err(format!("`in` takes a list, found {}", operand.kind())),
        },
        "matches" => ValueOp::Matches(regex(operand)?),
        other => return Err(format!("unknown operator `{other}`")),
    })
}

fn text_op(op: &str, operand: &Node) -> Result<TextOp, String> {
    let text = |node: &Node| match &node.value {
        NodeValue::String(s) => Ok(s.clone()),
        NodeValue::Number(n) => Ok(n.to_string()),
        NodeValue::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("`{op}` takes text, found {}", node.kind())),
    };
    Ok(match op {
        "exists" => match operand.value {
            NodeValue::Bool(b) => TextOp::Exists(b),
            _ => {
                return Err(format!(
                    "`exists` takes true or false, found {}",
                    operand.kind()
                ))
            }
        },
        "eq" => TextOp::Eq(text(operand)?),
        "ne" => TextOp::Ne(text(operand)?),
        "in" => match operand.as_seq() {
            Some(items) => TextOp::In(items.iter().map(text).collect::<Result<_, _>>()?),
            None => return Err(format!("`in` takes a list, found {}", operand.kind())),
        },
        "matches" => TextOp::Matches(regex(operand)?),
        other => {
            return Err(format!(
                "operator `{other}` applies to paths only; captures and headers take {}",
                TEXT_OPS.join(", ")
            ))
        }
    })
}

fn regex(operand: &Node) -> Result<Regex, String> {
    let pattern = operand
        .as_str()
        .ok_or_else(|| format!("`matches` takes a regex string, found {}", operand.kind()))?;
    Regex::new(pattern)
        .map_err(|e| format!("invalid regex {pattern:?}: {}", first_line(&e.to_string())))
}

fn first_line(text: &str) -> String {
    text.lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::headers::Headers;
    use crate::rules::yaml;
    use serde_json::json;

    fn captures() -> Vec<String> {
        vec!["exchange".into(), "market_type".into()]
    }

    fn compile(text: &str) -> Result<Condition, Vec<Problem>> {
        let node = yaml::parse(text).unwrap();
        let mut problems = Vec::new();
        let c = Condition::compile(&node, &captures(), &mut problems);
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(problems)
        }
    }

    fn holds(text: &str, payload: Value) -> bool {
        let c = compile(text).unwrap_or_else(|p| panic!("{text}: {p:?}"));
        let headers: Headers = [("X-Source", "collector"), ("x-tag", "a"), ("X-Tag", "b")]
            .into_iter()
            .collect();
        let ctx = MessageContext {
            subject: "trade.binance.spot.BTC",
            captures: &["binance", "spot"],
            headers: &headers,
            now_ms: 0,
        };
        c.eval(&ctx, &payload)
    }

    fn trade() -> Value {
        json!({"price": "67234.56000000", "quantity": 12, "side": "sell", "flag": true,
               "n": null, "levels": [{"p": "1"}, {"p": "5"}]})
    }

    #[test]
    fn exists() {
        assert!(holds("path: $.price\nexists: true", trade()));
        assert!(!holds("path: $.nope\nexists: true", trade()));
        assert!(holds("path: $.nope\nexists: false", trade()));
        assert!(holds("path: $.n\nexists: true", trade()), "null exists");
    }

    #[test]
    fn eq_and_ne() {
        assert!(holds("path: $.side\neq: sell", trade()));
        assert!(!holds("path: $.side\neq: buy", trade()));
        assert!(
            holds("path: $.price\neq: 67234.56", trade()),
            "numeric string"
        );
        assert!(holds("path: $.quantity\neq: 12", trade()));
        assert!(holds("path: $.quantity\neq: '12'", trade()));
        assert!(holds("path: $.flag\neq: true", trade()));
        assert!(holds("path: $.n\neq: null", trade()));
        assert!(holds("path: $.side\nne: buy", trade()));
        assert!(!holds("path: $.side\nne: sell", trade()));
        assert!(
            !holds("path: $.missing\nne: sell", trade()),
            "missing is false"
        );
        assert!(!holds("path: $.missing\neq: sell", trade()));
    }

    #[test]
    fn numeric_comparisons_accept_numeric_strings() {
        assert!(holds("path: $.price\ngt: 60000", trade()));
        assert!(!holds("path: $.price\ngt: 67234.56", trade()));
        assert!(holds("path: $.price\ngte: 67234.56", trade()));
        assert!(holds("path: $.quantity\nlt: 12.5", trade()));
        assert!(!holds("path: $.quantity\nlt: 12", trade()));
        assert!(holds("path: $.quantity\nlte: 12", trade()));
        assert!(
            !holds("path: $.side\ngt: 1", trade()),
            "non-numeric is false"
        );
        assert!(
            !holds("path: $.missing\nlt: 1", trade()),
            "missing is false"
        );
        assert!(
            holds("path: $.levels[*].p\ngt: 4", trade()),
            "any selected value"
        );
    }

    #[test]
    fn in_and_matches() {
        assert!(holds("path: $.side\nin: [buy, sell]", trade()));
        assert!(!holds("path: $.side\nin: [buy]", trade()));
        assert!(holds("path: $.quantity\nin: [1, 12]", trade()));
        assert!(holds("path: $.side\nmatches: '^s'", trade()));
        assert!(holds("path: $.quantity\nmatches: '^1\\d$'", trade()));
        assert!(!holds("path: $.missing\nmatches: '.*'", trade()));
    }

    #[test]
    fn captures_and_headers() {
        assert!(holds("capture: exchange\neq: binance", trade()));
        assert!(holds(
            "capture: market_type\nin: [spot, perpetual]",
            trade()
        ));
        assert!(holds(
            "capture: market_type\nmatches: '^(spot|perpetual)$'",
            trade()
        ));
        assert!(holds("capture: exchange\nne: okx", trade()));
        assert!(holds("header: x-source\neq: collector", trade()));
        assert!(
            holds("header: X-Tag\nin: [b]", trade()),
            "any value of a repeated header"
        );
        assert!(holds("header: X-Tag\nmatches: '^[ab]$'", trade()));
        assert!(!holds("header: Missing\neq: x", trade()));
        assert!(holds("header: Missing\nexists: false", trade()));
        assert!(holds("header: x-source\nexists: true", trade()));
    }

    #[test]
    fn all_any_not_nest() {
        let text = "- any:\n    - {path: $.side, eq: buy}\n    - {path: $.price, gt: 1}\n\
                    - not: {capture: exchange, eq: okx}\n\
                    - all: [{path: $.flag, eq: true}]\n";
        assert!(holds(text, trade()));
        assert!(!holds("not: [{path: $.side, eq: sell}]", trade()));
        assert!(!holds("any: []", json!({})));
        assert!(holds("all: []", json!({})));
    }

    #[test]
    fn compile_errors_have_lines() {
        let cases = [
            ("path: $.a\ngt: abc", "takes a number"),
            ("path: $.a\nmatches: '('", "invalid regex"),
            ("path: 'a.b'\neq: 1", "jsonpath"),
            ("capture: nope\neq: x", "does not have"),
            ("capture: exchange\ngt: 1", "paths only"),
            ("path: $.a\neq: 1\nlt: 2", "one operator"),
            ("path: $.a\nwhat: 1", "unknown condition field"),
            ("path: $.a", "needs one of"),
            ("path: $.a\nin: x", "takes a list"),
            ("path: $.a\nexists: yes please", "true or false"),
            ("- 5", "is a mapping"),
        ];
        for (text, needle) in cases {
            let problems = compile(text)
                .err()
                .unwrap_or_else(|| panic!("{text} compiled"));
            assert!(
                problems
                    .iter()
                    .any(|p| p.message.contains(needle) && p.line >= 1),
                "{text}: {problems:?}"
            );
        }
    }

    #[test]
    fn expressions() {
        assert!(holds("expr: price * quantity > 800000", trade()));
        assert!(!holds("expr: price * quantity > 900000", trade()));
        assert!(holds(
            "- expr: 'capture.exchange == \"binance\" && side != \"buy\"'\n- path: $.flag\n  eq: true",
            trade()
        ));
        assert!(!holds("expr: missing > 1", trade()), "missing is false");
        assert!(!holds("expr: side > 1", trade()), "wrong type is false");
        assert!(holds("not: {expr: missing > 1}", trade()));
        let problems = compile("expr: price * 2").unwrap_err();
        assert!(
            problems[0].message.contains("expected a boolean"),
            "{problems:?}"
        );
        let problems = compile("expr: capture.nope == 'x'").unwrap_err();
        assert!(problems[0].message.contains("no capture"), "{problems:?}");
        assert!(compile("expr: [1]").is_err());
        assert!(!compile("expr: capture.exchange == 'a'")
            .unwrap()
            .uses_payload());
    }

    #[test]
    fn capture_values_for_lint() {
        let c = compile("- capture: exchange\n  in: [a, b]\n- path: $.x\n  exists: true").unwrap();
        assert_eq!(
            c.capture_values(0),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(c.capture_values(1), None);
        assert!(c.uses_payload());
        assert!(!compile("capture: exchange\neq: a").unwrap().uses_payload());
    }
}
