//! Templates for output subjects, `msg_id`, headers and transform values: literal text with
//! `{capture}`, `{$.json.path}`, `{@now_ms}`, `{@now}` and `{@subject}` placeholders
//! (`{{` / `}}` are literal braces). Compiled once at load against the route's captures;
//! rendering never panics: a missing value or an invalid subject is an error for that message.
//!
//! Layer 1 (primitive) of [`crate::rules`]; imports `context`, `path`, `pattern`, and
//! [`crate::subject`] for the one subject validator.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat};
use serde_json::Value;

use super::context::MessageContext;
use super::lazy::JsonRoot;
use super::path::{CompiledPath, PathError};
use super::pattern::is_capture_name;
use crate::subject::validate_subject;

/// Why a template does not compile, or does not render for one message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template:?}: {message}")]
    Syntax { template: String, message: String },
    #[error("template {template:?} names the capture {{{name}}} that the pattern does not have")]
    UnknownCapture { template: String, name: String },
    #[error("template {template:?}: {source}")]
    Path { template: String, source: PathError },
    #[error("{placeholder} is missing from the payload")]
    Missing { placeholder: String },
    #[error("{placeholder} is {kind}, not text")]
    NotText {
        placeholder: String,
        kind: &'static str,
    },
    #[error("{placeholder} is {value:?}, which is not a single subject token")]
    NotToken { placeholder: String, value: String },
    #[error("rendered subject {subject:?} is invalid: {reason}")]
    InvalidSubject { subject: String, reason: String },
}

