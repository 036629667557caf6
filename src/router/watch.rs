//! Change detection for `routes.d/` and `transforms/`: a fingerprint of every YAML file's
//! name, size and modification time, polled by the `RouterActor`. Polling needs no
//! platform watcher, survives directories being replaced, and costs a few `stat` calls.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;

/// A hash over the YAML files of `dirs` (a missing directory counts as empty).
pub fn fingerprint(dirs: &[&Path]) -> u64 {
    let mut entries = Vec::new();
    for dir in dirs {
        let Ok(read) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in read.flatten() {
            let path = entry.path();
            let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
            if !yaml {
                continue;
            }
            let meta = entry.metadata().ok();
            let len = meta.as_ref().map(|m| m.len()).unwrap_or_default();
            let modified = meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            entries.push((path, len, modified));
        }
    }
    entries.sort();
    let mut hasher = DefaultHasher::new();
    entries.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_when_a_yaml_file_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let before = fingerprint(&[dir.path()]);
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        assert_eq!(fingerprint(&[dir.path()]), before);
        std::fs::write(dir.path().join("a.yaml"), "routes: []").unwrap();
        let with_file = fingerprint(&[dir.path()]);
        assert_ne!(with_file, before);
        std::fs::write(dir.path().join("a.yaml"), "routes: [] # longer").unwrap();
        assert_ne!(fingerprint(&[dir.path()]), with_file);
        assert_eq!(
            fingerprint(&[Path::new("/nonexistent/dir")]),
            fingerprint(&[])
        );
    }
}
