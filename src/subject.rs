//! NATS subject syntax: validation of concrete subjects and of filters with `*` / `>`,
//! matching a subject against a filter, and overlap of two filters. Pure, no I/O; shared by
//! config validation, the REST API, stream capture lookup and route lint.

/// Why a subject or filter is not valid, in words for an error message.
pub type SubjectError = String;

/// The longest subject the service publishes or accepts. nats-server reads a publish's
/// control line (`HPUB <subject> <reply inbox> <header size> <total size>`) into at most
/// 4,096 bytes (`max_control_line`) and closes the connection on a longer one, which would
/// cut every route and request sharing it; 3,072 leaves room for the rest of the line.
pub const MAX_SUBJECT_LEN: usize = 3072;

/// A concrete subject a message can be published to: non-empty dot-separated tokens, no
/// wildcards, no white space or control characters, at most [`MAX_SUBJECT_LEN`] bytes.
/// Allocates only to describe a failure (it runs once per routed message).
pub fn validate_subject(subject: &str) -> Result<(), SubjectError> {
    validate(subject, false)
}

/// A subscription or stream filter: like a subject, but `*` may stand for one token and `>`
/// for the rest (last token only).
pub fn validate_filter(filter: &str) -> Result<(), SubjectError> {
    validate(filter, true)
}

fn validate(text: &str, wildcards: bool) -> Result<(), SubjectError> {
    if text.is_empty() {
        return Err("subject is empty".into());
    }
    if text.len() > MAX_SUBJECT_LEN {
        return Err(format!(
            "subject is {} bytes long, more than {MAX_SUBJECT_LEN}",
            text.len()
        ));
    }
    // one pass: characters are checked as they come, each token when its '.' (or the end)
    // is reached; `wild` says whether the token holds '*' or '>'
    let mut start = 0;
    let mut wild = false;
    for (i, c) in text.char_indices() {
        match c {
            '.' => {
                validate_token(text, &text[start..i], wild, false, wildcards)?;
                start = i + 1;
                wild = false;
            }
            '*' | '>' => wild = true,
            c if c.is_whitespace() || c.is_control() => {
                return Err(format!("subject {text:?} contains the character {c:?}"));
            }
            _ => {}
        }
    }
    validate_token(text, &text[start..], wild, true, wildcards)
}

fn validate_token(
    text: &str,
    token: &str,
    wild: bool,
    last: bool,
    wildcards: bool,
) -> Result<(), SubjectError> {
    if token.is_empty() {
        return Err(format!("subject {text:?} has an empty token"));
    }
    if !wild {
        return Ok(());
    }
    let is_wildcard = token == "*" || token == ">";
    if is_wildcard && !wildcards {
        return Err(format!("subject {text:?} contains the wildcard {token:?}"));
    }
    if token == ">" && !last {
        return Err(format!("subject {text:?}: '>' must be the last token"));
    }
    if !is_wildcard {
        return Err(format!(
            "subject {text:?}: wildcard characters must stand alone in a token"
        ));
    }
    Ok(())
}

/// True when the concrete `subject` is matched by `filter`.
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True when some concrete subject is matched by both filters.
pub fn overlap(a: &str, b: &str) -> bool {
    let mut x = a.split('.');
    let mut y = b.split('.');
    loop {
        match (x.next(), y.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some("*"), Some(_)) | (Some(_), Some("*")) => {}
            (Some(p), Some(q)) if p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True when every subject matched by `inner` is also matched by `outer`.
pub fn contains(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('.');
    let mut i = inner.split('.');
    loop {
        match (o.next(), i.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(p), Some(q)) if p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concrete_subjects() {
        assert!(validate_subject("trade.binance.spot.BTC-USDT").is_ok());
        assert!(validate_subject("a").is_ok());
        assert!(validate_subject("").is_err());
        assert!(validate_subject("a..b").is_err());
        assert!(validate_subject(".a").is_err());
        assert!(validate_subject("a.").is_err());
        assert!(validate_subject("a.*").is_err());
        assert!(validate_subject("a.>").is_err());
        assert!(validate_subject("a b").is_err());
        assert!(validate_subject("a\tb").is_err());
        assert!(validate_subject("a\r\nb").is_err());
        assert!(validate_subject("ä.ß").is_ok(), "multibyte text is allowed");
        let long = "a".repeat(MAX_SUBJECT_LEN);
        assert!(validate_subject(&long).is_ok());
        let too_long = format!("{long}b");
        assert!(validate_subject(&too_long)
            .unwrap_err()
            .contains("more than 3072"));
        assert!(validate_filter(&too_long).is_err());
    }

    /// The plain token-by-token reading of the rules, to check the one-pass one against.
    fn reference(text: &str, wildcards: bool) -> Result<(), SubjectError> {
        if text.is_empty() {
            return Err("subject is empty".into());
        }
        let tokens: Vec<&str> = text.split('.').collect();
        for (i, token) in tokens.iter().enumerate() {
            if token.is_empty() {
                return Err(format!("subject {text:?} has an empty token"));
            }
            if let Some(c) = token.chars().find(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("subject {text:?} contains the character {c:?}"));
            }
            let is_wildcard = *token == "*" || *token == ">";
            if is_wildcard && !wildcards {
                return Err(format!("subject {text:?} contains the wildcard {token:?}"));
            }
            if *token == ">" && i + 1 != tokens.len() {
                return Err(format!("subject {text:?}: '>' must be the last token"));
            }
            if !is_wildcard && (token.contains('*') || token.contains('>')) {
                return Err(format!(
                    "subject {text:?}: wildcard characters must stand alone in a token"
                ));
            }
        }
        Ok(())
    }

    #[test]
    fn one_pass_validation_agrees_with_the_plain_reading() {
        let parts = [
            "a", "", ".", "*", ">", " ", "\t", "\n", "é", "日本", "\u{85}", "b*", ">c",
        ];
        let mut texts = Vec::new();
        for x in parts {
            for y in parts {
                for z in parts {
                    texts.push(format!("{x}{y}{z}"));
                    texts.push(format!("{x}.{y}.{z}"));
                }
            }
        }
        for text in &texts {
            for wildcards in [false, true] {
                assert_eq!(
                    validate(text, wildcards),
                    reference(text, wildcards),
                    "{text:?} wildcards={wildcards}"
                );
            }
        }
    }

    #[test]
    fn filters() {
        assert!(validate_filter("market.>").is_ok());
        assert!(validate_filter("trade.*.*.*").is_ok());
        assert!(validate_filter(">").is_ok());
        assert!(validate_filter("a.>.b").is_err());
        assert!(validate_filter("a.b*").is_err());
        assert!(validate_filter("a..>").is_err());
    }

    #[test]
    fn matching() {
        assert!(matches("market.>", "market.binance.BTCUSDT.trade"));
        assert!(!matches("market.>", "market"));
        assert!(matches("trade.*.spot.*", "trade.okx.spot.BTC"));
        assert!(!matches("trade.*.spot.*", "trade.okx.perp.BTC"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(matches("a.b", "a.b"));
    }

    #[test]
    fn overlaps_and_containment() {
        assert!(overlap("market.>", "market.binance.*"));
        assert!(overlap("a.*.c", "a.b.*"));
        assert!(!overlap("a.*", "b.*"));
        assert!(!overlap("a.*", "a.b.c"));
        assert!(overlap(">", "x"));
        assert!(contains("market.>", "market.*.x"));
        assert!(!contains("market.*", "market.>"));
        assert!(contains("a.*", "a.b"));
        assert!(!contains("a.b", "a.*"));
    }
}
