//! Subject patterns of a route's `from`: NATS tokens plus named captures. `{name}` captures
//! one token, `{name...}` captures the rest of the subject (like `>`), `*` and `>` work as in
//! NATS. A pattern compiles to the subscription filter (`trade.*.*.*`) and a matcher that
//! returns the captured tokens as slices of the subject (no allocation beyond one small Vec).
//!
//! Layer 1 (primitive) of [`crate::rules`]; imports nothing from it.

/// Why a subject pattern is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern is empty")]
    Empty,
    #[error("pattern {pattern:?} has an empty token")]
    EmptyToken { pattern: String },
    #[error("pattern {pattern:?}: {token:?} must be the last token")]
    TailNotLast { pattern: String, token: String },
    #[error("pattern {pattern:?}: capture {name:?} appears twice")]
    DuplicateCapture { pattern: String, name: String },
    #[error("pattern {pattern:?}: invalid token {token:?}: {why}")]
    BadToken {
        pattern: String,
        token: String,
        why: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// `{name}`: one token, captured at this index.
    Capture(usize),
    /// `*`
    Any,
    /// `>` or `{name...}`: one or more tokens, optionally captured.
    Tail(Option<usize>),
}

/// A compiled `from` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPattern {
    text: String,
    filter: String,
    tokens: Vec<Token>,
    captures: Vec<String>,
    tail_capture: Option<usize>,
}

/// True for names usable as captures: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_capture_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl SubjectPattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        let raw = split_tokens(text);
        let mut tokens = Vec::with_capacity(raw.len());
        let mut captures: Vec<String> = Vec::new();
        let mut tail_capture = None;
        let bad = |token: &str, why| PatternError::BadToken {
            pattern: text.into(),
            token: token.into(),
            why,
        };
        for (i, token) in raw.iter().enumerate() {
            let last = i + 1 == raw.len();
            if token.is_empty() {
                return Err(PatternError::EmptyToken {
                    pattern: text.into(),
                });
            }
            let parsed = if *token == "*" {
                Token::Any
            } else if *token == ">" {
                Token::Tail(None)
            } else if let Some(inner) = token.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                let (name, tail) = match inner.strip_suffix("...") {
                    Some(name) => (name, true),
                    None => (inner, false),
                };
                if !is_capture_name(name) {
                    return Err(bad(token, "capture names are letters, digits and '_'"));
                }
                if captures.iter().any(|c| c == name) {
                    return Err(PatternError::DuplicateCapture {
                        pattern: text.into(),
                        name: name.into(),
                    });
                }
                captures.push(name.into());
                let idx = captures.len() - 1;
                if tail {
                    tail_capture = Some(idx);
                    Token::Tail(Some(idx))
                } else {
                    Token::Capture(idx)
                }
            } else if token.contains(['{', '}']) {
                return Err(bad(token, "a capture must be a whole token"));
            } else if token.contains(['*', '>']) {
                return Err(bad(token, "wildcards must stand alone in a token"));
            } else if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(token, "white space is not allowed"));
            } else {
                Token::Literal((*token).into())
            };
            if matches!(parsed, Token::Tail(_)) && !last {
                return Err(PatternError::TailNotLast {
                    pattern: text.into(),
                    token: (*token).into(),
                });
            }
            tokens.push(parsed);
        }
        let filter = tokens
            .iter()
            .map(|t| match t {
                Token::Literal(s) => s.as_str(),
                Token::Capture(_) | Token::Any => "*",
                Token::Tail(_) => ">",
            })
            .collect::<Vec<_>>()
            .join(".");
        Ok(SubjectPattern {
            text: text.into(),
            filter,
            tokens,
            captures,
            tail_capture,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The NATS subscription filter, e.g. `trade.*.*.*`.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Capture names in pattern order; a capture's index is its position here.
    pub fn capture_names(&self) -> &[String] {
        &self.captures
    }

    /// The name of the `{name...}` capture, when there is one.
    pub fn tail_capture(&self) -> Option<&str> {
        self.tail_capture.map(|i| self.captures[i].as_str())
    }

    /// Captured values by capture index, or `None` when `subject` does not match.
    pub fn matches<'s>(&self, subject: &'s str) -> Option<Vec<&'s str>> {
        let mut values: Vec<&'s str> = vec![""; self.captures.len()];
        let mut pos = 0;
        for token in &self.tokens {
            if pos > subject.len() {
                return None;
            }
            let rest = &subject[pos..];
            if let Token::Tail(capture) = token {
                if rest.is_empty()
                    || rest.starts_with('.')
                    || rest.ends_with('.')
                    || rest.contains("..")
                {
                    return None;
                }
                if let Some(i) = capture {
                    values[*i] = rest;
                }
                return Some(values);
            }
            let end = rest.find('.').map_or(subject.len(), |d| pos + d);
            let head = &subject[pos..end];
            if head.is_empty() {
                return None;
            }
            match token {
                Token::Literal(lit) if lit != head => return None,
                Token::Capture(i) => values[*i] = head,
                _ => {}
            }
            pos = end + 1;
        }
        (pos == subject.len() + 1).then_some(values)
    }
}

