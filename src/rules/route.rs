//! One compiled route and what it does to one message: match the subject, parse the payload
//! (only when a condition, transform, template or `age_from` reads it), check `when`, run the
//! transforms, render the outputs. Never panics and never does I/O: every failure becomes a
//! [`RouteOutcome::Failed`] carrying the action `on_error` asks for.
//!
//! Layer 3 (the compiled route) of [`crate::rules`]; imports `condition`, `steps` and the
//! primitives. Built by `compile/route.rs` above it.

use std::time::Duration;

use bytes::Bytes;
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::condition::Condition;
use super::context::MessageContext;
use super::headers::Headers;
use super::path::CompiledPath;
use super::pattern::SubjectPattern;
use super::steps::{Applied, Pipeline, TransformError};
use super::template::{Template, TemplateError};
use super::value::as_number;

/// Headers the router puts on dead letters.
pub const HEADER_ROUTE: &str = "Prism-Route";
pub const HEADER_ERROR: &str = "Prism-Error";
pub const HEADER_ORIGINAL_SUBJECT: &str = "Prism-Original-Subject";

/// Why one message failed in a route.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    #[error("payload is not json: {0}")]
    NotJson(String),
    #[error("transform failed: {0}")]
    Transform(#[from] TransformError),
    #[error("output {field} {template:?}: {source}")]
    Template {
        field: &'static str,
        template: String,
        source: TemplateError,
    },
}

impl Serialize for RouteError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where a route's messages come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteSource {
    /// A core NATS subscription in a queue group (at-most-once).
    Core { queue_group: String },
    /// A durable JetStream consumer (at-least-once; ack after publishing).
    JetStream {
        stream: String,
        durable: String,
        #[serde(serialize_with = "millis")]
        ack_wait: Duration,
        max_ack_pending: i64,
        max_deliver: i64,
    },
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

/// What to do with a message the route fails on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Publish the original message to `{dead_letter_prefix}.{route}` (the default).
    DeadLetter,
    /// Forget it (counted as errored).
    Drop,
    /// Publish the original payload, untransformed, to the route's outputs.
    PassThrough,
}

/// One output of a route (`to:` entry), compiled.
#[derive(Debug)]
pub struct CompiledOutput {
    pub subject: Template,
    pub jetstream: bool,
    pub msg_id: Option<Template>,
    /// Copy the incoming headers (except `Nats-*` server controls).
    pub carry_headers: bool,
    pub headers: Vec<(String, Template)>,
}

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputMessage {
    pub subject: String,
    pub headers: Headers,
    #[serde(serialize_with = "payload_as_json")]
    pub payload: Bytes,
    /// Publish through JetStream and wait for the stream's ack.
    pub jetstream: bool,
    /// To send as `Nats-Msg-Id` (server-side de-duplication).
    pub msg_id: Option<String>,
}

/// Payloads show as JSON when they are JSON, as text otherwise (dry runs, test output).
fn payload_as_json<S: Serializer>(payload: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(v) => v.serialize(s),
        Err(_) => s.serialize_str(&String::from_utf8_lossy(payload)),
    }
}

/// What the route does with a failed message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "messages")]
pub enum FailureAction {
    DeadLetter(OutputMessage),
    Drop,
    PassThrough(Vec<OutputMessage>),
}

/// The result of one message in one route.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RouteOutcome {
    /// The subject does not match `from`.
    NoMatch,
    /// `when` does not hold.
    Filtered,
    /// Messages to publish (none when `explode` met an empty list). `age_ms` is routing
    /// time minus `age_from`, when configured and present.
    Outputs {
        messages: Vec<OutputMessage>,
        age_ms: Option<i64>,
    },
    Failed {
        error: RouteError,
        action: FailureAction,
    },
}

