//! Layer 4 (compile): the whole table from rule texts — `transforms/` files first (named
//! pipelines), then every route of every `routes.d/` file, with duplicate names caught
//! across files. Pure: file names and texts in, a [`RouteTable`] or every problem out.

use std::collections::HashMap;
use std::sync::Arc;

use super::input::{SourceFile, TableSettings};
use super::pipeline::Pipelines;
use super::problem::{RuleProblem, TableError};
use super::route;
use crate::rules::route::{CompiledRoute, RouteSource};
use crate::rules::table::RouteTable;
use crate::rules::yaml::{Node, NodeValue, Problem};

impl RouteTable {
    /// Compiles route and transform files given as text; no I/O.
    pub fn compile(
        route_files: &[SourceFile],
        transform_files: &[SourceFile],
        settings: &TableSettings,
    ) -> Result<RouteTable, TableError> {
        let mut problems = Vec::new();
        let pipelines = Pipelines::compile(transform_files, &mut problems);
        let mut routes: Vec<Arc<CompiledRoute>> = Vec::new();
        // route name -> `file:line` of its first definition
        let mut seen: HashMap<String, String> = HashMap::new();
        // (stream, durable) of a JetStream source -> `file:line` of the route that took it
        let mut durables: HashMap<(String, String), String> = HashMap::new();
        for file in route_files {
            let Some(root) = file.parse(&mut problems) else {
                continue;
            };
            let items = match route_items(&root) {
                Ok(items) => items,
                Err(p) => {
                    problems.push(RuleProblem::at(&file.name, None, p));
                    continue;
                }
            };
            for item in items {
                let name = item
                    .get("name")
                    .and_then(Node::as_str)
                    .unwrap_or("?")
                    .to_string();
                let context = Some(format!("route {name}"));
                let origin = format!("{}:{}", file.name, item.line);
                if let Some(first) = seen.get(&name) {
                    problems.push(RuleProblem::at(
                        &file.name,
                        context.clone(),
                        Problem::new(
                            item.line,
                            format!("duplicate route name (first defined at {first})"),
                        ),
                    ));
                } else if name != "?" {
                    seen.insert(name.clone(), origin.clone());
                }
                let mut local = Vec::new();
                let route = route::compile(item, &origin, &pipelines, settings, &mut local);
                problems.extend(
                    local
                        .into_iter()
                        .map(|p| RuleProblem::at(&file.name, context.clone(), p)),
                );
                if let Some(route) = route {
                    if let RouteSource::JetStream {
                        stream, durable, ..
                    } = &route.source
                    {
                        let key = (stream.clone(), durable.clone());
                        if let Some(first) = durables.get(&key) {
                            problems.push(RuleProblem::at(
                                &file.name,
                                context.clone(),
                                Problem::new(
                                    item.line,
                                    format!(
                                        "durable `{durable}` of stream `{stream}` is already the source of the route at {first}: two routes on one durable would split its messages"
                                    ),
                                ),
                            ));
                        } else {
                            durables.insert(key, origin.clone());
                        }
                    }
                    routes.push(Arc::new(route));
                }
            }
        }
        if !problems.is_empty() {
            return Err(TableError::Invalid(problems));
        }
        Ok(RouteTable::new(routes, pipelines.names()))
    }
}

/// The `routes:` list of a route file.
fn route_items(root: &Node) -> Result<&[Node], Problem> {
    if root.value == NodeValue::Null {
        return Ok(&[]);
    }
    let Some(entries) = root.as_map() else {
        return Err(Problem::new(
            root.line,
            "a route file is a mapping with a `routes:` list",
        ));
    };
    for e in entries {
        if e.key != "routes" {
            return Err(Problem::new(
                e.key_line,
                format!("unknown field `{}`, expected `routes`", e.key),
            ));
        }
    }
    match root.get("routes") {
        None => Ok(&[]),
        Some(node) => match &node.value {
            NodeValue::Seq(items) => Ok(items),
            NodeValue::Null => Ok(&[]),
            _ => Err(Problem::new(
                node.line,
                format!("`routes` is a list, found {}", node.kind()),
            )),
        },
    }
}
