//! Message headers as the rule language sees them: an ordered multi-map of text names to text
//! values, independent of async-nats so the pure code and the command line need no client.
//! Name lookups ignore ASCII case, as NATS and HTTP header names are conventionally
//! case-insensitive; names keep the spelling they were first given.
//!
//! Layer 1 (primitive) of [`crate::rules`]; imports nothing from it.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Ordered header map; each name holds one or more values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<String>)>,
}

impl Headers {
    pub fn new() -> Self {
        Headers::default()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).first().map(String::as_str)
    }

    /// Every value of `name`; empty when absent.
    pub fn get_all(&self, name: &str) -> &[String] {
        match self.position(name) {
            Some(i) => &self.entries[i].1,
            None => &[],
        }
    }

    /// Sets `name` to the single `value`, replacing earlier values.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        match self.position(&name) {
            Some(i) => self.entries[i].1 = vec![value.into()],
            None => self.entries.push((name, vec![value.into()])),
        }
    }

    /// Adds `value` to `name`, keeping earlier values.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        match self.position(&name) {
            Some(i) => self.entries[i].1.push(value.into()),
            None => self.entries.push((name, vec![value.into()])),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// `(name, values)` in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (n, v) in iter {
            headers.append(n, v);
        }
        headers
    }
}

/// Serialized as a map: one value as a string, several as a list.
impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, values) in &self.entries {
            match values.as_slice() {
                [one] => map.serialize_entry(name, one)?,
                many => map.serialize_entry(name, many)?,
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
                    match values {
                        OneOrMany::One(v) => headers.append(name, v),
                        OneOrMany::Many(vs) => {
                            for v in vs {
                                headers.append(name.clone(), v);
                            }
                        }
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
        h.insert("Nats-Msg-Id", "a");
        h.append("x-source", "one");
        h.append("X-Source", "two");
        assert_eq!(h.get("nats-msg-id"), Some("a"));
        assert_eq!(h.get_all("X-SOURCE"), ["one", "two"]);
        h.insert("NATS-MSG-ID", "b");
        assert_eq!(h.get("Nats-Msg-Id"), Some("b"));
        let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["Nats-Msg-Id", "x-source"]);
        h.remove("x-SOURCE");
        assert_eq!(h.len(), 1);
        assert!(h.get_all("x-source").is_empty());
    }

    #[test]
    fn serde_round_trip() {
        let h: Headers =
            serde_json::from_value(serde_json::json!({"a": "1", "b": ["2", "3"]})).unwrap();
        assert_eq!(h.get_all("b"), ["2", "3"]);
        let back = serde_json::to_value(&h).unwrap();
        assert_eq!(back, serde_json::json!({"a": "1", "b": ["2", "3"]}));
        let empty: Headers = serde_json::from_value(serde_json::Value::Null).unwrap();
        assert!(empty.is_empty());
    }
}