/// A route ready to run.
#[derive(Debug)]
pub struct CompiledRoute {
    pub name: String,
    /// `file:line` the route was defined at.
    pub origin: String,
    pub pattern: SubjectPattern,
    pub source: RouteSource,
    pub when: Option<Condition>,
    /// Names of the pipelines used, in order (inline steps show as `inline`).
    pub transform_names: Vec<String>,
    pub pipeline: Pipeline,
    pub outputs: Vec<CompiledOutput>,
    pub partition_by: Option<Template>,
    pub age_from: Option<CompiledPath>,
    pub on_error: OnError,
    pub dead_letter_subject: String,
    /// True when some stream captures the dead-letter subject.
    pub dead_letter_jetstream: bool,
    /// Whether the payload must be parsed at all.
    pub(crate) needs_json: bool,
}

impl CompiledRoute {
    /// Whether anything of the route reads the payload (`when` paths, steps, `age_from`,
    /// `{$...}` in output templates); when nothing does, it is forwarded unparsed.
    pub(crate) fn reads_payload(&self) -> bool {
        self.when.as_ref().is_some_and(Condition::uses_payload)
            || !self.pipeline.is_empty()
            || self.age_from.is_some()
            || self.outputs.iter().any(|o| {
                o.subject.uses_payload()
                    || o.msg_id.as_ref().is_some_and(Template::uses_payload)
                    || o.headers.iter().any(|(_, t)| t.uses_payload())
            })
    }

    /// The NATS subscription filter, e.g. `trade.*.*.*`.
    pub fn subscription(&self) -> &str {
        self.pattern.filter()
    }

    /// The partition key for `subject` (from captures only, so it is known before parsing).
    pub fn partition_key(&self, subject: &str) -> Option<String> {
        let template = self.partition_by.as_ref()?;
        let captures = self.pattern.matches(subject)?;
        let headers = Headers::new();
        let ctx = MessageContext {
            subject,
            captures: &captures,
            headers: &headers,
            now_ms: 0,
        };
        template.render_string(&ctx, &Value::Null).ok()
    }

    /// Runs one message through the route. `now_ms` is the routing time (epoch ms).
    pub fn process(
        &self,
        subject: &str,
        headers: &Headers,
        payload: &Bytes,
        now_ms: i64,
    ) -> RouteOutcome {
        let Some(captures) = self.pattern.matches(subject) else {
            return RouteOutcome::NoMatch;
        };
        let ctx = MessageContext {
            subject,
            captures: &captures,
            headers,
            now_ms,
        };
        let parsed = if self.needs_json {
            match serde_json::from_slice::<Value>(payload) {
                Ok(v) => v,
                Err(e) => {
                    return self.fail(
                        RouteError::NotJson(e.to_string()),
                        &ctx,
                        &Value::Null,
                        payload,
                    )
                }
            }
        } else {
            Value::Null
        };
        if let Some(when) = &self.when {
            if !when.eval(&ctx, &parsed) {
                return RouteOutcome::Filtered;
            }
        }
        let age_ms = self
            .age_from
            .as_ref()
            .and_then(|p| p.first(&parsed))
            .and_then(as_number)
            .map(|ts| now_ms.saturating_sub(ts as i64));
        if self.pipeline.is_empty() {
            return match self.render_all(&ctx, &parsed, payload) {
                Ok(messages) => RouteOutcome::Outputs { messages, age_ms },
                Err(e) => self.fail(e, &ctx, &parsed, payload),
            };
        }
        let transformed = match self.pipeline.apply(parsed, &ctx) {
            Ok(t) => t,
            Err(e) => return self.fail(e.into(), &ctx, &Value::Null, payload),
        };
        let transformed: &[Value] = match &transformed {
            Applied::One(v) => std::slice::from_ref(v),
            Applied::Many(vs) => vs,
        };
        let mut messages = Vec::with_capacity(transformed.len() * self.outputs.len());
        for message in transformed {
            let mut buf = Vec::with_capacity(payload.len() + 64);
            if let Err(e) = serde_json::to_writer(&mut buf, message) {
                let err = TransformError::Failed {
                    kind: "serialize",
                    field: String::new(),
                    message: e.to_string(),
                };
                return self.fail(err.into(), &ctx, &Value::Null, payload);
            }
            match self.render_all(&ctx, message, &Bytes::from(buf)) {
                Ok(out) => messages.extend(out),
                Err(e) => return self.fail(e, &ctx, &Value::Null, payload),
            }
        }
        RouteOutcome::Outputs { messages, age_ms }
    }

