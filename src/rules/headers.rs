//! Message headers as the rule language sees them: an ordered multi-map whose names and
//! values are async-nats's own [`HeaderName`] and [`HeaderValue`], so whatever the rule
//! language holds can be handed to NATS as it is. Each name and value is checked once,
//! with async-nats's fallible constructors (`FromStr`, never the panicking `From<&str>`),
//! where it enters: a rendered template or `msg_id` ([`header_value`]), a route file's
//! header name ([`header_name`]), a test file or an API request (deserialization). The
//! headers of a received message are taken as async-nats parsed them.
//!
//! Name lookups ignore ASCII case, as NATS and HTTP header names are conventionally
//! case-insensitive; names keep the spelling they were first given.
//!
//! Layer 1 (primitive) of [`crate::rules`]; imports nothing from it.

use std::fmt;
use std::str::FromStr;

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Why a header name or value cannot be sent on NATS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header name {name:?} is not valid for nats (printable ascii without ':', not empty)")]
    Name { name: String },
    #[error("header {name} value {value:?} is not valid for nats (no line breaks)")]
    Value {
        name: String,
        /// The start of the value, enough to recognise it.
        value: String,
    },
}

/// A header name NATS accepts: not empty, and what `HeaderName::from_str` accepts
/// (printable ASCII without ':').
pub fn header_name(name: &str) -> Result<HeaderName, HeaderError> {
    let invalid = || HeaderError::Name {
        name: preview(name),
    };
    if name.is_empty() {
        return Err(invalid());
    }
    HeaderName::from_str(name).map_err(|_| invalid())
}

/// A header value NATS accepts (what `HeaderValue::from_str` accepts: no CR or LF); `name`
/// is the header it is for, to name it in the error.
pub fn header_value(name: &str, value: &str) -> Result<HeaderValue, HeaderError> {
    HeaderValue::from_str(value).map_err(|_| HeaderError::Value {
        name: name.to_string(),
        value: preview(value),
    })
}

/// At most 64 characters of `text`, for an error message.
fn preview(text: &str) -> String {
    let mut out: String = text.chars().take(64).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// Ordered header map; each name holds one or more values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(HeaderName, Vec<HeaderValue>)>,
}

impl Headers {
    pub fn new() -> Self {
        Headers::default()
    }

    /// Headers from `(name, value)` text pairs, each checked; the first invalid one fails.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Headers, HeaderError> {
        let mut headers = Headers::new();
        for (name, value) in pairs {
            headers.append_text(name, value)?;
        }
        Ok(headers)
    }

    /// The headers of a received message, as async-nats parsed them (so already valid).
    pub fn from_nats(headers: &HeaderMap) -> Headers {
        let mut out = Headers::new();
        for (name, values) in headers.iter() {
            for value in values {
                out.append(name.clone(), value.clone());
            }
        }
        out
    }

    /// [`Headers::into_nats`] of a copy, for a message that may be sent again.
    pub fn to_nats(&self) -> HeaderMap {
        let mut out = HeaderMap::new();
        for (name, values) in &self.entries {
            for value in values {
                out.append(name.clone(), value.clone());
            }
        }
        out
    }

    /// The headers as async-nats sends them; nothing to check, every entry is valid.
    pub fn into_nats(self) -> HeaderMap {
        let mut out = HeaderMap::new();
        for (name, values) in self.entries {
            for value in values {
                out.append(name.clone(), value);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|(n, _)| AsRef::<str>::as_ref(n).eq_ignore_ascii_case(name))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).first().map(HeaderValue::as_str)
    }

    /// Every value of `name`; empty when absent.
    pub fn get_all(&self, name: &str) -> &[HeaderValue] {
        match self.position(name) {
            Some(i) => &self.entries[i].1,
            None => &[],
        }
    }

    /// Sets `name` to the single `value`, replacing earlier values.
    pub fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        match self.position(name.as_ref()) {
            Some(i) => self.entries[i].1 = vec![value],
            None => self.entries.push((name, vec![value])),
        }
    }

    /// Adds `value` to `name`, keeping earlier values.
    pub fn append(&mut self, name: HeaderName, value: HeaderValue) {
        match self.position(name.as_ref()) {
            Some(i) => self.entries[i].1.push(value),
            None => self.entries.push((name, vec![value])),
        }
    }

    /// [`Headers::insert`] of text, checked.
    pub fn insert_text(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        let value = header_value(name, value)?;
        self.insert(header_name(name)?, value);
        Ok(())
    }

    /// [`Headers::append`] of text, checked.
    pub fn append_text(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        let value = header_value(name, value)?;
        self.append(header_name(name)?, value);
        Ok(())
    }

    /// `(name, values)` in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &[HeaderValue])> {
        self.entries.iter().map(|(n, v)| (n, v.as_slice()))
    }
}

