//! `regex_replace`: rewrites a text field with a regex (replacement syntax `$1`, `${name}`).
//!
//! ```yaml
//! - regex_replace: { field: symbol, pattern: "^([A-Z]+)-([A-Z]+)$", replacement: "$1$2", target: compact }
//! ```
//! `target` defaults to `field`; `all: false` replaces the first match only. A missing field
//! or `null` is left alone; a value that is not text is an error.
//!
//! Layer 2 (a step kind): imports `steps/transform.rs`, `steps/fields.rs` and primitives.

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::FieldPath;
use super::transform::{
    parse_config, parse_field, set_field, Applied, BuildContext, Transform, TransformError,
};
use crate::rules::context::MessageContext;

const KIND: &str = "regex_replace";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegexReplaceConfig {
    field: String,
    pattern: String,
    replacement: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default = "yes")]
    all: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug)]
pub struct RegexReplace {
    field: FieldPath,
    target: FieldPath,
    regex: Regex,
    replacement: String,
    all: bool,
}

pub fn build(
    config: &Value,
    _ctx: &BuildContext<'_>,
) -> Result<Box<dyn Transform>, TransformError> {
    let c: RegexReplaceConfig = parse_config(KIND, config)?;
    let regex = Regex::new(&c.pattern).map_err(|e| TransformError::Config {
        kind: KIND,
        message: format!(
            "invalid regex {:?}: {}",
            c.pattern,
            e.to_string().lines().last().unwrap_or_default().trim()
        ),
    })?;
    let field = parse_field(KIND, &c.field)?;
    let target = match &c.target {
        Some(t) => parse_field(KIND, t)?,
        None => field.clone(),
    };
    Ok(Box::new(RegexReplace {
        field,
        target,
        regex,
        replacement: c.replacement,
        all: c.all,
    }))
}

impl Transform for RegexReplace {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn apply_object(
        &self,
        object: Map<String, Value>,
        _ctx: &MessageContext<'_>,
    ) -> Result<Applied, TransformError> {
        let mut payload = Value::Object(object);
        let replaced = match self.field.get(&payload) {
            None | Some(Value::Null) => return Ok(Applied::One(payload)),
            Some(Value::String(text)) => {
                if self.all {
                    self.regex
                        .replace_all(text, self.replacement.as_str())
                        .into_owned()
                } else {
                    self.regex
                        .replace(text, self.replacement.as_str())
                        .into_owned()
                }
            }
            Some(other) => {
                return Err(TransformError::wrong_type(
                    KIND,
                    self.field.as_str(),
                    "a string",
                    other,
                ))
            }
        };
        set_field(KIND, &mut payload, &self.target, Value::String(replaced))?;
        Ok(Applied::One(payload))
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use serde_json::json;

    #[test]
    fn replaces_with_groups_into_target() {
        let out = apply(
            "regex_replace: {field: symbol, pattern: '^([A-Z]+)-([A-Z]+)$', replacement: '$1$2', target: compact}",
            json!({"symbol": "BTC-USDT"}),
        )
        .unwrap();
        assert_eq!(out, json!({"symbol": "BTC-USDT", "compact": "BTCUSDT"}));
        let first = apply(
            "regex_replace: {field: s, pattern: 'a', replacement: 'b', all: false}",
            json!({"s": "aaa"}),
        )
        .unwrap();
        assert_eq!(first["s"], json!("baa"));
    }

    #[test]
    fn missing_null_and_wrong_types() {
        let cfg = "regex_replace: {field: s, pattern: x, replacement: z}";
        assert_eq!(apply(cfg, json!({"t": 1})).unwrap(), json!({"t": 1}));
        assert_eq!(apply(cfg, json!({"s": null})).unwrap(), json!({"s": null}));
        assert!(apply(cfg, json!({"s": 5}))
            .unwrap_err()
            .to_string()
            .contains("expected a string"));
    }

    #[test]
    fn invalid_config() {
        assert!(
            config_error("regex_replace: {field: s, pattern: '(', replacement: z}")
                .contains("invalid regex")
        );
        assert!(config_error("regex_replace: {field: s, pattern: x}").contains("replacement"));
        assert!(
            config_error("regex_replace: {field: s, pattern: x, replacement: z, typo: 1}")
                .contains("unknown field")
        );
    }
}
