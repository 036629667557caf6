//! Layer 1 (primitive): reading JSON values the way exchange data is written: numbers that
//! arrive as numbers or as numeric strings, and short descriptions of a value for error
//! messages. Imports nothing from the rule language.

use serde_json::Value;

/// A JSON number, or a string holding a finite decimal number (`"67234.56"`, `" 12 "`).
pub fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_decimal(s),
        _ => None,
    }
}

/// Parses decimal text the way a price or quantity is written; rejects `inf`, `NaN`, hex.
pub fn parse_decimal(text: &str) -> Option<f64> {
    let t = text.trim();
    let digits_ok = !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && t.bytes().any(|b| b.is_ascii_digit());
    if !digits_ok {
        return None;
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A JSON value described for an error message: its type and a short rendering.
pub fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => return "null".into(),
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => return "a list".into(),
        Value::Object(_) => return "an object".into(),
    };
    let mut text = value.to_string();
    if text.chars().count() > 40 {
        text = text.chars().take(40).collect();
        text.push('…');
    }
    format!("{kind} ({text})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("67234.56000000"), Some(67234.56));
        assert_eq!(parse_decimal(" 12 "), Some(12.0));
        assert_eq!(parse_decimal("1e3"), Some(1000.0));
        assert_eq!(parse_decimal("inf"), None);
        assert_eq!(parse_decimal("NaN"), None);
        assert_eq!(parse_decimal(""), None);
        assert_eq!(parse_decimal("."), None);
        assert_eq!(parse_decimal("0x10"), None);
    }

    #[test]
    fn describe_is_short() {
        assert_eq!(describe(&json!("x")), "a string (\"x\")");
        assert_eq!(describe(&json!([1])), "a list");
        assert!(describe(&json!("y".repeat(100))).ends_with("…)"));
    }
}
