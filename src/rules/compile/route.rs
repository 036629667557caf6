//! Layer 4 (compile): one `routes:` entry to a [`CompiledRoute`], field by field in file
//! order — `name`, `from`, `source`, `when`, `transform`, `to` (with lint), `partition_by`,
//! `age_from`, `on_error` — recording every problem; a route with any problem is not built.

use super::fields::{deserialize, is_name};
use super::input::TableSettings;
use super::lint;
use super::output;
use super::pipeline::Pipelines;
use super::source;
use crate::rules::condition::Condition;
use crate::rules::path::CompiledPath;
use crate::rules::pattern::SubjectPattern;
use crate::rules::route::{CompiledOutput, CompiledRoute, OnError};
use crate::rules::template::{CaptureScope, Template};
use crate::rules::yaml::{Entry, Node, NodeValue, Problem};
use crate::subject;

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

/// A route's mapping, its fields checked against [`ROUTE_FIELDS`].
struct RouteNode<'a> {
    node: &'a Node,
    entries: &'a [Entry],
}

impl<'a> RouteNode<'a> {
    fn new(node: &'a Node, problems: &mut Vec<Problem>) -> Option<RouteNode<'a>> {
        let Some(entries) = node.as_map() else {
            problems.push(Problem::new(
                node.line,
                format!("a route is a mapping, found {}", node.kind()),
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
        Some(RouteNode { node, entries })
    }

    fn get(&self, key: &str) -> Option<&'a Node> {
        self.node.get(key)
    }

    /// The line of `key`, or of the route when it is absent.
    fn line_of(&self, key: &str) -> usize {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map_or(self.node.line, |e| e.key_line)
    }

    /// A string field; another type is a problem.
    fn text(&self, key: &str, problems: &mut Vec<Problem>) -> Option<String> {
        let node = self.get(key)?;
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
    }

    /// A required string field.
    fn required_text(&self, key: &str, problems: &mut Vec<Problem>) -> Option<String> {
        if self.get(key).is_none() {
            problems.push(Problem::new(
                self.node.line,
                format!("missing field `{key}`"),
            ));
            return None;
        }
        self.text(key, problems)
    }
}

/// Compiles one route; `origin` is its `file:line`. `None` when any problem was recorded.
pub(super) fn compile(
    item: &Node,
    origin: &str,
    pipelines: &Pipelines,
    settings: &TableSettings,
    problems: &mut Vec<Problem>,
) -> Option<CompiledRoute> {
    let route = RouteNode::new(item, problems)?;
    let before = problems.len();

    let name = name(&route, problems);
    let pattern = pattern(&route, problems);
    let captures: &[String] = pattern.as_ref().map_or(&[], |p| p.capture_names());
    // with a broken `from`, capture names are unknown: do not pile follow-up errors on it
    let scope = match &pattern {
        Some(_) => CaptureScope::Names(captures),
        None => CaptureScope::Unchecked,
    };
    let source = source::compile(route.get("source"), pattern.as_ref(), settings, problems);
    let when = route
        .get("when")
        .map(|node| Condition::compile(node, captures, problems));
    let transforms = pipelines.for_route(route.get("transform"), scope, problems);
    let outputs = outputs(
        &route,
        scope,
        pattern.as_ref(),
        when.as_ref(),
        settings,
        problems,
    );
    let partition_by = partition_by(&route, scope, problems);
    let age_from = age_from(&route, problems);
    let on_error = match route.get("on_error") {
        None => Some(OnError::DeadLetter),
        Some(node) => deserialize::<OnError>(node, "on_error", problems),
    };

    if problems.len() > before {
        return None;
    }
    let (Some(name), Some(pattern), Some(source), Some(on_error)) =
        (name, pattern, source, on_error)
    else {
        return None;
    };
    let dead_letter_subject = format!("{}.{}", settings.dead_letter_prefix, name);
    let dead_letter_jetstream = settings.streams.iter().any(|s| {
        s.subjects
            .iter()
            .any(|f| subject::matches(f, &dead_letter_subject))
    });
    let mut compiled = CompiledRoute {
        name,
        origin: origin.to_string(),
        pattern,
        source,
        when,
        transform_names: transforms.names,
        pipeline: transforms.pipeline,
        outputs,
        partition_by,
        age_from,
        on_error,
        dead_letter_subject,
        dead_letter_jetstream,
        needs_json: false,
    };
    compiled.needs_json = compiled.reads_payload();
    Some(compiled)
}

/// `name`: required; it becomes a subject token and a metric label.
fn name(route: &RouteNode<'_>, problems: &mut Vec<Problem>) -> Option<String> {
    let name = route.required_text("name", problems)?;
    if !is_name(&name) {
        problems.push(Problem::new(
            route.line_of("name"),
            "`name` is 1-64 letters, digits, '-' and '_' (it becomes a subject token and a metric label)",
        ));
    }
    Some(name)
}

/// `from`: required subject pattern with captures.
fn pattern(route: &RouteNode<'_>, problems: &mut Vec<Problem>) -> Option<SubjectPattern> {
    let text = route.required_text("from", problems)?;
    match SubjectPattern::parse(&text) {
        Ok(p) => Some(p),
        Err(e) => {
            problems.push(Problem::new(route.line_of("from"), format!("`from`: {e}")));
            None
        }
    }
}

/// `to`: one output or a list, each compiled and, when `from` compiled, linted.
fn outputs(
    route: &RouteNode<'_>,
    scope: CaptureScope<'_>,
    pattern: Option<&SubjectPattern>,
    when: Option<&Condition>,
    settings: &TableSettings,
    problems: &mut Vec<Problem>,
) -> Vec<CompiledOutput> {
    let Some(node) = route.get("to") else {
        problems.push(Problem::new(route.node.line, "missing field `to`"));
        return Vec::new();
    };
    let list: Vec<&Node> = match &node.value {
        NodeValue::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    if list.is_empty() {
        problems.push(Problem::new(node.line, "`to` needs at least one output"));
    }
    let mut outputs = Vec::new();
    for n in list {
        if let Some((line, o)) = output::compile(n, scope, problems) {
            if let Some(p) = pattern {
                lint::output(&o, line, p, when, &settings.streams, problems);
            }
            outputs.push(o);
        }
    }
    outputs
}

/// `partition_by`: a template of captures only (the key is chosen before parsing).
fn partition_by(
    route: &RouteNode<'_>,
    scope: CaptureScope<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Template> {
    let text = route.text("partition_by", problems)?;
    let line = route.line_of("partition_by");
    match Template::compile(&text, scope) {
        Ok(t) if t.uses_payload() => {
            problems.push(Problem::new(
                line,
                "`partition_by` may use captures only (the key is chosen before the payload is parsed)",
            ));
            None
        }
        Ok(t) => Some(t),
        Err(e) => {
            problems.push(Problem::new(line, format!("`partition_by`: {e}")));
            None
        }
    }
}

/// `age_from`: the JSONPath of an epoch-ms field.
fn age_from(route: &RouteNode<'_>, problems: &mut Vec<Problem>) -> Option<CompiledPath> {
    let text = route.text("age_from", problems)?;
    match CompiledPath::compile(&text) {
        Ok(p) => Some(p),
        Err(e) => {
            problems.push(Problem::new(
                route.line_of("age_from"),
                format!("`age_from`: {e}"),
            ));
            None
        }
    }
}
