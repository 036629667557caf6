//! Layer 4 (compile): named pipelines from `transforms/*.yaml` (`name`, `steps`), and a
//! route's `transform:` list of pipeline names and inline steps. A named pipeline is kept
//! as YAML and built once per route that uses it, against that route's captures; on its own
//! it is built once with any capture allowed, so its problems point into its own file.

use std::collections::BTreeMap;

use super::fields::is_name;
use super::input::SourceFile;
use super::problem::RuleProblem;
use crate::rules::steps::{BuildContext, Pipeline};
use crate::rules::template::CaptureScope;
use crate::rules::yaml::{Node, NodeValue, Problem};

/// A named pipeline from `transforms/`.
#[derive(Debug, Clone)]
struct NamedPipeline {
    file: String,
    steps: Vec<Node>,
    /// False when the pipeline has problems of its own (already reported with its file).
    valid: bool,
}

/// Every named pipeline of `transforms/`, by name.
#[derive(Debug, Default)]
pub(super) struct Pipelines {
    by_name: BTreeMap<String, NamedPipeline>,
}

/// What a route's `transform:` list compiled to.
pub(super) struct RouteTransforms {
    /// Pipeline names in order; inline steps show as `inline`.
    pub names: Vec<String>,
    pub pipeline: Pipeline,
}

impl Pipelines {
    /// Reads every transform file, recording each problem with its file.
    pub(super) fn compile(files: &[SourceFile], problems: &mut Vec<RuleProblem>) -> Pipelines {
        let mut pipelines = Pipelines::default();
        for file in files {
            if let Some(root) = file.parse(problems) {
                pipelines.add(file, &root, problems);
            }
        }
        pipelines
    }

    /// Names of the pipelines, sorted.
    pub(super) fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    fn add(&mut self, file: &SourceFile, root: &Node, problems: &mut Vec<RuleProblem>) {
        let name = root.get("name").and_then(Node::as_str).map(String::from);
        let context = Some(format!("transform {}", name.as_deref().unwrap_or("?")));
        let mut local = Vec::new();
        let steps = read_fields(root, name.is_some(), &mut local);
        let refs: Vec<&Node> = steps.iter().collect();
        let unchecked = BuildContext {
            scope: CaptureScope::Unchecked,
        };
        Pipeline::build(&refs, &unchecked, &mut local);
        let valid = local.is_empty();
        if let Some(name) = name {
            if let Some(first) = self.by_name.get(&name) {
                local.push(Problem::new(
                    root.line,
                    format!("duplicate transform name (first defined in {})", first.file),
                ));
            } else {
                self.by_name.insert(
                    name,
                    NamedPipeline {
                        file: file.name.clone(),
                        steps,
                        valid,
                    },
                );
            }
        }
        problems.extend(
            local
                .into_iter()
                .map(|p| RuleProblem::at(&file.name, context.clone(), p)),
        );
    }

    /// Compiles a route's `transform:` node (one entry or a list of pipeline names and
    /// inline steps) against the route's captures. A named pipeline's own problems were
    /// reported with its file already; here only what this route adds is reported.
    pub(super) fn for_route(
        &self,
        node: Option<&Node>,
        scope: CaptureScope<'_>,
        problems: &mut Vec<Problem>,
    ) -> RouteTransforms {
        let mut names = Vec::new();
        let mut pipeline = Pipeline::default();
        let build = BuildContext { scope };
        let Some(node) = node else {
            return RouteTransforms { names, pipeline };
        };
        let list: Vec<&Node> = match &node.value {
            NodeValue::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        for entry in list {
            match &entry.value {
                NodeValue::String(pname) => match self.by_name.get(pname) {
                    Some(named) => {
                        names.push(pname.clone());
                        if named.valid {
                            pipeline.append(named.build_for(pname, entry.line, &build, problems));
                        }
                    }
                    None => problems.push(Problem::new(
                        entry.line,
                        format!("unknown transform `{pname}` (known: {})", self.known()),
                    )),
                },
                NodeValue::Map(_) => {
                    names.push("inline".into());
                    pipeline.append(Pipeline::build(&[entry], &build, problems));
                }
                _ => problems.push(Problem::new(
                    entry.line,
                    format!(
                        "a transform is a pipeline name or an inline step, found {}",
                        entry.kind()
                    ),
                )),
            }
        }
        RouteTransforms { names, pipeline }
    }

    fn known(&self) -> String {
        if self.by_name.is_empty() {
            "none".to_string()
        } else {
            self.names().join(", ")
        }
    }
}

impl NamedPipeline {
    /// Builds the pipeline for one route; its problems are reported at the route's
    /// `transform:` entry (`line`), pointing into the pipeline's file.
    fn build_for(
        &self,
        name: &str,
        line: usize,
        build: &BuildContext<'_>,
        problems: &mut Vec<Problem>,
    ) -> Pipeline {
        let mut local = Vec::new();
        let steps: Vec<&Node> = self.steps.iter().collect();
        let pipeline = Pipeline::build(&steps, build, &mut local);
        problems.extend(local.into_iter().map(|p| {
            Problem::new(
                line,
                format!("transform {name} ({}:{}): {}", self.file, p.line, p.message),
            )
        }));
        pipeline
    }
}

/// Checks the fields of a transform file and returns its steps (empty when they are
/// missing or malformed, with a problem recorded).
fn read_fields(root: &Node, has_name: bool, problems: &mut Vec<Problem>) -> Vec<Node> {
    let mut steps = Vec::new();
    let Some(entries) = root.as_map() else {
        problems.push(Problem::new(
            root.line,
            "a transform file is a mapping with `name` and `steps`",
        ));
        return steps;
    };
    for e in entries {
        match e.key.as_str() {
            "name" => match e.value.as_str() {
                Some(n) if is_name(n) => {}
                _ => problems.push(Problem::new(
                    e.key_line,
                    "`name` is letters, digits, '-' and '_'",
                )),
            },
            "description" => {}
            "steps" => match e.value.as_seq() {
                Some(items) if !items.is_empty() => steps = items.to_vec(),
                _ => problems.push(Problem::new(e.key_line, "`steps` is a non-empty list")),
            },
            other => problems.push(Problem::new(
                e.key_line,
                format!("unknown field `{other}`, expected name, description, steps"),
            )),
        }
    }
    if !has_name {
        problems.push(Problem::new(root.line, "missing field `name`"));
    }
    if root.get("steps").is_none() {
        problems.push(Problem::new(root.line, "missing field `steps`"));
    }
    steps
}
