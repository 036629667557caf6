//! Dotted field names used by transform configs (`price`, `meta.venue`): lookup, insert
//! (creating intermediate objects), and removal on a JSON payload.
//!
//! The same operations on a lazily read payload ([`LazyObject`]) take the first segment
//! from its top level, so only that field is parsed, and a field moved as a whole is never
//! parsed at all.
//!
//! Layer 2 (steps): shared by the kinds; imports only the `lazy` primitive.

use serde_json::{Map, Value};

use crate::rules::lazy::{JsonRoot, LazyObject, Slot};

/// A field name split on dots; each segment is an object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let segments: Vec<String> = text.split('.').map(String::from).collect();
        if text.is_empty() || segments.iter().any(String::is_empty) {
            return Err(format!(
                "field name {text:?} is empty or has an empty segment"
            ));
        }
        Ok(FieldPath {
            text: text.into(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.segments
            .iter()
            .try_fold(root, |node, key| node.as_object()?.get(key))
    }

    pub fn get_mut<'a>(&self, root: &'a mut Value) -> Option<&'a mut Value> {
        self.segments
            .iter()
            .try_fold(root, |node, key| node.as_object_mut()?.get_mut(key))
    }

    /// Removes the field and returns its value.
    pub fn take(&self, root: &mut Value) -> Option<Value> {
        let (last, parents) = self.segments.split_last()?;
        let parent = parents
            .iter()
            .try_fold(root, |node, key| node.as_object_mut()?.get_mut(key))?;
        parent.as_object_mut()?.remove(last)
    }

    /// Sets the field, creating intermediate objects; fails when a parent is not an object.
    pub fn set(&self, root: &mut Value, value: Value) -> Result<(), String> {
        self.set_below(root, &self.segments, value)
    }

    /// Sets the field at `segments` below `node`.
    fn set_below(&self, node: &mut Value, segments: &[String], value: Value) -> Result<(), String> {
        let Some((last, parents)) = segments.split_last() else {
            return Err("empty field name".into());
        };
        let mut node = node;
        for key in parents {
            let map = node.as_object_mut().ok_or_else(|| {
                format!("cannot set {:?}: {key:?} is inside a non-object", self.text)
            })?;
            node = map
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        match node.as_object_mut() {
            Some(map) => {
                map.insert(last.clone(), value);
                Ok(())
            }
            None => Err(format!(
                "cannot set {:?}: its parent is not an object",
                self.text
            )),
        }
    }

    /// [`FieldPath::get`] on a lazily read payload.
    pub fn get_lazy<'a>(&self, root: &'a LazyObject<'_>) -> Option<&'a Value> {
        let (first, rest) = self.segments.split_first()?;
        rest.iter()
            .try_fold(root.field(first)?, |node, key| node.as_object()?.get(key))
    }

    /// The top-level field's name when the path is just that.
    pub fn top_level(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [key] => Some(key),
            _ => None,
        }
    }

    /// [`FieldPath::get_mut`] on a lazily read payload (the top-level field it is in is
    /// then written out by serde_json).
    pub fn get_mut_lazy<'a>(&self, root: &'a mut LazyObject<'_>) -> Option<&'a mut Value> {
        let (first, rest) = self.segments.split_first()?;
        rest.iter().try_fold(root.field_mut(first)?, |node, key| {
            node.as_object_mut()?.get_mut(key)
        })
    }

    /// [`FieldPath::take`] on a lazily read payload: a top-level field comes out unparsed.
    pub fn take_lazy<'a>(&self, root: &mut LazyObject<'a>) -> Option<Slot<'a>> {
        match self.segments.as_slice() {
            [key] => root.remove(key),
            [first, parents @ .., last] => {
                let parent = parents
                    .iter()
                    .try_fold(root.field_mut(first)?, |node, key| {
                        node.as_object_mut()?.get_mut(key)
                    })?;
                parent.as_object_mut()?.remove(last).map(Slot::from_value)
            }
            [] => None,
        }
    }

    /// [`FieldPath::set`] on a lazily read payload: a top-level field takes the slot as it
    /// is (unparsed, when it was moved from another field).
    pub fn set_lazy<'a>(&self, root: &mut LazyObject<'a>, slot: Slot<'a>) -> Result<(), String> {
        match self.segments.split_first() {
            Some((key, [])) => {
                root.insert(key, slot);
                Ok(())
            }
            Some((first, rest)) => {
                let node = root.field_or_insert_with(first, || Value::Object(Map::new()));
                self.set_below(node, rest, slot.into_value())
            }
            None => Err("empty field name".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_get_set_take() {
        let mut v = json!({"a": {"b": 1}, "c": 2});
        let ab = FieldPath::parse("a.b").unwrap();
        assert_eq!(ab.get(&v), Some(&json!(1)));
        let xy = FieldPath::parse("x.y").unwrap();
        xy.set(&mut v, json!("new")).unwrap();
        assert_eq!(v["x"], json!({"y": "new"}));
        assert_eq!(ab.take(&mut v), Some(json!(1)));
        assert_eq!(v["a"], json!({}));
        let cz = FieldPath::parse("c.z").unwrap();
        assert!(cz.set(&mut v, json!(1)).is_err(), "c is a number");
        assert_eq!(cz.get(&v), None);
        assert!(FieldPath::parse("a..b").is_err());
        assert!(FieldPath::parse("").is_err());
    }
}
