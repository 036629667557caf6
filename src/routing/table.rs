//! The route table: compiles every `routes.d/*.yaml` and `transforms/*.yaml` into one
//! immutable [`RouteTable`], collecting **every** problem as `file:line: route NAME: problem`
//! (unknown fields, unknown transforms, bad JSONPath / regex / templates, duplicate names,
//! outputs that could loop into their own `from`, JetStream outputs no stream captures).
//!
//! [`RouteTable::compile`] is pure (file names and texts in); [`RouteTable::load`] reads the
//! two directories and calls it. The table is shared read-only by the router's per-route
//! tasks ([`RouteTable::routes`]) and answers dry runs ([`RouteTable::evaluate`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::condition::Condition;
use super::headers::Headers;
use super::path::CompiledPath;
use super::pattern::{split_tokens, SubjectPattern};
use super::route::{CompiledOutput, CompiledRoute, OnError, RouteOutcome, RouteSource};
use super::template::{CaptureScope, Template};
use super::yaml::{self, Node, NodeValue, Problem};
use crate::config::{BrokerConfig, ConsumerDefaults, Span, StreamSpec};
use crate::subject;
use crate::transforms::{BuildContext, Pipeline};

/// Why a table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<RuleProblem>),
}

impl TableError {
    /// Every problem, one per line of the `Display` form.
    pub fn problems(&self) -> Vec<RuleProblem> {
        match self {
            TableError::Read { path, source } => vec![RuleProblem {
                file: path.clone(),
                line: 0,
                context: None,
                message: format!("cannot read: {source}"),
            }],
            TableError::Invalid(problems) => problems.clone(),
        }
    }
}

/// One problem in a rule file: `file:line: route NAME: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleProblem {
    pub file: String,
    pub line: usize,
    /// `route NAME` or `transform NAME`, when the problem belongs to one.
    pub context: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(c) = &self.context {
            write!(f, "{c}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// What the table needs from `broker.yaml`.
#[derive(Debug, Clone)]
pub struct TableSettings {
    /// Streams as ensured on the server, for JetStream lint (`jetstream: true` outputs and
    /// `source.jetstream.stream`).
    pub streams: Vec<StreamSpec>,
    pub dead_letter_prefix: String,
    pub queue_group: String,
    pub consumer: ConsumerDefaults,
}

impl TableSettings {
    pub fn from_config(config: &BrokerConfig) -> Self {
        TableSettings {
            streams: config.effective_streams(),
            dead_letter_prefix: config.router.dead_letter_prefix.clone(),
            queue_group: config.router.queue_group.clone(),
            consumer: config.router.consumer.clone(),
        }
    }
}

impl Default for TableSettings {
    fn default() -> Self {
        TableSettings::from_config(&BrokerConfig::default())
    }
}

/// A rule file's name (as it should appear in problems) and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// A named pipeline from `transforms/`, kept as YAML so each route builds it against its
/// own captures.
#[derive(Debug, Clone)]
struct NamedPipeline {
    file: String,
    steps: Vec<Node>,
    valid: bool,
}

/// The compiled, immutable route table.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<CompiledRoute>>,
    transforms: Vec<String>,
}

/// One route's result in a dry run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteResult {
    pub route: String,
    #[serde(flatten)]
    pub outcome: RouteOutcome,
}

