//! Durable consumers kept for downstream services (`consumers:` of `broker.yaml`), ensured
//! by the `StreamActor` right after the streams at every (re)connection, and re-created
//! when its periodic check finds one missing (a nats-server restart lost a memory stream,
//! someone deleted it). A storage service binds to its durable and resumes where it
//! stopped, whatever restarted meanwhile.
//!
//! Ensuring never resets a consumer: one that exists keeps its position; settings the
//! server can change in place (ack wait, max deliver, max ack pending, the deliver subject
//! of a push consumer nobody is bound to, description, replicas) are applied to it, on top
//! of its current server config so nothing we do not manage changes. Settings the server
//! cannot change on an existing consumer (deliver policy, ack policy, filter subject on
//! nats-server 2.9, push versus pull) are not forced by deleting it, which would lose its
//! position: the consumer is reported refused, with the difference, in `/ready`
//! (`consumer:NAME`), `/api/v1/broker/health` and `/api/v1/broker/status`, until the
//! config matches or an operator deletes it. Replicas follow the stream's.

use std::collections::BTreeMap;
use std::sync::RwLock;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::{ConsumerInfoErrorKind, Context as JetStream};
use async_nats::jetstream::stream::ConsumerErrorKind;
use tracing::{info, warn};

use crate::config::{AckMode, DeliverFrom, DurableSpec};

/// Why a consumer could not be ensured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumerError {
    /// No connection, or JetStream did not answer in time: tried again.
    #[error("jetstream unavailable: {0}")]
    Unavailable(String),
    /// Its stream is missing or does not answer.
    #[error("stream {stream} is not available: {reason}")]
    Stream { stream: String, reason: String },
    /// The config asks for a change the server cannot make to an existing consumer.
    #[error("{0} cannot be changed on an existing consumer; delete the consumer to apply it (it then starts over from its deliver_policy)")]
    Fixed(String),
    /// The server refused to create or update it.
    #[error("refused by the server: {0}")]
    Refused(String),
}

/// Health of every configured consumer, for readiness, health and status.
#[derive(Debug, Default)]
pub struct ConsumersState {
    health: RwLock<BTreeMap<String, Result<(), String>>>,
}

impl ConsumersState {
    /// Every configured consumer with its health; absent until first ensured.
    pub fn health(&self) -> BTreeMap<String, Result<(), String>> {
        self.health.read().map(|h| h.clone()).unwrap_or_default()
    }

