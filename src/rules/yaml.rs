//! A YAML tree that remembers the line of every key and value, so rule files can report each
//! problem as `file:line: …`. Parsed once with `serde-saphyr` (`Spanned`), then walked by the
//! route and transform loaders, which check fields themselves and collect every problem.
//!
//! Layer 1 (primitive) of [`crate::rules`]; imports nothing from it.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

/// Why a rule file could not be parsed as YAML at all.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("invalid yaml: {message}")]
    Syntax { line: usize, message: String },
}

impl YamlError {
    /// The line the parser stopped at, 0 when unknown.
    pub fn line(&self) -> usize {
        match self {
            YamlError::Syntax { line, .. } => *line,
        }
    }
}

/// One problem found while compiling a rule file, at a line of that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

impl Problem {
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        Problem {
            line,
            message: message.into(),
        }
    }
}

/// One YAML node with the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: NodeValue,
}

/// The shape of a node; mappings keep their keys in file order, with the key's line.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_line: usize,
    pub value: Node,
}

/// Parses `text` into a line-annotated tree; an empty document is `Null` at line 1.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    if text.trim().is_empty() {
        return Ok(Node {
            line: 1,
            value: NodeValue::Null,
        });
    }
    // YAML 1.2 booleans only: a field named `n` or a value `y` / `no` / `off` stays text.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    let spanned: Spanned<NodeValue> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| YamlError::Syntax {
            line: e.location().map(|l| l.line() as usize).unwrap_or(0),
            message: first_line(&e.to_string()),
        })?;
    Ok(Node::from(spanned))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

impl From<Spanned<NodeValue>> for Node {
    fn from(s: Spanned<NodeValue>) -> Self {
        Node {
            line: s.referenced.line() as usize,
            value: s.value,
        }
    }
}

impl Node {
    /// The node as plain JSON (lines dropped), for serde-typed leaves and payloads.
    pub fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Number(n) => Value::Number(n.clone()),
            NodeValue::String(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => {
                let mut map = Map::new();
                for e in entries {
                    map.insert(e.key.clone(), e.value.to_json());
                }
                Value::Object(map)
            }
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            NodeValue::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            NodeValue::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The value under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// A word for the node's type, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Number(_) => "a number",
            NodeValue::String(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any yaml value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeValue, E> {
        Ok(NodeValue::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeValue, E> {
        Number::from_f64(v)
            .map(NodeValue::Number)
            .ok_or_else(|| E::custom("non-finite numbers are not supported"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<NodeValue>>()? {
            items.push(Node::from(item));
        }
        Ok(NodeValue::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries: Vec<Entry> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyValue>>()? {
            let value: Spanned<NodeValue> = map.next_value()?;
            let key_line = key.referenced.line() as usize;
            let key = key.value.0;
            if entries.iter().any(|e| e.key == key) {
                return Err(de::Error::custom(format!(
                    "duplicate key {key:?} at line {key_line}"
                )));
            }
            entries.push(Entry {
                key,
                key_line,
                value: Node::from(value),
            });
        }
        Ok(NodeValue::Map(entries))
    }
}

/// A mapping key: strings, and scalars written without quotes (`1: x`, `true: y`) as text.
struct KeyValue(String);

impl<'de> Deserialize<'de> for KeyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match NodeValue::deserialize(deserializer)? {
            NodeValue::String(s) => Ok(KeyValue(s)),
            NodeValue::Number(n) => Ok(KeyValue(n.to_string())),
            NodeValue::Bool(b) => Ok(KeyValue(b.to_string())),
            NodeValue::Null => Ok(KeyValue("null".into())),
            _ => Err(de::Error::custom("mapping keys must be scalars")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_nested_keys_and_items() {
        let text =
            "routes:\n  - name: a\n    from: x.y\n  - name: b\n    to:\n      - subject: z\n";
        let root = parse(text).unwrap();
        let routes = root.get("routes").unwrap().as_seq().unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].line, 2);
        assert_eq!(routes[1].line, 4);
        let entries = routes[1].as_map().unwrap();
        assert_eq!(entries[1].key, "to");
        assert_eq!(entries[1].key_line, 5);
        let to = entries[1].value.as_seq().unwrap();
        assert_eq!(to[0].line, 6);
        assert_eq!(to[0].get("subject").unwrap().as_str(), Some("z"));
    }

    #[test]
    fn scalars_become_json() {
        let root = parse("a: 1\nb: 2.5\nc: true\nd: null\ne: [x, 3]\n").unwrap();
        assert_eq!(
            root.to_json(),
            serde_json::json!({"a": 1, "b": 2.5, "c": true, "d": null, "e": ["x", 3]})
        );
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let err = parse("a: 1\nb: [unclosed\nc: 2\n").unwrap_err();
        assert!(err.line() >= 2, "{err}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        assert!(parse("a: 1\na: 2\n").is_err());
    }

    #[test]
    fn yaml_1_1_booleans_stay_text() {
        assert_eq!(
            parse("a: [y, n, yes, off, true, False]").unwrap().to_json(),
            serde_json::json!({"a": ["y", "n", "yes", "off", true, false]})
        );
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("  \n").unwrap().value, NodeValue::Null);
    }
}