/// Splits a pattern or template on the dots that are outside `{…}`.
pub fn split_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                tokens.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    tokens.push(&text[start..]);
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_to_a_filter_with_capture_names() {
        let p = SubjectPattern::parse("trade.{exchange}.{market_type}.{symbol}").unwrap();
        assert_eq!(p.filter(), "trade.*.*.*");
        assert_eq!(p.capture_names(), ["exchange", "market_type", "symbol"]);
        let tail = SubjectPattern::parse("market.{exchange}.{rest...}").unwrap();
        assert_eq!(tail.filter(), "market.*.>");
        assert_eq!(tail.tail_capture(), Some("rest"));
        assert_eq!(
            SubjectPattern::parse("a.*.>").unwrap().filter(),
            "a.*.>",
            "plain wildcards stay"
        );
    }

    #[test]
    fn matching_returns_captures() {
        let p = SubjectPattern::parse("trade.{exchange}.*.{symbol}").unwrap();
        assert_eq!(
            p.matches("trade.binance.spot.BTC-USDT"),
            Some(vec!["binance", "BTC-USDT"])
        );
        assert_eq!(p.matches("trade.binance.spot"), None);
        assert_eq!(p.matches("trade.binance.spot.BTC.x"), None);
        assert_eq!(p.matches("orderbook.binance.spot.BTC"), None);
        assert_eq!(p.matches("trade..spot.BTC"), None);
        assert_eq!(p.matches(""), None);
    }

    #[test]
    fn tails_need_at_least_one_token() {
        let p = SubjectPattern::parse("market.{exchange}.{rest...}").unwrap();
        assert_eq!(
            p.matches("market.okx.BTC.trade"),
            Some(vec!["okx", "BTC.trade"])
        );
        assert_eq!(p.matches("market.okx.x"), Some(vec!["okx", "x"]));
        assert_eq!(p.matches("market.okx"), None);
        assert_eq!(p.matches("market.okx."), None);
        let gt = SubjectPattern::parse(">").unwrap();
        assert_eq!(gt.matches("a.b"), Some(vec![]));
        assert_eq!(gt.matches(""), None);
    }

    #[test]
    fn matcher_agrees_with_nats_filters() {
        let subjects = [
            "a", "a.b", "a.b.c", "x.b.c", "a..c", "a.b.", ".a", "a.b.c.d",
        ];
        for pattern in [
            "a.*.c",
            "a.>",
            "*.b.>",
            "a.{x}",
            "{x}.{y}.{z}",
            "a.{t...}",
            "*",
        ] {
            let p = SubjectPattern::parse(pattern).unwrap();
            for s in subjects {
                let valid = crate::subject::validate_subject(s).is_ok();
                let expected = valid && crate::subject::matches(p.filter(), s);
                assert_eq!(p.matches(s).is_some(), expected, "{pattern} vs {s:?}");
            }
        }
    }

    #[test]
    fn invalid_patterns() {
        assert_eq!(SubjectPattern::parse(""), Err(PatternError::Empty));
        assert!(matches!(
            SubjectPattern::parse("a..b"),
            Err(PatternError::EmptyToken { .. })
        ));
        assert!(matches!(
            SubjectPattern::parse("a.>.b"),
            Err(PatternError::TailNotLast { .. })
        ));
        assert!(matches!(
            SubjectPattern::parse("a.{r...}.b"),
            Err(PatternError::TailNotLast { .. })
        ));
        assert!(matches!(
            SubjectPattern::parse("a.{x}.{x}"),
            Err(PatternError::DuplicateCapture { .. })
        ));
        for bad in ["a.b{x}", "a.{1x}", "a.b*", "a.{}", "a b.c"] {
            assert!(
                matches!(
                    SubjectPattern::parse(bad),
                    Err(PatternError::BadToken { .. })
                ),
                "{bad}"
            );
        }
    }
}
