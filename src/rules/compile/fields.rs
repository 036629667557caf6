//! Layer 4 (compile): reading fields of rule-file mappings — serde-typed fields whose errors
//! name the field, and the rule for route and pipeline names. Imports only the YAML layer.

use serde::de::DeserializeOwned;

use crate::rules::yaml::{Node, Problem};

/// Deserializes `node` (the value of `field`) into `T`; on failure records a problem naming
/// the field and the path inside it.
pub(super) fn deserialize<T: DeserializeOwned>(
    node: &Node,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(node.to_json()) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            let message = if path == "." {
                format!("`{field}`: {inner}")
            } else {
                format!("`{field}.{path}`: {inner}")
            };
            problems.push(Problem::new(node.line, message));
            None
        }
    }
}

/// Route and pipeline names: they appear in subjects (dead letters) and metric labels.
pub(super) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
