//! JSONPath expressions on message payloads, compiled once at load. Plain chains of names and
//! indices (`$.price`, `$.bids[0].price`) take a fast direct lookup; everything else
//! (wildcards, slices, filters, descendants) runs the compiled `jsonpath-rust` query.
//!
//! Layer 1 (primitive) of [`crate::rules`]; imports nothing from it.

use std::fmt;

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde_json::Value;

use super::lazy::JsonRoot;

/// Why a JSONPath does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("invalid jsonpath {path:?}: {message}")]
    Invalid { path: String, message: String },
}

/// A compiled JSONPath.
#[derive(Clone)]
pub struct CompiledPath {
    text: String,
    kind: PathKind,
}

#[derive(Clone)]
enum PathKind {
    Simple(Vec<Step>),
    General(JpQuery),
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
}

impl fmt::Debug for CompiledPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompiledPath({:?})", self.text)
    }
}

impl CompiledPath {
    pub fn compile(text: &str) -> Result<Self, PathError> {
        if !text.starts_with('$') {
            return Err(PathError::Invalid {
                path: text.into(),
                message: "a jsonpath starts with '$'".into(),
            });
        }
        let query = parse_json_path(text).map_err(|e| PathError::Invalid {
            path: text.into(),
            message: e.to_string().to_lowercase(),
        })?;
        let kind = match simple_steps(&query) {
            Some(steps) => PathKind::Simple(steps),
            None => PathKind::General(query),
        };
        Ok(CompiledPath {
            text: text.into(),
            kind,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The field name when the path is one top-level name (`$.price`).
    pub fn top_level_key(&self) -> Option<&str> {
        match &self.kind {
            PathKind::Simple(steps) => match steps.as_slice() {
                [Step::Key(key)] => Some(key),
                _ => None,
            },
            PathKind::General(_) => None,
        }
    }

    /// True when the path selects at most one value (no wildcard, slice, filter, descent).
    pub fn is_singular(&self) -> bool {
        matches!(self.kind, PathKind::Simple(_))
    }

    /// The first value the path selects.
    pub fn first<'a, R: JsonRoot + ?Sized>(&self, root: &'a R) -> Option<&'a Value> {
        match &self.kind {
            PathKind::Simple(steps) => lookup_root(root, steps),
            PathKind::General(query) => js_path_process(query, root.whole())
                .ok()
                .and_then(|refs| refs.into_iter().next().map(|r| r.val())),
        }
    }

    /// Every value the path selects, in document order.
    pub fn all<'a, R: JsonRoot + ?Sized>(&self, root: &'a R) -> Vec<&'a Value> {
        match &self.kind {
            PathKind::Simple(steps) => lookup_root(root, steps).into_iter().collect(),
            PathKind::General(query) => js_path_process(query, root.whole())
                .map(|refs| refs.into_iter().map(|r| r.val()).collect())
                .unwrap_or_default(),
        }
    }

    /// True when some selected value satisfies `test`; false when nothing is selected.
    pub fn any<R: JsonRoot + ?Sized>(&self, root: &R, test: impl FnMut(&Value) -> bool) -> bool {
        match &self.kind {
            PathKind::Simple(steps) => lookup_root(root, steps).is_some_and(test),
            PathKind::General(_) => self.all(root).into_iter().any(test),
        }
    }

    /// True when the path selects something; a one-name path (`$.price`) does not read
    /// the value.
    pub fn exists<R: JsonRoot + ?Sized>(&self, root: &R) -> bool {
        match &self.kind {
            PathKind::Simple(steps) => match steps.as_slice() {
                [Step::Key(key)] => root.has_field(key),
                _ => lookup_root(root, steps).is_some(),
            },
            PathKind::General(_) => self.first(root).is_some(),
        }
    }
}

/// A plain chain from the root: its first name is a top-level field (read without the
/// whole payload), the rest is looked up in that field's value.
fn lookup_root<'a, R: JsonRoot + ?Sized>(root: &'a R, steps: &[Step]) -> Option<&'a Value> {
    match steps.split_first() {
        Some((Step::Key(key), rest)) => lookup(root.field(key)?, rest),
        _ => lookup(root.whole(), steps),
    }
}

fn simple_steps(query: &JpQuery) -> Option<Vec<Step>> {
    query
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Selector(Selector::Name(name)) => Some(Step::Key(unquote(name))),
            Segment::Selector(Selector::Index(i)) => Some(Step::Index(*i)),
            _ => None,
        })
        .collect()
}

/// Name selectors written in brackets (`$['a b']`) keep their quotes in the parsed model.
fn unquote(name: &str) -> String {
    let bytes = name.as_bytes();
    if bytes.len() >= 2
        && (bytes[0] == b'\'' || bytes[0] == b'"')
        && bytes[bytes.len() - 1] == bytes[0]
    {
        name[1..name.len() - 1].to_string()
    } else {
        name.to_string()
    }
}

fn lookup<'a>(root: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    let mut node = root;
    for step in steps {
        node = match (step, node) {
            (Step::Key(k), Value::Object(map)) => map.get(k)?,
            (Step::Index(i), Value::Array(items)) => {
                let idx = if *i < 0 {
                    items.len().checked_sub(i.unsigned_abs() as usize)?
                } else {
                    *i as usize
                };
                items.get(idx)?
            }
            _ => return None,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn book() -> Value {
        json!({"price": "1.5", "bids": [{"price": "10", "q": 1}, {"price": "9", "q": 2}],
               "a b": {"c": true}, "n": null})
    }

    #[test]
    fn simple_paths_take_the_fast_lookup() {
        let p = CompiledPath::compile("$.bids[1].price").unwrap();
        assert!(p.is_singular());
        assert_eq!(p.first(&book()), Some(&json!("9")));
        let last = CompiledPath::compile("$.bids[-1].q").unwrap();
        assert_eq!(last.first(&book()), Some(&json!(2)));
        let quoted = CompiledPath::compile("$['a b'].c").unwrap();
        assert!(quoted.is_singular());
        assert_eq!(quoted.first(&book()), Some(&json!(true)));
        let root = CompiledPath::compile("$").unwrap();
        assert_eq!(root.first(&book()), Some(&book()));
    }

    #[test]
    fn missing_and_null_differ() {
        let missing = CompiledPath::compile("$.nope.deeper").unwrap();
        assert_eq!(missing.first(&book()), None);
        let null = CompiledPath::compile("$.n").unwrap();
        assert_eq!(null.first(&book()), Some(&Value::Null));
        let out_of_range = CompiledPath::compile("$.bids[7]").unwrap();
        assert_eq!(out_of_range.first(&book()), None);
        let key_on_array = CompiledPath::compile("$.bids.price").unwrap();
        assert_eq!(key_on_array.first(&book()), None);
    }

    #[test]
    fn general_paths_select_many() {
        let p = CompiledPath::compile("$.bids[*].price").unwrap();
        assert!(!p.is_singular());
        assert_eq!(p.all(&book()), vec![&json!("10"), &json!("9")]);
        assert!(p.any(&book(), |v| v == "9"));
        assert!(!p.any(&book(), |v| v == "8"));
        let filter = CompiledPath::compile("$.bids[?@.q > 1].price").unwrap();
        assert_eq!(filter.first(&book()), Some(&json!("9")));
    }

    #[test]
    fn invalid_paths_are_errors() {
        assert!(CompiledPath::compile("price").is_err());
        assert!(CompiledPath::compile("$.[").is_err());
        assert!(CompiledPath::compile("$.a[?@.b ==]").is_err());
    }
}
