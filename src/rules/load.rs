//! Layer 5 (load): the only file of the rule language that does I/O — it reads the
//! `*.yaml` / `*.yml` files of `routes.d/` and `transforms/` (sorted by name, `*.test.yaml`
//! left out) and hands their texts to [`RouteTable::compile`].

use std::path::{Path, PathBuf};

use super::compile::{SourceFile, TableError, TableSettings};
use super::table::RouteTable;
use crate::config::BrokerConfig;

impl RouteTable {
    /// Reads `*.yaml` / `*.yml` of both directories and compiles them. A missing directory
    /// holds no files.
    pub fn load(
        routes_dir: &Path,
        transforms_dir: &Path,
        settings: &TableSettings,
    ) -> Result<RouteTable, TableError> {
        let routes = read_dir(routes_dir)?;
        let transforms = read_dir(transforms_dir)?;
        RouteTable::compile(&routes, &transforms, settings)
    }

    /// Loads the directories named in `config.router`.
    pub fn load_for(config: &BrokerConfig) -> Result<RouteTable, TableError> {
        RouteTable::load(
            &config.router.routes_dir,
            &config.router.transforms_dir,
            &TableSettings::from_config(config),
        )
    }
}

fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, TableError> {
    let read_err = |path: &Path, source| TableError::Read {
        path: path.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(dir, e)),
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| read_err(dir, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let is_rule =
            (name.ends_with(".yaml") || name.ends_with(".yml")) && !name.ends_with(".test.yaml");
        if is_rule && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
            Ok(SourceFile {
                name: path.display().to_string(),
                text,
            })
        })
        .collect()
}
