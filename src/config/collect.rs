//! Deserializes a parsed YAML tree into a config type while collecting *every* problem,
//! not just the first one serde meets.
//!
//! serde stops at the first error. When the whole tree fails, each key is tried again on its
//! own (a tree holding just that key, every other field defaulted); a key that fails and
//! holds a mapping is split further, so each unknown field, wrong type or bad unit is
//! reported once with its full dotted path. All config types default every field, which
//! is what makes a one-key tree meaningful; missing required values are semantic checks.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::ConfigProblem;

/// Deserializes `tree` into `T`, or returns every problem found in it.
pub fn deserialize_all<T: DeserializeOwned>(tree: &Value) -> Result<T, Vec<ConfigProblem>> {
    let first = match try_deserialize::<T>(tree) {
        Ok(value) => return Ok(value),
        Err(problem) => problem,
    };
    let mut problems = Vec::new();
    if tree.is_object() {
        probe::<T>(tree, &mut Vec::new(), &mut problems);
    }
    if problems.is_empty() {
        problems.push(first);
    }
    Err(problems)
}

fn try_deserialize<T: DeserializeOwned>(tree: &Value) -> Result<T, ConfigProblem> {
    serde_path_to_error::deserialize::<_, T>(tree).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigProblem::new(path, err.into_inner().to_string())
    })
}

/// Tries each key below `prefix` on its own and records or splits what fails.
fn probe<T: DeserializeOwned>(
    root: &Value,
    prefix: &mut Vec<String>,
    out: &mut Vec<ConfigProblem>,
) {
    let Some(Value::Object(node)) = lookup(root, prefix) else {
        return;
    };
    for (key, child) in node {
        prefix.push(key.clone());
        if let Err(problem) = try_deserialize::<T>(&isolate(prefix, child)) {
            let key_path = prefix.join(".");
            let inside = problem.path.starts_with(&format!("{key_path}."));
            match child {
                Value::Object(map) if inside && !map.is_empty() => probe::<T>(root, prefix, out),
                _ => out.push(problem),
            }
        }
        prefix.pop();
    }
}

fn lookup<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(root, |node, key| node.get(key))
}

/// A tree that holds only `leaf` at `path`.
fn isolate(path: &[String], leaf: &Value) -> Value {
    path.iter().rev().fold(leaf.clone(), |inner, key| {
        let mut map = Map::new();
        map.insert(key.clone(), inner);
        Value::Object(map)
    })
}
