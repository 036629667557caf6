//! One compiled route and what it does to one message: match the subject, parse the payload
//! (only when a condition, transform, template or `age_from` reads it), check `when`, run the
//! transforms, render the outputs. Never panics and never does I/O: every failure becomes a
//! [`RouteOutcome::Failed`] carrying the action `on_error` asks for — a rendered subject
//! that is not a valid subject, and a rendered header or `msg_id` that NATS could not carry,
//! included. [`CompiledRoute::dead_letter`] is the one builder of dead letters, also for
//! messages whose outputs the router could not publish.
//!
//! Layer 3 (the compiled route) of [`crate::rules`]; imports `message`, `condition`, `steps`
//! and the primitives. Built by `compile/route.rs` above it.

use std::time::Duration;

use async_nats::HeaderName;
use bytes::Bytes;
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::condition::Condition;
use super::context::MessageContext;
use super::headers::{header_value, HeaderError, Headers};
use super::lazy::{JsonRoot, LazyObject};
use super::message::{
    carried_headers, error_header, header_text, OutputMessage, HEADER_ERROR,
    HEADER_ORIGINAL_SUBJECT, HEADER_ROUTE,
};
use super::path::CompiledPath;
use super::pattern::SubjectPattern;
use super::steps::{Alert, Applied, Pipeline, PipelineState, StepEvents, TransformError};
use super::template::{Template, TemplateError};
use super::value::as_number;

/// The header a `msg_id` becomes.
const MSG_ID_HEADER: &str = "Nats-Msg-Id";

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
    /// A rendered `msg_id` or header value NATS could not carry (a line break).
    #[error("output {field}: {source}")]
    Header {
        field: &'static str,
        source: HeaderError,
    },
    /// The router could not publish the outputs (set by the router, for the dead letter).
    #[error("publish failed: {0}")]
    Publish(String),
}

/// The state of a route's stateful steps, owned by the route's task, and what they did
/// since the task last looked ([`RouteState::take_events`]).
#[derive(Debug, Default)]
pub struct RouteState {
    pipeline: PipelineState,
    events: StepEvents,
    /// Inputs run with this state so far: the number of the last one.
    inputs: u64,
}

impl RouteState {
    /// Counters and nothing else (the alerts are already outputs) since the last call.
    pub fn take_events(&mut self) -> StepEvents {
        let input = self.events.input;
        let events = std::mem::take(&mut self.events);
        self.events.input = input;
        events
    }

    /// The number of the last input run (inputs count up from 1).
    pub fn last_input(&self) -> u64 {
        self.inputs
    }

    /// This state for `route`, a new version of the route it was made for: each stateful
    /// step whose kind and config are unchanged keeps its state (matched in order), the
    /// others start empty.
    pub fn carry_over(self, route: &CompiledRoute) -> RouteState {
        self.carry_over_all(route).0
    }

    /// [`RouteState::carry_over`], and whether every old step's state was kept (when not,
    /// what the dropped state held is gone).
    pub fn carry_over_all(self, route: &CompiledRoute) -> (RouteState, bool) {
        let (pipeline, all) = self.pipeline.carry_over_all(route.pipeline.new_state());
        (
            RouteState {
                pipeline,
                events: self.events,
                inputs: self.inputs,
            },
            all,
        )
    }

    /// How many stateful steps the state is for.
    pub fn steps(&self) -> usize {
        self.pipeline.len()
    }
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
    /// Header names were checked at load; values are checked as they are rendered.
    pub headers: Vec<(HeaderName, Template)>,
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

    /// True when a step keeps state per key.
    pub fn is_stateful(&self) -> bool {
        self.pipeline.is_stateful()
    }

    /// True when a step can hold an input's effect past the input (a window, a throttle
    /// emitting the latest message): a JetStream input is then acked once its effect is out.
    pub fn holds_inputs(&self) -> bool {
        self.pipeline.holds_inputs()
    }