    /// Configured consumers that could not be ensured, with the reason.
    pub fn failures(&self) -> Vec<(String, String)> {
        self.health
            .read()
            .map(|h| {
                h.iter()
                    .filter_map(|(name, r)| r.as_ref().err().map(|e| (name.clone(), e.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn set(&self, name: &str, result: Result<(), String>) {
        if let Ok(mut h) = self.health.write() {
            h.insert(name.to_string(), result);
        }
    }
}

fn deliver_policy(from: DeliverFrom) -> DeliverPolicy {
    match from {
        DeliverFrom::All => DeliverPolicy::All,
        DeliverFrom::Last => DeliverPolicy::Last,
        DeliverFrom::New => DeliverPolicy::New,
        DeliverFrom::LastPerSubject => DeliverPolicy::LastPerSubject,
    }
}

fn ack_policy(mode: AckMode) -> AckPolicy {
    match mode {
        AckMode::Explicit => AckPolicy::Explicit,
        AckMode::All => AckPolicy::All,
        AckMode::None => AckPolicy::None,
    }
}

/// A deliver policy as the config spells it.
fn deliver_name(policy: &DeliverPolicy) -> &'static str {
    match policy {
        DeliverPolicy::All => "all",
        DeliverPolicy::Last => "last",
        DeliverPolicy::New => "new",
        DeliverPolicy::LastPerSubject => "last_per_subject",
        DeliverPolicy::ByStartSequence { .. } => "by_start_sequence",
        DeliverPolicy::ByStartTime { .. } => "by_start_time",
    }
}

/// An ack policy as the config spells it.
fn ack_name(policy: AckPolicy) -> &'static str {
    match policy {
        AckPolicy::Explicit => "explicit",
        AckPolicy::All => "all",
        AckPolicy::None => "none",
        AckPolicy::FlowControl => "flow_control",
    }
}

/// The server config of a new consumer for `spec` on a stream with `replicas`.
pub fn wanted(spec: &DurableSpec, replicas: usize) -> consumer::Config {
    consumer::Config {
        durable_name: Some(spec.name.clone()),
        description: spec.description.clone(),
        deliver_subject: spec.deliver_subject.clone(),
        deliver_policy: deliver_policy(spec.deliver_policy),
        ack_policy: ack_policy(spec.ack_policy),
        ack_wait: spec.ack_wait,
        max_deliver: spec.max_deliver,
        filter_subject: spec.filter_subject.clone(),
        max_ack_pending: spec.max_ack_pending,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// How an existing consumer's config differs from `spec`: what can be changed in place,
/// and what cannot.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Differences {
    pub changeable: Vec<String>,
    pub fixed: Vec<String>,
}

pub fn differences(spec: &DurableSpec, replicas: usize, have: &consumer::Config) -> Differences {
    let mut d = Differences::default();
    let want = wanted(spec, replicas);
    let mut fixed = |field: &str, have: String, want: String| {
        if have != want {
            d.fixed.push(format!(
                "{field} ({have} on the server, {want} in the config)"
            ));
        }
    };
    fixed(
        "deliver_policy",
        deliver_name(&have.deliver_policy).into(),
        deliver_name(&want.deliver_policy).into(),
    );
    fixed(
        "ack_policy",
        ack_name(have.ack_policy).into(),
        ack_name(want.ack_policy).into(),
    );
    fixed(
        "filter_subject",
        format!("{:?}", have.filter_subject),
        format!("{:?}", want.filter_subject),
    );
    let kind = |c: &consumer::Config| {
        if c.deliver_subject.is_some() {
            "push"
        } else {
            "pull"
        }
    };
    fixed("push or pull", kind(have).into(), kind(&want).into());
    let mut changeable = |field: &str, differs: bool| {
        if differs {
            d.changeable.push(field.to_string());
        }
    };
    changeable("ack_wait", have.ack_wait != want.ack_wait);
    changeable("max_deliver", have.max_deliver != want.max_deliver);
    changeable(
        "max_ack_pending",
        have.max_ack_pending != want.max_ack_pending,
    );
    changeable(
        "deliver_subject",
        have.deliver_subject.is_some()
            && want.deliver_subject.is_some()
            && have.deliver_subject != want.deliver_subject,
    );
    changeable(
        "description",
        want.description.is_some() && have.description != want.description,
    );
    changeable(
        "replicas",
        have.num_replicas != replicas && have.num_replicas != 0,
    );
    d
}

/// `have` with the changeable settings of `want` (everything we do not manage stays).
fn updated(have: &consumer::Config, want: consumer::Config) -> consumer::Config {
    consumer::Config {
        ack_wait: want.ack_wait,
        max_deliver: want.max_deliver,
        max_ack_pending: want.max_ack_pending,
        deliver_subject: want
            .deliver_subject
            .or_else(|| have.deliver_subject.clone()),
        description: want.description.or_else(|| have.description.clone()),
        num_replicas: want.num_replicas,
        ..have.clone()
    }
}

fn unavailable(e: impl std::fmt::Display) -> ConsumerError {
    ConsumerError::Unavailable(e.to_string())
}

/// Creates `spec`'s consumer, or brings an existing one in line; returns what it did.
pub async fn ensure_one(js: &JetStream, spec: &DurableSpec) -> Result<&'static str, ConsumerError> {
    let stream = js.get_stream(&spec.stream).await.map_err(|e| {
        let reason = e.to_string();
        match e.kind() {
            async_nats::jetstream::context::GetStreamErrorKind::Request => {
                ConsumerError::Unavailable(reason)
            }
            _ => ConsumerError::Stream {
                stream: spec.stream.clone(),
                reason,
            },
        }
    })?;
    let replicas = stream.cached_info().config.num_replicas;
    let want = wanted(spec, replicas);
    let create_error = |e: async_nats::jetstream::stream::ConsumerError| match e.kind() {
        ConsumerErrorKind::TimedOut | ConsumerErrorKind::Request => unavailable(e),
        _ => ConsumerError::Refused(e.to_string()),
    };
    let have = match stream.consumer_info(&spec.name).await {
        Ok(info) => info.config,
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
            stream.create_consumer(want).await.map_err(create_error)?;
            return Ok("created");
        }
        Err(e) => {
            return Err(match e.kind() {
                ConsumerInfoErrorKind::StreamNotFound => ConsumerError::Stream {
                    stream: spec.stream.clone(),
                    reason: e.to_string(),
                },
                _ => unavailable(e),
            })
        }
    };
    let diffs = differences(spec, replicas, &have);
    if !diffs.fixed.is_empty() {
        return Err(ConsumerError::Fixed(diffs.fixed.join(", ")));
    }
    if diffs.changeable.is_empty() {
        return Ok("unchanged");
    }
    info!(consumer = %spec.name, stream = %spec.stream, changes = %diffs.changeable.join(", "),
        "updating durable consumer to match config (it keeps its position)");
    stream
        .create_consumer(updated(&have, want))
        .await
        .map_err(create_error)?;
    Ok("updated")
}

/// Ensures every configured consumer; returns true when one met no JetStream and the
/// round should be tried again.
pub(crate) async fn ensure_all(
    js: &JetStream,
    specs: &[DurableSpec],
    state: &ConsumersState,
) -> bool {
    let mut retry = false;
    for spec in specs {
        match ensure_one(js, spec).await {
            Ok(outcome) => {
                info!(consumer = %spec.name, stream = %spec.stream, outcome, "durable consumer ensured");
                state.set(&spec.name, Ok(()));
            }
            Err(e) => {
                retry |= matches!(e, ConsumerError::Unavailable(_));
                warn!(consumer = %spec.name, stream = %spec.stream, error = %e, "cannot ensure durable consumer");
                state.set(&spec.name, Err(e.to_string()));
            }
        }
    }
    retry
}

/// Re-creates configured consumers that are missing on the server (checked with the
/// streams); leaves existing ones alone.
pub(crate) async fn recreate_missing(
    js: &JetStream,
    specs: &[DurableSpec],
    state: &ConsumersState,
) {
    for spec in specs {
        let Ok(stream) = js.get_stream_no_info(&spec.stream).await else {
            continue;
        };
        // A missing stream is re-created by the stream check; its consumers next round.
        match stream.consumer_info(&spec.name).await {
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
                match ensure_one(js, spec).await {
                    Ok(outcome) => {
                        warn!(consumer = %spec.name, stream = %spec.stream, outcome, "configured durable consumer was missing; re-created it");
                        state.set(&spec.name, Ok(()));
                    }
                    Err(e) => {
                        warn!(consumer = %spec.name, stream = %spec.stream, error = %e, "configured durable consumer is missing and cannot be re-created");
                        state.set(&spec.name, Err(e.to_string()));
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use super::*;

    fn spec() -> DurableSpec {
        DurableSpec {
            name: "store".into(),
            stream: "MARKET_DATA".into(),
            filter_subject: "funding_rate.>".into(),
            deliver_policy: DeliverFrom::Last,
            ack_policy: AckMode::Explicit,
            ack_wait: Duration::from_secs(60),
            max_deliver: 3,
            max_ack_pending: 2000,
            deliver_subject: Some("_deliver.store".into()),
            description: None,
        }
    }

    #[test]
    fn the_wanted_config_carries_every_setting_and_the_stream_replicas() {
        let c = wanted(&spec(), 3);
        assert_eq!(c.durable_name.as_deref(), Some("store"));
        assert_eq!(c.filter_subject, "funding_rate.>");
        assert_eq!(c.deliver_policy, DeliverPolicy::Last);
        assert_eq!(c.ack_policy, AckPolicy::Explicit);
        assert_eq!(c.ack_wait, Duration::from_secs(60));
        assert_eq!((c.max_deliver, c.max_ack_pending), (3, 2000));
        assert_eq!(c.deliver_subject.as_deref(), Some("_deliver.store"));
        assert_eq!(c.num_replicas, 3);
    }

    #[test]
    fn an_equal_consumer_has_no_differences() {
        let have = wanted(&spec(), 1);
        assert_eq!(differences(&spec(), 1, &have), Differences::default());
        // A server that reports replicas 0 (inherit) is not a difference either.
        let inherit = consumer::Config {
            num_replicas: 0,
            ..have
        };
        assert_eq!(differences(&spec(), 1, &inherit), Differences::default());
    }

    #[test]
    fn changeable_and_fixed_differences_are_told_apart() {
        let have = consumer::Config {
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 100,
            deliver_subject: Some("_deliver.other".into()),
            ..wanted(&spec(), 1)
        };
        let d = differences(&spec(), 1, &have);
        assert_eq!(
            d.changeable,
            ["ack_wait", "max_ack_pending", "deliver_subject"]
        );
        assert!(d.fixed.is_empty());
        let have = consumer::Config {
            deliver_policy: DeliverPolicy::All,
            filter_subject: "open_interest.>".into(),
            deliver_subject: None,
            ..wanted(&spec(), 1)
        };
        let d = differences(&spec(), 1, &have);
        assert_eq!(d.fixed.len(), 3, "{:?}", d.fixed);
        assert!(d.fixed[0].starts_with("deliver_policy (all on the server, last in the config)"));
        assert!(d.fixed[1].starts_with("filter_subject"));
        assert!(d.fixed[2].starts_with("push or pull (pull on the server, push in the config)"));
    }

    #[test]
    fn an_update_keeps_what_the_config_does_not_manage() {
        let have = consumer::Config {
            max_waiting: 512,
            ack_wait: Duration::from_secs(5),
            sample_frequency: 50,
            ..wanted(&spec(), 1)
        };
        let new = updated(&have, wanted(&spec(), 1));
        assert_eq!(new.max_waiting, 512);
        assert_eq!(new.sample_frequency, 50);
        assert_eq!(new.ack_wait, Duration::from_secs(60));
    }
}