const ROUTE_FIELDS: &[&str] = &[
    "name",
    "description",
    "from",
    "source",
    "when",
    "transform",
    "to",
    "partition_by",
    "age_from",
    "on_error",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
enum RawSource {
    #[serde(rename = "core")]
    Core {
        #[serde(default)]
        queue_group: Option<String>,
    },
    #[serde(rename = "jetstream")]
    JetStream {
        stream: String,
        durable: String,
        #[serde(default)]
        ack_wait: Option<Span>,
        #[serde(default)]
        max_ack_pending: Option<i64>,
        #[serde(default)]
        max_deliver: Option<i64>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    subject: String,
    #[serde(default)]
    jetstream: bool,
    #[serde(default)]
    msg_id: Option<String>,
    #[serde(default = "yes")]
    carry_headers: bool,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

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

    /// Compiles route and transform files given as text; no I/O.
    pub fn compile(
        route_files: &[SourceFile],
        transform_files: &[SourceFile],
        settings: &TableSettings,
    ) -> Result<RouteTable, TableError> {
        let mut problems = Vec::new();
        let pipelines = compile_pipelines(transform_files, &mut problems);
        let mut routes: Vec<Arc<CompiledRoute>> = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        for file in route_files {
            let Some(root) = parse_file(file, &mut problems) else {
                continue;
            };
            let items = match route_items(&root) {
                Ok(items) => items,
                Err(p) => {
                    problems.push(at(&file.name, None, p));
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
                    problems.push(at(
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
                let route = compile_route(item, &origin, &pipelines, settings, &mut local);
                problems.extend(
                    local
                        .into_iter()
                        .map(|p| at(&file.name, context.clone(), p)),
                );
                if let Some(route) = route {
                    routes.push(Arc::new(route));
                }
            }
        }
        if !problems.is_empty() {
            return Err(TableError::Invalid(problems));
        }
        Ok(RouteTable {
            routes,
            transforms: pipelines.keys().cloned().collect(),
        })
    }

    /// Every route, in file order (files sorted by name).
    pub fn routes(&self) -> &[Arc<CompiledRoute>] {
        &self.routes
    }

    pub fn route(&self, name: &str) -> Option<&Arc<CompiledRoute>> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Names of the named pipelines loaded from `transforms/`.
    pub fn transform_names(&self) -> &[String] {
        &self.transforms
    }

    /// The subscriptions the router opens: (filter, source), one per route, in route order;
    /// each route runs on its own subscription so it can run in its own task.
    pub fn subscriptions(&self) -> Vec<(&str, &RouteSource)> {
        self.routes
            .iter()
            .map(|r| (r.subscription(), &r.source))
            .collect()
    }

    /// Dry run: every route whose `from` matches `subject`, with what it would do.
    pub fn evaluate(
        &self,
        subject: &str,
        headers: &Headers,
        payload: &Bytes,
        now_ms: i64,
    ) -> Vec<RouteResult> {
        self.routes
            .iter()
            .filter_map(|r| match r.process(subject, headers, payload, now_ms) {
                RouteOutcome::NoMatch => None,
                outcome => Some(RouteResult {
                    route: r.name.clone(),
                    outcome,
                }),
            })
            .collect()
    }
}

fn at(file: &str, context: Option<String>, p: Problem) -> RuleProblem {
    RuleProblem {
        file: file.to_string(),
        line: p.line,
        context,
        message: p.message,
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

/// Parses a rule file; a YAML error becomes a problem at its line.
fn parse_file(file: &SourceFile, problems: &mut Vec<RuleProblem>) -> Option<Node> {
    match yaml::parse(&file.text) {
        Ok(root) => Some(root),
        Err(e) => {
            problems.push(RuleProblem {
                file: file.name.clone(),
                line: e.line(),
                context: None,
                message: e.to_string(),
            });
            None
        }
    }
}

fn compile_pipelines(
    files: &[SourceFile],
    problems: &mut Vec<RuleProblem>,
) -> BTreeMap<String, NamedPipeline> {
    let mut pipelines: BTreeMap<String, NamedPipeline> = BTreeMap::new();
    for file in files {
        let Some(root) = parse_file(file, problems) else {
            continue;
        };
        let name = root.get("name").and_then(Node::as_str).map(String::from);
        let context = Some(format!("transform {}", name.as_deref().unwrap_or("?")));
        let mut local = Vec::new();
        let mut steps: Vec<Node> = Vec::new();
        match root.as_map() {
            None => local.push(Problem::new(
                root.line,
                "a transform file is a mapping with `name` and `steps`",
            )),
            Some(entries) => {
                for e in entries {
                    match e.key.as_str() {
                        "name" => match e.value.as_str() {
                            Some(n) if is_name(n) => {}
                            _ => local.push(Problem::new(
                                e.key_line,
                                "`name` is letters, digits, '-' and '_'",
                            )),
                        },
                        "description" => {}
                        "steps" => match e.value.as_seq() {
                            Some(items) if !items.is_empty() => steps = items.to_vec(),
                            _ => {
                                local.push(Problem::new(e.key_line, "`steps` is a non-empty list"))
                            }
                        },
                        other => local.push(Problem::new(
                            e.key_line,
                            format!("unknown field `{other}`, expected name, description, steps"),
                        )),
                    }
                }
                if name.is_none() {
                    local.push(Problem::new(root.line, "missing field `name`"));
                }
                if root.get("steps").is_none() {
                    local.push(Problem::new(root.line, "missing field `steps`"));
                }
            }
        }
        let refs: Vec<&Node> = steps.iter().collect();
        let unchecked = BuildContext {
            scope: CaptureScope::Unchecked,
        };
        Pipeline::build(&refs, &unchecked, &mut local);
        let valid = local.is_empty();
        if let Some(name) = name {
            if let Some(first) = pipelines.get(&name) {
                local.push(Problem::new(
                    root.line,
                    format!("duplicate transform name (first defined in {})", first.file),
                ));
            } else {
                pipelines.insert(
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
                .map(|p| at(&file.name, context.clone(), p)),
        );
    }
    pipelines
}

/// Route and pipeline names: they appear in subjects (dead letters) and metric labels.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn serde_field<T: serde::de::DeserializeOwned>(
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

fn compile_route(
    item: &Node,
    origin: &str,
    pipelines: &BTreeMap<String, NamedPipeline>,
    settings: &TableSettings,
    problems: &mut Vec<Problem>,
) -> Option<CompiledRoute> {
    let Some(entries) = item.as_map() else {
        problems.push(Problem::new(
            item.line,
            format!("a route is a mapping, found {}", item.kind()),
        ));
        return None;
    };
    for e in entries {
        if !ROUTE_FIELDS.contains(&e.key.as_str()) {
            problems.push(Problem::new(
                e.key_line,
                format!(
                    "unknown field `{}`, expected one of {}",
                    e.key,
                    ROUTE_FIELDS.join(", ")
                ),
            ));
        }
    }
    let line_of = |key: &str| {
        entries
            .iter()
            .find(|e| e.key == key)
            .map_or(item.line, |e| e.key_line)
    };
    let text_field = |key: &str, problems: &mut Vec<Problem>| -> Option<String> {
        let node = item.get(key)?;
        match node.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                problems.push(Problem::new(
                    node.line,
                    format!("`{key}` is a string, found {}", node.kind()),
                ));
                None
            }
        }
    };
    let before = problems.len();

    let name = text_field("name", problems);
    match &name {
        None if item.get("name").is_none() => problems.push(Problem::new(item.line, "missing field `name`")),
        Some(n) if !is_name(n) => problems.push(Problem::new(
            line_of("name"),
            "`name` is 1-64 letters, digits, '-' and '_' (it becomes a subject token and a metric label)",
        )),
        _ => {}
    }

    let pattern = match text_field("from", problems) {
        Some(text) => match SubjectPattern::parse(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.push(Problem::new(line_of("from"), format!("`from`: {e}")));
                None
            }
        },
        None => {
            if item.get("from").is_none() {
                problems.push(Problem::new(item.line, "missing field `from`"));
            }
            None
        }
    };
    let empty = Vec::new();
    let captures: &[String] = pattern.as_ref().map_or(&empty, |p| p.capture_names());
    // with a broken `from`, capture names are unknown: do not pile follow-up errors on it
    let scope = match &pattern {
        Some(_) => CaptureScope::Names(captures),
        None => CaptureScope::Unchecked,
    };

    let source = match item.get("source") {
        None => Some(RouteSource::Core {
            queue_group: settings.queue_group.clone(),
        }),
        Some(node) => serde_field::<RawSource>(node, "source", problems)
            .and_then(|raw| compile_source(raw, node.line, pattern.as_ref(), settings, problems)),
    };

    let when = item
        .get("when")
        .map(|node| Condition::compile(node, captures, problems));

    // transforms: named pipelines and inline steps, in order, built against this route's
    // captures; a named pipeline's own problems were reported with its file already
    let mut transform_names = Vec::new();
    let mut pipeline = Pipeline::default();
    let build = BuildContext { scope };
    if let Some(node) = item.get("transform") {
        let list: Vec<&Node> = match &node.value {
            NodeValue::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        for entry in list {
            match &entry.value {
                NodeValue::String(pname) => match pipelines.get(pname) {
                    Some(np) => {
                        transform_names.push(pname.clone());
                        if np.valid {
                            let mut local = Vec::new();
                            let steps: Vec<&Node> = np.steps.iter().collect();
                            pipeline.append(Pipeline::build(&steps, &build, &mut local));
                            problems.extend(local.into_iter().map(|p| {
                                Problem::new(
                                    entry.line,
                                    format!(
                                        "transform {pname} ({}:{}): {}",
                                        np.file, p.line, p.message
                                    ),
                                )
                            }));
                        }
                    }
                    None => problems.push(Problem::new(
                        entry.line,
                        format!(
                            "unknown transform `{pname}` (known: {})",
                            if pipelines.is_empty() {
                                "none".to_string()
                            } else {
                                pipelines.keys().cloned().collect::<Vec<_>>().join(", ")
                            }
                        ),
                    )),
                },
                NodeValue::Map(_) => {
                    transform_names.push("inline".into());
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
    }

    let outputs = match item.get("to") {
        None => {
            problems.push(Problem::new(item.line, "missing field `to`"));
            Vec::new()
        }
        Some(node) => {
            let list: Vec<&Node> = match &node.value {
                NodeValue::Seq(items) => items.iter().collect(),
                _ => vec![node],
            };
            if list.is_empty() {
                problems.push(Problem::new(node.line, "`to` needs at least one output"));
            }
            let mut outputs = Vec::new();
            for n in list {
                if let Some((line, o)) = compile_output(n, scope, problems) {
                    if let Some(p) = &pattern {
                        lint_output(&o, line, p, when.as_ref(), settings, problems);
                    }
                    outputs.push(o);
                }
            }
            outputs
        }
    };

    let partition_by = text_field("partition_by", problems).and_then(|text| {
        match Template::compile(&text, scope) {
            Ok(t) if t.uses_payload() => {
                problems.push(Problem::new(
                    line_of("partition_by"),
                    "`partition_by` may use captures only (the key is chosen before the payload is parsed)",
                ));
                None
            }
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(Problem::new(line_of("partition_by"), format!("`partition_by`: {e}")));
                None
            }
        }
    });
    let age_from =
        text_field("age_from", problems).and_then(|text| match CompiledPath::compile(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.push(Problem::new(
                    line_of("age_from"),
                    format!("`age_from`: {e}"),
                ));
                None
            }
        });
    let on_error = match item.get("on_error") {
        None => Some(OnError::DeadLetter),
        Some(node) => serde_field::<OnError>(node, "on_error", problems),
    };

    if problems.len() > before {
        return None;
    }
    let (Some(name), Some(pattern), Some(source), Some(on_error)) =
        (name, pattern, source, on_error)
    else {
        return None;
    };
    let needs_json = when.as_ref().is_some_and(Condition::uses_payload)
        || !pipeline.is_empty()
        || age_from.is_some()
        || outputs.iter().any(|o| {
            o.subject.uses_payload()
                || o.msg_id.as_ref().is_some_and(Template::uses_payload)
                || o.headers.iter().any(|(_, t)| t.uses_payload())
        });
    let dead_letter_subject = format!("{}.{}", settings.dead_letter_prefix, name);
    let dead_letter_jetstream = settings.streams.iter().any(|s| {
        s.subjects
            .iter()
            .any(|f| subject::matches(f, &dead_letter_subject))
    });
    Some(CompiledRoute {
        name,
        origin: origin.to_string(),
        pattern,
        source,
        when,
        transform_names,
        pipeline,
        outputs,
        partition_by,
        age_from,
        on_error,
        dead_letter_subject,
        dead_letter_jetstream,
        needs_json,
    })
}

fn compile_source(
    raw: RawSource,
    line: usize,
    pattern: Option<&SubjectPattern>,
    settings: &TableSettings,
    problems: &mut Vec<Problem>,
) -> Option<RouteSource> {
    match raw {
        RawSource::Core { queue_group } => Some(RouteSource::Core {
            queue_group: queue_group.unwrap_or_else(|| settings.queue_group.clone()),
        }),
        RawSource::JetStream {
            stream,
            durable,
            ack_wait,
            max_ack_pending,
            max_deliver,
        } => {
            let mut ok = true;
            if durable.is_empty()
                || durable.contains(['.', '*', '>'])
                || durable.contains(char::is_whitespace)
            {
                problems.push(Problem::new(
                    line,
                    format!(
                        "durable name {durable:?} may not be empty or hold '.', '*', '>' or spaces"
                    ),
                ));
                ok = false;
            }
            match settings.streams.iter().find(|s| s.name == stream) {
                None => {
                    problems.push(Problem::new(
                        line,
                        format!(
                            "source stream `{stream}` is not configured (streams: {})",
                            settings
                                .streams
                                .iter()
                                .map(|s| s.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                    ok = false;
                }
                Some(spec) => {
                    if let Some(p) = pattern {
                        if !spec
                            .subjects
                            .iter()
                            .any(|f| subject::overlap(f, p.filter()))
                        {
                            problems.push(Problem::new(
                                line,
                                format!(
                                    "stream `{stream}` does not capture any subject of `from` {:?}",
                                    p.as_str()
                                ),
                            ));
                            ok = false;
                        }
                    }
                }
            }
            ok.then(|| RouteSource::JetStream {
                stream,
                durable,
                ack_wait: ack_wait.map_or(settings.consumer.ack_wait.duration(), Span::duration),
                max_ack_pending: max_ack_pending.unwrap_or(settings.consumer.max_ack_pending),
                max_deliver: max_deliver.unwrap_or(settings.consumer.max_deliver),
            })
        }
    }
}

fn compile_output(
    node: &Node,
    scope: CaptureScope<'_>,
    problems: &mut Vec<Problem>,
) -> Option<(usize, CompiledOutput)> {
    let raw: RawOutput = serde_field(node, "to", problems)?;
    let line = node.get("subject").map_or(node.line, |n| n.line);
    let before = problems.len();
    let template =
        |field: &str, text: &str, problems: &mut Vec<Problem>| match Template::compile(text, scope)
        {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(Problem::new(line, format!("`{field}`: {e}")));
                None
            }
        };
    let subject = template("subject", &raw.subject, problems);
    let msg_id = raw
        .msg_id
        .as_deref()
        .and_then(|t| template("msg_id", t, problems));
    let mut headers = Vec::new();
    for (name, text) in &raw.headers {
        if name.is_empty()
            || name.contains(|c: char| c.is_whitespace() || c == ':' || c.is_control())
        {
            problems.push(Problem::new(line, format!("invalid header name {name:?}")));
        }
        if let Some(t) = template("headers", text, problems) {
            headers.push((name.clone(), t));
        }
    }
    let subject = subject?;
    // the literal parts must already form a valid subject
    let probe: String = split_tokens(subject.as_str())
        .iter()
        .map(|t| if t.contains('{') { "x" } else { t })
        .collect::<Vec<_>>()
        .join(".");
    if let Err(reason) = subject::validate_subject(&probe) {
        problems.push(Problem::new(
            line,
            format!(
                "`subject` {:?} can never be valid: {reason}",
                subject.as_str()
            ),
        ));
    }
    (problems.len() == before).then_some((
        line,
        CompiledOutput {
            subject,
            jetstream: raw.jetstream,
            msg_id,
            carry_headers: raw.carry_headers,
            headers,
        },
    ))
}

/// The most subjects of one output lint enumerates before falling back to `*`.
const MAX_EXPANSIONS: usize = 256;

/// The filters an output subject template can produce: literal tokens stay, a `{capture}`
/// limited by a top-level `eq` / `in` condition becomes each allowed value, any other
/// placeholder token `*`, and a multi-token placeholder (`{rest...}` capture, `{@subject}`)
/// ends the filter with `>`.
pub fn output_filters(
    template: &str,
    pattern: &SubjectPattern,
    when: Option<&Condition>,
) -> Vec<String> {
    let mut filters: Vec<Vec<String>> = vec![Vec::new()];
    for token in split_tokens(template) {
        let alternatives: Vec<String> = if !token.contains('{') {
            vec![token.to_string()]
        } else if let Some(name) = token
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .filter(|n| !n.contains(['{', '}']))
        {
            if pattern.tail_capture() == Some(name) || name == "@subject" {
                vec![">".into()]
            } else {
                match (pattern.capture_names().iter().position(|c| c == name), when) {
                    (Some(i), Some(w)) => w.capture_values(i).unwrap_or_else(|| vec!["*".into()]),
                    _ => vec!["*".into()],
                }
            }
        } else if pattern
            .tail_capture()
            .is_some_and(|t| token.contains(&format!("{{{t}}}")))
            || token.contains("{@subject}")
        {
            vec![">".into()]
        } else {
            vec!["*".into()]
        };
        let ends = alternatives.iter().any(|a| a == ">");
        if filters.len() * alternatives.len() > MAX_EXPANSIONS {
            for f in &mut filters {
                f.push(if ends { ">".into() } else { "*".into() });
            }
        } else {
            filters = filters
                .into_iter()
                .flat_map(|f| {
                    alternatives.iter().map(move |a| {
                        let mut f = f.clone();
                        f.push(a.clone());
                        f
                    })
                })
                .collect();
        }
        if ends {
            break;
        }
    }
    filters.into_iter().map(|f| f.join(".")).collect()
}

fn lint_output(
    output: &CompiledOutput,
    line: usize,
    pattern: &SubjectPattern,
    when: Option<&Condition>,
    settings: &TableSettings,
    problems: &mut Vec<Problem>,
) {
    let filters = output_filters(output.subject.as_str(), pattern, when);
    if let Some(f) = filters
        .iter()
        .find(|f| subject::overlap(f, pattern.filter()))
    {
        problems.push(Problem::new(
            line,
            format!(
                "output {:?} could match its own `from` {:?} (a loop; e.g. {f})",
                output.subject.as_str(),
                pattern.as_str()
            ),
        ));
    }
    if output.jetstream {
        let uncaptured: Vec<&String> = filters
            .iter()
            .filter(|f| {
                !settings
                    .streams
                    .iter()
                    .any(|s| s.subjects.iter().any(|sf| subject::contains(sf, f)))
            })
            .collect();
        if !uncaptured.is_empty() {
            problems.push(Problem::new(
                line,
                format!(
                    "output {:?} has `jetstream: true` but no stream captures {}",
                    output.subject.as_str(),
                    uncaptured
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
}

/// The bytes to send for a payload given in a test file or an API request: a JSON string is
/// sent as its text (so non-JSON input can be tested), any other value as JSON.
pub fn payload_bytes(value: &Value) -> Bytes {
    match value {
        Value::String(s) => Bytes::from(s.clone().into_bytes()),
        other => Bytes::from(other.to_string().into_bytes()),
    }
}
