//! Layer 4 (compile): one `to:` entry of a route — subject, `msg_id` and header templates
//! compiled against the route's captures, with the checks that need no other route or
//! stream (header names, a subject whose literal parts could never be valid).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::fields::deserialize;
use crate::rules::headers::{header_name, header_value};
use crate::rules::pattern::split_tokens;
use crate::rules::route::CompiledOutput;
use crate::rules::template::{CaptureScope, Template};
use crate::rules::yaml::{Node, Problem};
use crate::subject;

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

/// Compiles one output; gives the line of its `subject` (where lint reports) with it.
pub(super) fn compile(
    node: &Node,
    scope: CaptureScope<'_>,
    problems: &mut Vec<Problem>,
) -> Option<(usize, CompiledOutput)> {
    let raw: RawOutput = deserialize(node, "to", problems)?;
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
    if let Some(t) = &msg_id {
        check_literal_value("msg_id", "Nats-Msg-Id", t, line, problems);
    }
    let mut headers = Vec::new();
    for (name, text) in &raw.headers {
        let name = match header_name(name) {
            Ok(n) => Some(n),
            Err(e) => {
                problems.push(Problem::new(line, format!("`headers`: {e}")));
                None
            }
        };
        let t = template("headers", text, problems);
        if let (Some(name), Some(t)) = (name, t) {
            check_literal_value("headers", name.as_ref(), &t, line, problems);
            headers.push((name, t));
        }
    }
    let subject = subject?;
    check_literal_subject(&subject, line, problems);
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

/// The literal text of a header or `msg_id` template must be a valid header value already
/// (a rendered value is checked per message: it goes to `on_error` when it is not).
fn check_literal_value(
    field: &str,
    header: &str,
    template: &Template,
    line: usize,
    problems: &mut Vec<Problem>,
) {
    if let Some(e) = template
        .literal_parts()
        .find_map(|text| header_value(header, text).err())
    {
        problems.push(Problem::new(line, format!("`{field}`: {e}")));
    }
}

/// The literal parts of a subject template must already form a valid subject.
fn check_literal_subject(subject: &Template, line: usize, problems: &mut Vec<Problem>) {
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
}