    /// One message per output for one (transformed) payload.
    fn render_all(
        &self,
        ctx: &MessageContext<'_>,
        message: &Value,
        bytes: &Bytes,
    ) -> Result<Vec<OutputMessage>, RouteError> {
        let mut out = Vec::with_capacity(self.outputs.len());
        for output in &self.outputs {
            let template_err = |field, t: &Template| {
                let template = t.as_str().to_string();
                move |source| RouteError::Template {
                    field,
                    template,
                    source,
                }
            };
            let subject = output
                .subject
                .render_subject(ctx, message)
                .map_err(template_err("subject", &output.subject))?;
            let msg_id = match &output.msg_id {
                Some(t) => Some(
                    t.render_string(ctx, message)
                        .map_err(template_err("msg_id", t))?,
                ),
                None => None,
            };
            let mut headers = Headers::new();
            if output.carry_headers {
                for (name, values) in ctx.headers.iter() {
                    if !is_server_control(name) {
                        for v in values {
                            headers.append(name, v.as_str());
                        }
                    }
                }
            }
            for (name, t) in &output.headers {
                headers.insert(
                    name.as_str(),
                    t.render_string(ctx, message)
                        .map_err(template_err("header", t))?,
                );
            }
            out.push(OutputMessage {
                subject,
                headers,
                payload: bytes.clone(),
                jetstream: output.jetstream,
                msg_id,
            });
        }
        Ok(out)
    }

    fn fail(
        &self,
        error: RouteError,
        ctx: &MessageContext<'_>,
        original: &Value,
        payload: &Bytes,
    ) -> RouteOutcome {
        let action = match self.on_error {
            OnError::Drop => FailureAction::Drop,
            OnError::PassThrough => match self.render_all(ctx, original, payload) {
                Ok(messages) => FailureAction::PassThrough(messages),
                Err(_) => FailureAction::DeadLetter(self.dead_letter(&error, ctx, payload)),
            },
            OnError::DeadLetter => {
                FailureAction::DeadLetter(self.dead_letter(&error, ctx, payload))
            }
        };
        RouteOutcome::Failed { error, action }
    }

    /// The original message addressed to `{dead_letter_prefix}.{route}`, with headers
    /// naming the route, the error and the original subject.
    pub fn dead_letter(
        &self,
        error: &RouteError,
        ctx: &MessageContext<'_>,
        payload: &Bytes,
    ) -> OutputMessage {
        let mut headers = Headers::new();
        for (name, values) in ctx.headers.iter() {
            if !is_server_control(name) {
                for v in values {
                    headers.append(name, v.as_str());
                }
            }
        }
        headers.insert(HEADER_ROUTE, self.name.as_str());
        headers.insert(HEADER_ERROR, sanitize_header(&error.to_string()));
        headers.insert(HEADER_ORIGINAL_SUBJECT, ctx.subject);
        OutputMessage {
            subject: self.dead_letter_subject.clone(),
            headers,
            payload: payload.clone(),
            jetstream: self.dead_letter_jetstream,
            msg_id: None,
        }
    }
}

/// `Nats-*` headers are per-message server controls (`Nats-Msg-Id`, `Nats-Expected-*`);
/// carrying them to another subject would make the server drop or reject the copy.
fn is_server_control(name: &str) -> bool {
    name.len() >= 5 && name[..5].eq_ignore_ascii_case("nats-")
}

/// Header values cannot hold line breaks; long errors are cut.
fn sanitize_header(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect();
    if text.chars().count() > 512 {
        out.push('…');
    }
    out
}