/// Test files and tests write headers as text pairs; an invalid one is a test bug.
#[cfg(test)]
impl<'a> FromIterator<(&'a str, &'a str)> for Headers {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        match Headers::from_pairs(iter) {
            Ok(headers) => headers,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Serialized as a map: one value as a string, several as a list.
impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, values) in &self.entries {
            let name: &str = name.as_ref();
            match values.as_slice() {
                [one] => map.serialize_entry(name, one.as_str())?,
                many => map.serialize_entry(
                    name,
                    &many.iter().map(HeaderValue::as_str).collect::<Vec<_>>(),
                )?,
            }
        }
        map.end()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;
        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of header names to a string or a list of strings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Headers, E> {
                Ok(Headers::new())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut headers = Headers::new();
                while let Some((name, values)) = map.next_entry::<String, OneOrMany>()? {
                    let values = match values {
                        OneOrMany::One(v) => vec![v],
                        OneOrMany::Many(vs) => vs,
                    };
                    for v in values {
                        headers.append_text(&name, &v).map_err(de::Error::custom)?;
                    }
                }
                Ok(headers)
            }
        }
        deserializer.deserialize_any(HeadersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ignore_case_and_keep_order() {
        let mut h = Headers::new();
        h.insert_text("Nats-Msg-Id", "a").unwrap();
        h.append_text("x-source", "one").unwrap();
        h.append_text("X-Source", "two").unwrap();
        assert_eq!(h.get("nats-msg-id"), Some("a"));
        assert_eq!(
            h.get_all("X-SOURCE"),
            ["one", "two"].map(|v| v.parse().unwrap())
        );
        h.insert_text("NATS-MSG-ID", "b").unwrap();
        assert_eq!(h.get("Nats-Msg-Id"), Some("b"));
        let names: Vec<&str> = h.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names, ["Nats-Msg-Id", "x-source"]);
    }

    #[test]
    fn serde_round_trip() {
        let h: Headers =
            serde_json::from_value(serde_json::json!({"a": "1", "b": ["2", "3"]})).unwrap();
        assert_eq!(h.get_all("b"), ["2", "3"].map(|v| v.parse().unwrap()));
        let back = serde_json::to_value(&h).unwrap();
        assert_eq!(back, serde_json::json!({"a": "1", "b": ["2", "3"]}));
        let empty: Headers = serde_json::from_value(serde_json::Value::Null).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn what_nats_cannot_send_is_an_error_not_a_panic() {
        for name in ["", "a b", "a:b", "Zürich", "a\r\nb", "tab\there", "\u{7f}"] {
            assert!(
                matches!(header_name(name), Err(HeaderError::Name { .. })),
                "{name:?}"
            );
        }
        for value in ["a\nb", "a\r\nb", "\r", "x\n"] {
            let err = header_value("Nats-Msg-Id", value).unwrap_err();
            assert!(
                err.to_string().starts_with("header Nats-Msg-Id value"),
                "{err}"
            );
        }
        for value in ["", "plain", "Zürich ü 日本", "tab\there", "nul\0byte"] {
            assert!(header_value("X", value).is_ok(), "{value:?}");
        }
        let long = "x".repeat(10_000) + "\n";
        let err = header_value("X", &long).unwrap_err().to_string();
        assert!(
            err.len() < 200,
            "the error shows the start of the value only: {err}"
        );
        let parsed: Result<Headers, _> = serde_json::from_value(serde_json::json!({"a b": "1"}));
        assert!(parsed.unwrap_err().to_string().contains("\"a b\""));
        let parsed: Result<Headers, _> = serde_json::from_value(serde_json::json!({"X": "1\n2"}));
        assert!(parsed.unwrap_err().to_string().contains("header X value"));
    }

    #[test]
    fn converts_to_and_from_the_nats_header_map() {
        let h = Headers::from_pairs([("X-A", "1"), ("x-a", "2"), ("Nats-Msg-Id", "id")]).unwrap();
        let map = h.clone().into_nats();
        let values: Vec<&str> = map.get_all("X-A").map(HeaderValue::as_str).collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(map.get("Nats-Msg-Id").map(HeaderValue::as_str), Some("id"));
        assert_eq!(Headers::from_nats(&map).get_all("x-a").len(), 2);
    }
}
