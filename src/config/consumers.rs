//! The `consumers:` section of `broker.yaml`: durable JetStream consumers the broker keeps
//! for downstream services (a storage service binds to its durable instead of creating
//! one, so it resumes where it stopped after its own restarts). Raw entries
//! ([`ConsumerConfig`], keyed by durable name) are checked by [`validate`] against the
//! effective streams and resolved into [`DurableSpec`]s, which the `StreamActor` ensures
//! after the streams at every (re)connection (`streams::consumers`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::streams::StreamSpec;
use super::units::Span;
use super::ConfigProblem;
use crate::subject;

/// Where a new consumer starts in its stream. Only used when the consumer is created: an
/// existing durable keeps its position (and the server refuses to change this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverFrom {
    /// Every message the stream holds.
    #[default]
    All,
    /// The stream's last message, then what arrives.
    Last,
    /// What arrives after the consumer was created.
    New,
    /// The last message of every subject, then what arrives.
    LastPerSubject,
}

/// How deliveries are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// Every message is acked on its own.
    #[default]
    Explicit,
    /// An ack acknowledges every earlier delivery too.
    All,
    /// No acks: delivered once, never redelivered.
    None,
}

/// One `consumers:` entry; the key is the durable name.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// The stream the consumer reads (a default or configured stream).
    pub stream: String,
    /// Only messages on these subjects (inside the stream's subjects); none: all of them.
    pub filter_subject: Option<String>,
    pub deliver_policy: DeliverFrom,
    pub ack_policy: AckMode,
    /// Redelivery after this long without an ack.
    pub ack_wait: Span,
    /// Deliveries of one message at most; -1 is unlimited.
    pub max_deliver: i64,
    /// Deliveries not yet acked at most; -1 is unlimited.
    pub max_ack_pending: i64,
    /// Set: a push consumer delivering to this subject (what `js.subscribe(durable=…)`
    /// of nats.py binds to). Unset: a pull consumer (`pull_subscribe` / fetch).
    pub deliver_subject: Option<String>,
    pub description: Option<String>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            stream: String::new(),
            filter_subject: None,
            deliver_policy: DeliverFrom::All,
            ack_policy: AckMode::Explicit,
            ack_wait: Span::secs(30),
            max_deliver: -1,
            max_ack_pending: 1000,
            deliver_subject: None,
            description: None,
        }
    }
}

/// A durable consumer as the service wants it on the server, every value resolved. Its
/// replicas follow its stream's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DurableSpec {
    pub name: String,
    pub stream: String,
    /// Empty: the whole stream.
    pub filter_subject: String,
    pub deliver_policy: DeliverFrom,
    pub ack_policy: AckMode,
    pub ack_wait: Duration,
    pub max_deliver: i64,
    pub max_ack_pending: i64,
    pub deliver_subject: Option<String>,
    pub description: Option<String>,
}

/// The configured consumers, by durable name.
pub fn resolve(configured: &BTreeMap<String, ConsumerConfig>) -> Vec<DurableSpec> {
    configured
        .iter()
        .map(|(name, c)| DurableSpec {
            name: name.clone(),
            stream: c.stream.clone(),
            filter_subject: c.filter_subject.clone().unwrap_or_default(),
            deliver_policy: c.deliver_policy,
            ack_policy: c.ack_policy,
            ack_wait: c.ack_wait.duration(),
            max_deliver: c.max_deliver,
            max_ack_pending: c.max_ack_pending,
            deliver_subject: c.deliver_subject.clone(),
            description: c.description.clone(),
        })
        .collect()
}

/// JetStream consumer names: non-empty, at most 255 bytes, no white space, `.`, `*`, `>`,
/// path separators or control characters.
fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("consumer name is empty".into());
    }
    if name.len() > 255 {
        return Err(format!("consumer name {name:?} is longer than 255 bytes"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!(
            "consumer name {name:?} contains {c:?} (no spaces, dots, wildcards or slashes)"
        ));
    }
    Ok(())
}

/// Every problem of the section, given the effective streams.
pub fn validate(
    configured: &BTreeMap<String, ConsumerConfig>,
    streams: &[StreamSpec],
) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    for (name, c) in configured {
        let path = format!("consumers.{name}");
        let mut problem = |field: &str, message: String| {
            let at = if field.is_empty() {
                path.clone()
            } else {
                format!("{path}.{field}")
            };
            problems.push(ConfigProblem::new(at, message));
        };
        if let Err(e) = validate_name(name) {
            problem("", e);
        }
        let stream = streams.iter().find(|s| s.name == c.stream);
        match stream {
            None if c.stream.is_empty() => problem("stream", "must be set".into()),
            None => problem(
                "stream",
                format!(
                    "{:?} is not a default or configured stream (known: {})",
                    c.stream,
                    streams
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(_) => {}
        }
        if let Some(filter) = &c.filter_subject {
            match subject::validate_filter(filter) {
                Err(e) => problem("filter_subject", e),
                Ok(()) => {
                    if let Some(s) = stream {
                        if !s.subjects.iter().any(|sf| subject::overlap(sf, filter)) {
                            problem(
                                "filter_subject",
                                format!(
                                    "{filter:?} matches none of stream {}'s subjects ({})",
                                    s.name,
                                    s.subjects.join(", ")
                                ),
                            );
                        }
                    }
                }
            }
        }
        if let Some(deliver) = &c.deliver_subject {
            match subject::validate_subject(deliver) {
                Err(e) => problem("deliver_subject", e),
                Ok(()) => {
                    if let Some(s) = streams
                        .iter()
                        .find(|s| s.subjects.iter().any(|f| subject::matches(f, deliver)))
                    {
                        problem(
                            "deliver_subject",
                            format!(
                                "{deliver:?} is captured by stream {} (deliveries would be stored again)",
                                s.name
                            ),
                        );
                    }
                }
            }
        }
        if c.ack_wait.duration().is_zero() {
            problem("ack_wait", "must be greater than 0".into());
        }
        if c.max_deliver == 0 || c.max_deliver < -1 {
            problem(
                "max_deliver",
                "must be at least 1, or -1 (unlimited)".into(),
            );
        }
        if c.max_ack_pending == 0 || c.max_ack_pending < -1 {
            problem(
                "max_ack_pending",
                "must be at least 1, or -1 (unlimited)".into(),
            );
        }
    }
    problems
}