    /// The kinds of the stateful steps, in order.
    pub fn stateful_kinds(&self) -> Vec<&'static str> {
        self.pipeline.stateful_kinds()
    }

    /// Empty state for the route's stateful steps.
    pub fn new_state(&self) -> RouteState {
        RouteState {
            pipeline: self.pipeline.new_state(),
            events: StepEvents::default(),
            inputs: 0,
        }
    }

    /// When [`CompiledRoute::tick`] next has something to do.
    pub fn next_due(&self, state: &RouteState) -> Option<i64> {
        self.pipeline.next_due(&state.pipeline)
    }

    /// Keys held by the route's stateful steps.
    pub fn state_keys(&self, state: &RouteState) -> usize {
        self.pipeline.keys(&state.pipeline)
    }

    /// The number ([`RouteState::last_input`]) of the earliest input whose effect the state
    /// still holds: inputs before it are fully reflected in what the route let out.
    pub fn holding_since(&self, state: &RouteState) -> Option<u64> {
        self.pipeline.holding_since(&state.pipeline)
    }

    /// Runs one message through the route with no state kept (a dry run: stateful steps
    /// start empty). `now_ms` is the routing time (epoch ms).
    pub fn process(
        &self,
        subject: &str,
        headers: &Headers,
        payload: &Bytes,
        now_ms: i64,
    ) -> RouteOutcome {
        self.run(subject, headers, payload, now_ms, None, true)
    }

    /// Runs one message through the route with its task's state.
    pub fn process_with(
        &self,
        subject: &str,
        headers: &Headers,
        payload: &Bytes,
        now_ms: i64,
        state: &mut RouteState,
    ) -> RouteOutcome {
        self.run(subject, headers, payload, now_ms, Some(state), true)
    }

    /// What the stateful steps let go of at `now_ms` (conflated messages whose interval
    /// ended, closed windows), each run through the rest of the pipeline and rendered like
    /// any output; one outcome per message let go of.
    pub fn tick(&self, now_ms: i64, state: &mut RouteState) -> Vec<RouteOutcome> {
        let RouteState {
            pipeline, events, ..
        } = state;
        let due = self.pipeline.tick(now_ms, pipeline, events);
        let mut out = Vec::with_capacity(due.len());
        for (first, emitted) in due {
            let captures = self.pattern.matches(&emitted.subject).unwrap_or_default();
            let ctx = MessageContext {
                subject: &emitted.subject,
                captures: &captures,
                headers: &emitted.headers,
                now_ms,
            };
            let before = events.alerts.len();
            let applied =
                self.pipeline
                    .resume(first, emitted.payload.clone(), &ctx, pipeline, events);
            let alerts: Vec<Alert> = events.alerts.drain(before..).collect();
            let bytes = Bytes::from(serde_json::to_vec(&emitted.payload).unwrap_or_default());
            out.push(match applied {
                Ok(applied) => match self.render_applied(&ctx, &applied, &bytes, alerts) {
                    Ok(messages) => RouteOutcome::Outputs {
                        messages,
                        age_ms: None,
                    },
                    Err(e) => self.fail(e, &ctx, None, &bytes),
                },
                Err(e) => self.fail(e.into(), &ctx, None, &bytes),
            });
        }
        out
    }

    /// Matches the subject and runs the message; `lazy` false keeps it off the lazy reader
    /// (the tests that compare the two paths).
    fn run(
        &self,
        subject: &str,
        headers: &Headers,
        payload: &Bytes,
        now_ms: i64,
        state: Option<&mut RouteState>,
        lazy: bool,
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
        // a pipeline whose first step needs the whole `Value` would parse the payload
        // twice: such a route parses it once, the old way
        if lazy && self.needs_json && (self.pipeline.is_empty() || self.pipeline.lazy_steps() > 0) {
            if let Some(object) = LazyObject::parse(payload) {
                return self.run_lazy(&ctx, object, payload, state);
            }
        }
        self.run_parsed(&ctx, payload, state)
    }

    /// [`CompiledRoute::run`] on the payload parsed whole into a `Value` (a payload that
    /// is not an object, or one the lazy reader leaves to serde_json).
    fn run_parsed(
        &self,
        ctx: &MessageContext<'_>,
        payload: &Bytes,
        state: Option<&mut RouteState>,
    ) -> RouteOutcome {
        let ctx = *ctx;
        let parsed = if self.needs_json {
            match serde_json::from_slice::<Value>(payload) {
                Ok(v) => v,
                Err(e) => {
                    return self.fail(RouteError::NotJson(e.to_string()), &ctx, None, payload)
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
        let age_ms = self.age_ms(&ctx, &parsed);
        if self.pipeline.is_empty() {
            return match self.render_all(&ctx, &parsed, payload) {
                Ok(messages) => RouteOutcome::Outputs { messages, age_ms },
                Err(e) => self.fail(e, &ctx, Some(&parsed), payload),
            };
        }
        // pass_through renders its outputs from the original payload: only such a route
        // keeps a copy of it while the steps change the parsed one
        let original = (self.on_error == OnError::PassThrough).then(|| parsed.clone());
        let state = count_input(state);
        self.transform(&ctx, parsed, 0, payload, original.as_ref(), state, age_ms)
    }

    /// [`CompiledRoute::run`] on a payload read lazily: `when`, `age_from` and the first
    /// steps that have a lazy form read and change only the fields they name; when every
    /// step has one, the output is written from the object (untouched fields verbatim),
    /// otherwise the rest of the pipeline runs on the object as a `Value`.
    fn run_lazy(
        &self,
        ctx: &MessageContext<'_>,
        mut object: LazyObject<'_>,
        payload: &Bytes,
        state: Option<&mut RouteState>,
    ) -> RouteOutcome {
        if let Some(when) = &self.when {
            if !when.eval(ctx, &object) {
                return RouteOutcome::Filtered;
            }
        }
        let age_ms = self.age_ms(ctx, &object);
        // what pass_through renders from on failure: the payload as it came
        let original = || {
            (self.on_error == OnError::PassThrough)
                .then(|| serde_json::from_slice::<Value>(payload).ok())
                .flatten()
        };
        if self.pipeline.is_empty() {
            return match self.render_all(ctx, &object, payload) {
                Ok(messages) => RouteOutcome::Outputs { messages, age_ms },
                Err(e) => self.fail(e, ctx, original().as_ref(), payload),
            };
        }
        let state = count_input(state);
        if let Err(e) = self.pipeline.apply_lazy(&mut object, ctx) {
            return self.transform_failed(e, ctx, original().as_ref(), payload);
        }
        if !self.pipeline.is_all_lazy() {
            let first = self.pipeline.lazy_steps();
            let value = object.into_value(payload);
            let original = original();
            return self.transform(ctx, value, first, payload, original.as_ref(), state, age_ms);
        }
        let mut buf = Vec::with_capacity(payload.len() + 64);
        if let Err(e) = object.write_json(&mut buf) {
            return self.fail(serialize_failed(&e), ctx, original().as_ref(), payload);
        }
        match self.render_all(ctx, &object, &Bytes::from(buf)) {
            Ok(messages) => RouteOutcome::Outputs { messages, age_ms },
            Err(e) => self.fail(e, ctx, original().as_ref(), payload),
        }
    }

    /// Routing time minus `age_from`, when configured and present.
    fn age_ms<R: JsonRoot + ?Sized>(&self, ctx: &MessageContext<'_>, payload: &R) -> Option<i64> {
        self.age_from
            .as_ref()
            .and_then(|p| p.first(payload))
            .and_then(as_number)
            .map(|ts| ctx.now_ms.saturating_sub(ts as i64))
    }

    /// Runs the pipeline from step `first` on and renders what it gave.
    #[allow(clippy::too_many_arguments)]
    fn transform(
        &self,
        ctx: &MessageContext<'_>,
        parsed: Value,
        first: usize,
        payload: &Bytes,
        original: Option<&Value>,
        state: Option<&mut RouteState>,
        age_ms: Option<i64>,
    ) -> RouteOutcome {
        let (transformed, alerts) = match state {
            None => (self.pipeline.apply(first, parsed, ctx), Vec::new()),
            Some(state) => {
                let RouteState {
                    pipeline, events, ..
                } = state;
                let before = events.alerts.len();
                let applied = self
                    .pipeline
                    .apply_with(first, parsed, ctx, pipeline, events);
                (applied, events.alerts.drain(before..).collect())
            }
        };
        let transformed = match transformed {
            Ok(t) => t,
            Err(e) => return self.transform_failed(e, ctx, original, payload),
        };
        match self.render_applied(ctx, &transformed, payload, alerts) {
            Ok(messages) => RouteOutcome::Outputs { messages, age_ms },
            Err(e) => self.fail(e, ctx, original, payload),
        }
    }

    /// What a step's failure makes of the message.
    fn transform_failed(
        &self,
        e: TransformError,
        ctx: &MessageContext<'_>,
        original: Option<&Value>,
        payload: &Bytes,
    ) -> RouteOutcome {
        match e {
            // a message after its window closed is dead-lettered whatever `on_error` says
            e @ TransformError::Late { .. } => {
                let error = RouteError::Transform(e);
                let letter = self.dead_letter(ctx.subject, ctx.headers, payload, &error);
                RouteOutcome::Failed {
                    error,
                    action: FailureAction::DeadLetter(letter),
                }
            }
            e => self.fail(e.into(), ctx, original, payload),
        }
    }

    /// The output messages of what the pipeline gave, then the steps' alerts.
    fn render_applied(
        &self,
        ctx: &MessageContext<'_>,
        transformed: &Applied,
        payload: &Bytes,
        alerts: Vec<Alert>,
    ) -> Result<Vec<OutputMessage>, RouteError> {
        let transformed: &[Value] = match transformed {
            Applied::One(v) => std::slice::from_ref(v),
            Applied::Many(vs) => vs,
        };
        let mut messages =
            Vec::with_capacity(transformed.len() * self.outputs.len() + alerts.len());
        for message in transformed {
            let mut buf = Vec::with_capacity(payload.len() + 64);
            serde_json::to_writer(&mut buf, message).map_err(|e| serialize_failed(&e))?;
            messages.extend(self.render_all(ctx, message, &Bytes::from(buf))?);
        }
        for alert in alerts {
            let payload = Bytes::from(serde_json::to_vec(&alert.payload).unwrap_or_default());
            messages.push(OutputMessage {
                subject: alert.subject,
                headers: Headers::new(),
                payload,
                jetstream: alert.jetstream,
                msg_id: None,
            });
        }
        Ok(messages)
    }

    /// One message per output for one (transformed) payload.
    fn render_all<R: JsonRoot + ?Sized>(
        &self,
        ctx: &MessageContext<'_>,
        message: &R,
        bytes: &Bytes,
    ) -> Result<Vec<OutputMessage>, RouteError> {
        self.outputs
            .iter()
            .map(|output| output.render(ctx, message, bytes))
            .collect()
    }

    /// What `on_error` does with a message that failed with `error`. `original` is the
    /// parsed original payload, when it parsed: pass_through renders from it.
    fn fail(
        &self,
        error: RouteError,
        ctx: &MessageContext<'_>,
        original: Option<&Value>,
        payload: &Bytes,
    ) -> RouteOutcome {
        let dead_letter = |error: &RouteError| {
            FailureAction::DeadLetter(self.dead_letter(ctx.subject, ctx.headers, payload, error))
        };
        let action = match self.on_error {
            OnError::Drop => FailureAction::Drop,
            OnError::PassThrough => {
                match self.render_all(ctx, original.unwrap_or(&Value::Null), payload) {
                    Ok(messages) => FailureAction::PassThrough(messages),
                    Err(_) => dead_letter(&error),
                }
            }
            OnError::DeadLetter => dead_letter(&error),
        };
        RouteOutcome::Failed { error, action }
    }

    /// The original message (`subject`, `headers`, `payload` as received) addressed to
    /// `{dead_letter_prefix}.{route}`: the incoming headers but the `Nats-*` controls, and
    /// `Prism-Route`, `Prism-Error` and `Prism-Original-Subject`. The one dead-letter
    /// builder, for messages that fail in the route and for those the router could not
    /// publish ([`RouteError::Publish`]).
    pub fn dead_letter(
        &self,
        subject: &str,
        headers: &Headers,
        payload: &Bytes,
        error: &RouteError,
    ) -> OutputMessage {
        let mut out = carried_headers(headers);
        out.insert(HEADER_ROUTE, header_text(&self.name));
        out.insert(HEADER_ERROR, error_header(error));
        out.insert(HEADER_ORIGINAL_SUBJECT, header_text(subject));
        OutputMessage {
            subject: self.dead_letter_subject.clone(),
            headers: out,
            payload: payload.clone(),
            jetstream: self.dead_letter_jetstream,
            msg_id: None,
        }
    }
}

/// The state's count of inputs, advanced for one more input about to run the pipeline.
fn count_input(state: Option<&mut RouteState>) -> Option<&mut RouteState> {
    let state = state?;
    state.inputs += 1;
    state.events.input = state.inputs;
    Some(state)
}

/// A payload that serde_json could not write.
fn serialize_failed(e: &serde_json::Error) -> RouteError {
    RouteError::Transform(TransformError::Failed {
        kind: "serialize",
        field: String::new(),
        message: e.to_string(),
    })
}

impl CompiledOutput {
    /// This output's message for one (transformed) payload serialized as `bytes`.
    fn render<R: JsonRoot + ?Sized>(
        &self,
        ctx: &MessageContext<'_>,
        message: &R,
        bytes: &Bytes,
    ) -> Result<OutputMessage, RouteError> {
        let template_err = |field, t: &Template| {
            let template = t.as_str().to_string();
            move |source| RouteError::Template {
                field,
                template,
                source,
            }
        };
        let subject = self
            .subject
            .render_subject(ctx, message)
            .map_err(template_err("subject", &self.subject))?;
        let msg_id = match &self.msg_id {
            Some(t) => {
                let id = t
                    .render_string(ctx, message)
                    .map_err(template_err("msg_id", t))?;
                let id = header_value(MSG_ID_HEADER, &id).map_err(|source| RouteError::Header {
                    field: "msg_id",
                    source,
                })?;
                Some(id)
            }
            None => None,
        };
        let mut headers = if self.carry_headers {
            carried_headers(ctx.headers)
        } else {
            Headers::new()
        };
        for (name, t) in &self.headers {
            let text = t
                .render_string(ctx, message)
                .map_err(template_err("header", t))?;
            let value =
                header_value(name.as_ref(), &text).map_err(|source| RouteError::Header {
                    field: "header",
                    source,
                })?;
            headers.insert(name.clone(), value);
        }
        Ok(OutputMessage {
            subject,
            headers,
            payload: bytes.clone(),
            jetstream: self.jetstream,
            msg_id,
        })
    }
}

#[cfg(test)]
impl CompiledRoute {
    /// [`CompiledRoute::process`] without the lazy reader: what the route did before it,
    /// for the tests that compare the two.
    pub(crate) fn process_parsed(
        &self,
        subject: &str,
        headers: &Headers,
        payload: &Bytes,
        now_ms: i64,
    ) -> RouteOutcome {
        self.run(subject, headers, payload, now_ms, None, false)
    }
}

#[cfg(test)]
mod lazy_tests;