/// Which capture names a template may use.
#[derive(Debug, Clone, Copy)]
pub enum CaptureScope<'a> {
    /// The captures of a route's `from`, by index.
    Names(&'a [String]),
    /// Any name (a pipeline checked on its own, before a route binds it).
    Unchecked,
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Capture { index: usize, name: String },
    Path(CompiledPath),
    NowMs,
    Now,
    Subject,
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

impl Template {
    pub fn compile(text: &str, scope: CaptureScope<'_>) -> Result<Self, TemplateError> {
        let syntax = |message: &str| TemplateError::Syntax {
            template: text.into(),
            message: message.into(),
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(syntax("unmatched '}' (write '}}' for a literal brace)")),
                '{' => {
                    let Some(len) = text[i + 1..].find('}') else {
                        return Err(syntax("unclosed '{' (write '{{' for a literal brace)"));
                    };
                    let inner = &text[i + 1..i + 1 + len];
                    while chars.peek().is_some_and(|p| p.0 <= i + 1 + len) {
                        chars.next();
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Self::placeholder(text, inner, scope)?);
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            text: text.into(),
            parts,
        })
    }

    fn placeholder(
        text: &str,
        inner: &str,
        scope: CaptureScope<'_>,
    ) -> Result<Part, TemplateError> {
        let inner = inner.trim();
        if inner.starts_with('$') {
            return CompiledPath::compile(inner)
                .map(Part::Path)
                .map_err(|source| TemplateError::Path {
                    template: text.into(),
                    source,
                });
        }
        if let Some(var) = inner.strip_prefix('@') {
            return match var {
                "now_ms" => Ok(Part::NowMs),
                "now" => Ok(Part::Now),
                "subject" => Ok(Part::Subject),
                _ => Err(TemplateError::Syntax {
                    template: text.into(),
                    message: format!(
                        "unknown variable {{@{var}}} (known: @now_ms, @now, @subject)"
                    ),
                }),
            };
        }
        if !is_capture_name(inner) {
            return Err(TemplateError::Syntax {
                template: text.into(),
                message: format!(
                    "{{{inner}}} is neither a capture name, a jsonpath ($...) nor a variable (@...)"
                ),
            });
        }
        let index = match scope {
            CaptureScope::Names(names) => {
                names.iter().position(|n| n == inner).ok_or_else(|| {
                    TemplateError::UnknownCapture {
                        template: text.into(),
                        name: inner.into(),
                    }
                })?
            }
            CaptureScope::Unchecked => usize::MAX,
        };
        Ok(Part::Capture {
            index,
            name: inner.into(),
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when rendering reads the payload (a `{$...}` placeholder).
    pub fn uses_payload(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Path(_)))
    }

    /// The literal text between placeholders, as it will be rendered (`{{` as `{`).
    pub fn literal_parts(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Literal(text) => Some(text.as_str()),
            _ => None,
        })
    }

    /// Renders to text (for `msg_id`, headers and string values).
    pub fn render_string<R: JsonRoot + ?Sized>(
        &self,
        ctx: &MessageContext<'_>,
        payload: &R,
    ) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.text.len() + 16);
        self.render_into(&mut out, ctx, payload, false)?;
        Ok(out)
    }

    /// Renders an output subject: every placeholder must give one token (captures of
    /// `{name...}` and `{@subject}` may give several) and the result must be a valid subject.
    pub fn render_subject<R: JsonRoot + ?Sized>(
        &self,
        ctx: &MessageContext<'_>,
        payload: &R,
    ) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.text.len() + 16);
        self.render_into(&mut out, ctx, payload, true)?;
        match validate_subject(&out) {
            Ok(()) => Ok(out),
            Err(reason) => Err(TemplateError::InvalidSubject {
                subject: preview(&out),
                reason,
            }),
        }
    }

    /// Renders a JSON value: a template that is exactly one placeholder keeps its type
    /// (`"{@now_ms}"` is a number, `"{$.bids}"` a list); anything else is a string.
    pub fn render_value<R: JsonRoot + ?Sized>(
        &self,
        ctx: &MessageContext<'_>,
        payload: &R,
    ) -> Result<Value, TemplateError> {
        match self.parts.as_slice() {
            [Part::Path(path)] => {
                path.first(payload)
                    .cloned()
                    .ok_or_else(|| TemplateError::Missing {
                        placeholder: format!("{{{}}}", path.as_str()),
                    })
            }
            [Part::NowMs] => Ok(Value::from(ctx.now_ms)),
            _ => self.render_string(ctx, payload).map(Value::String),
        }
    }

    fn render_into<R: JsonRoot + ?Sized>(
        &self,
        out: &mut String,
        ctx: &MessageContext<'_>,
        payload: &R,
        subject: bool,
    ) -> Result<(), TemplateError> {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Capture { index, name } => match ctx.captures.get(*index) {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err(TemplateError::Missing {
                            placeholder: format!("{{{name}}}"),
                        })
                    }
                },
                Part::NowMs => {
                    let _ = write!(out, "{}", ctx.now_ms);
                }
                Part::Now => out.push_str(&format_rfc3339_ms(ctx.now_ms)),
                Part::Subject => out.push_str(ctx.subject),
                Part::Path(path) => {
                    let placeholder = || format!("{{{}}}", path.as_str());
                    let start = out.len();
                    // a top-level string read straight from the payload's text
                    let plain = path.top_level_key().and_then(|k| payload.plain_text(k));
                    let value = match plain {
                        Some(text) => {
                            out.push_str(text);
                            None
                        }
                        None => {
                            Some(path.first(payload).ok_or_else(|| TemplateError::Missing {
                                placeholder: placeholder(),
                            })?)
                        }
                    };
                    match value {
                        None => {}
                        Some(Value::String(s)) => out.push_str(s),
                        Some(Value::Number(n)) => {
                            let _ = write!(out, "{n}");
                        }
                        Some(Value::Bool(b)) => {
                            let _ = write!(out, "{b}");
                        }
                        Some(Value::Null) => {
                            return Err(TemplateError::NotText {
                                placeholder: placeholder(),
                                kind: "null",
                            })
                        }
                        Some(value @ (Value::Array(_) | Value::Object(_))) if subject => {
                            return Err(TemplateError::NotText {
                                placeholder: placeholder(),
                                kind: if value.is_array() {
                                    "a list"
                                } else {
                                    "an object"
                                },
                            })
                        }
                        Some(other) => {
                            let _ = write!(out, "{other}");
                        }
                    }
                    if subject {
                        let rendered = &out[start..];
                        if rendered.is_empty() || rendered.contains('.') {
                            return Err(TemplateError::NotToken {
                                placeholder: placeholder(),
                                value: preview(rendered),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// What the template tests read.
#[cfg(test)]
impl Template {
    /// True when the template is literal text only.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Capture names the template uses.
    pub fn captures(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Capture { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }
}

/// At most 128 characters of a rendered value, for an error (a payload value may be huge).
fn preview(text: &str) -> String {
    let mut out: String = text.chars().take(128).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// Epoch milliseconds as RFC 3339 UTC with millisecond precision, e.g.
/// `2026-11-21T19:42:13.376Z`; out-of-range values render as the epoch number.
fn format_rfc3339_ms(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::headers::Headers;
    use serde_json::json;

    const NOW: i64 = 1_795_290_133_500;

    fn names() -> Vec<String> {
        vec!["exchange".into(), "symbol".into(), "rest".into()]
    }

    fn render(text: &str, payload: Value) -> Result<String, TemplateError> {
        let names = names();
        let t = Template::compile(text, CaptureScope::Names(&names))?;
        let headers = Headers::new();
        let ctx = MessageContext {
            subject: "market.binance.BTC-USDT.trade",
            captures: &["binance", "BTC-USDT", "x.y"],
            headers: &headers,
            now_ms: NOW,
        };
        t.render_subject(&ctx, &payload)
    }

    fn value(text: &str, payload: Value) -> Result<Value, TemplateError> {
        let names = names();
        let t = Template::compile(text, CaptureScope::Names(&names))?;
        let headers = Headers::new();
        let ctx = MessageContext {
            subject: "s",
            captures: &["binance", "BTC-USDT", "x.y"],
            headers: &headers,
            now_ms: NOW,
        };
        t.render_value(&ctx, &payload)
    }

    #[test]
    fn capture_placeholders() {
        assert_eq!(
            render("canonical.{exchange}.{symbol}", json!({})).unwrap(),
            "canonical.binance.BTC-USDT"
        );
        assert_eq!(render("a.{rest}", json!({})).unwrap(), "a.x.y");
        assert_eq!(
            render("{exchange}-{symbol}", json!({})).unwrap(),
            "binance-BTC-USDT"
        );
    }

    #[test]
    fn jsonpath_placeholders() {
        let p = json!({"market_type": "spot", "id": 42, "flag": true, "nested": {"a": "b"}});
        assert_eq!(
            render("t.{$.market_type}.{$.id}", p.clone()).unwrap(),
            "t.spot.42"
        );
        assert_eq!(value("{$.nested}", p.clone()).unwrap(), json!({"a": "b"}));
        assert_eq!(value("id-{$.id}", p.clone()).unwrap(), json!("id-42"));
        assert_eq!(value("{$.flag}", p.clone()).unwrap(), json!(true));
        assert!(matches!(
            render("t.{$.missing}", p.clone()),
            Err(TemplateError::Missing { .. })
        ));
        assert!(matches!(
            render("t.{$.nested}", p),
            Err(TemplateError::NotText { .. })
        ));
    }

    #[test]
    fn time_and_subject_variables() {
        assert_eq!(value("{@now_ms}", json!({})).unwrap(), json!(NOW));
        assert_eq!(
            value("{@now}", json!({})).unwrap(),
            json!("2026-11-21T19:42:13.500Z")
        );
        assert_eq!(
            value("at {@now_ms}", json!({})).unwrap(),
            json!(format!("at {NOW}"))
        );
        assert_eq!(
            render("copy.{@subject}", json!({})).unwrap(),
            "copy.market.binance.BTC-USDT.trade"
        );
    }

    #[test]
    fn literal_braces() {
        assert_eq!(value("{{x}}", json!({})).unwrap(), json!("{x}"));
        let t = Template::compile("plain.text", CaptureScope::Unchecked).unwrap();
        assert!(t.is_literal());
        assert!(!t.uses_payload());
    }

    #[test]
    fn invalid_rendered_subjects_are_errors_not_panics() {
        let p = json!({"space": "a b", "dotted": "a.b", "star": "*", "empty": ""});
        assert!(matches!(
            render("x.{$.space}", p.clone()),
            Err(TemplateError::InvalidSubject { .. })
        ));
        assert!(matches!(
            render("x.{$.dotted}", p.clone()),
            Err(TemplateError::NotToken { .. })
        ));
        assert!(matches!(
            render("x.{$.star}", p.clone()),
            Err(TemplateError::InvalidSubject { .. })
        ));
        assert!(matches!(
            render("x.{$.empty}", p),
            Err(TemplateError::NotToken { .. })
        ));
    }

    #[test]
    fn compile_errors() {
        let names = names();
        let scope = CaptureScope::Names(&names);
        assert!(matches!(
            Template::compile("a.{market}", scope),
            Err(TemplateError::UnknownCapture { name, .. }) if name == "market"
        ));
        assert!(Template::compile("a.{market}", CaptureScope::Unchecked).is_ok());
        for bad in ["a.{", "a.}", "{@later}", "{1x}", "{$.[}"] {
            assert!(Template::compile(bad, scope).is_err(), "{bad}");
        }
        let t = Template::compile("{exchange}.{$.a}", scope).unwrap();
        assert!(t.uses_payload());
        assert_eq!(t.captures().collect::<Vec<_>>(), ["exchange"]);
    }
}
