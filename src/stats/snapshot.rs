//! The status snapshot: the figures of the status endpoints that need a NATS round trip
//! (every stream with its state, the supervised server's `varz` or the connected server's
//! INFO in external mode, the JetStream account usage), read in the background by the
//! `StatsActor` and published in a [`SnapshotCell`]. Handlers load the current `Arc` (a
//! lock-free pointer copy) and never ask an actor or NATS themselves.
//!
//! Truthfulness: a [`StatusSnapshot`] keeps the figures of the latest refresh that
//! succeeded and when they were taken, plus how the latest attempt went. Whether they may
//! be shown as current is decided when a request reads them ([`StatusSnapshot::stale_reason`]):
//! not while NATS is disconnected, not when they were read before the latest reconnection,
//! not when the latest refresh failed, not when a stream change made through this service
//! is not in them yet. Requests render [`SnapshotMeta`] (`taken_at`, `age_ms`, `stale`,
//! `error`) next to the figures.
//!
//! Adding a section (e.g. collectors, cluster): a field in [`Figures`] filled by the
//! refresher (`stats::actor`), and, if requests show it often, its JSON pre-rendered once
//! in [`Rendered`] so a request copies bytes instead of building a tree. The cluster
//! section ([`Figures::cluster`], see `stats::cluster`) is one: set with
//! [`Figures::with_cluster`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_nats::jetstream::stream;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::cluster::ClusterView;
use super::metrics::JetStreamUsage;
use crate::streams::mapping::info_view;

/// At most this many streams are kept in a snapshot; more are cut off and flagged.
pub const MAX_SNAPSHOT_STREAMS: usize = 4096;

/// The figures one successful refresh read.
#[derive(Debug, Default)]
pub struct Figures {
    /// Every stream (up to [`MAX_SNAPSHOT_STREAMS`]) with its config and state, by name.
    pub streams: Vec<stream::Info>,
    /// More streams exist than the snapshot keeps.
    pub truncated: bool,
    /// JetStream usage of the broker's account (`$JS.API.INFO`).
    pub account: Option<JetStreamUsage>,
    /// The `varz` fields the seeds show (supervised), or the connected server's INFO.
    pub server_info: Value,
    /// The NATS cluster as this node saw it in the same refresh; `None` when the server is
    /// not clustered.
    pub cluster: Option<ClusterView>,
    pub rendered: Rendered,
}

/// JSON of the sections requests show, rendered once per refresh.
#[derive(Debug)]
pub struct Rendered {
    /// `[info_view, …]`: config and state of every stream (the stream listing).
    pub streams: Box<RawValue>,
    /// `[{name, subjects, messages, bytes, first_seq, last_seq, consumer_count}, …]`.
    pub stream_states: Box<RawValue>,
    pub server_info: Box<RawValue>,
    /// The cluster section (`null` when not clustered).
    pub cluster: Box<RawValue>,
}

impl Default for Rendered {
    fn default() -> Self {
        Rendered {
            streams: raw(&json!([])),
            stream_states: raw(&json!([])),
            server_info: raw(&Value::Null),
            cluster: raw(&Value::Null),
        }
    }
}

/// `value` as JSON text; `null` in the (unreachable) case it cannot be serialized.
fn raw(value: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

impl Figures {
    /// Sorts the streams by name and renders the sections.
    pub fn new(
        mut streams: Vec<stream::Info>,
        truncated: bool,
        account: Option<JetStreamUsage>,
        server_info: Value,
    ) -> Figures {
        streams.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        let views: Vec<Value> = streams.iter().map(info_view).collect();
        let states: Vec<Value> = streams
            .iter()
            .map(|i| {
                json!({
                    "name": i.config.name,
                    "subjects": i.config.subjects,
                    "messages": i.state.messages,
                    "bytes": i.state.bytes,
                    "first_seq": i.state.first_sequence,
                    "last_seq": i.state.last_sequence,
                    "consumer_count": i.state.consumer_count,
                })
            })
            .collect();
        let rendered = Rendered {
            streams: raw(&views),
            stream_states: raw(&states),
            server_info: raw(&server_info),
            cluster: raw(&Value::Null),
        };
        Figures {
            streams,
            truncated,
            account,
            server_info,
            cluster: None,
            rendered,
        }
    }

    /// These figures with the cluster section (kept only when the server is clustered).
    pub fn with_cluster(mut self, cluster: ClusterView) -> Figures {
        if cluster.clustered() {
            self.rendered.cluster = raw(&cluster);
            self.cluster = Some(cluster);
        }
        self
    }
}

/// What the status endpoints know without a round trip, and how old it is.
#[derive(Debug)]
pub struct StatusSnapshot {
    /// When [`figures`](Self::figures) were read: the end of the latest refresh that
    /// succeeded; `None` until the first one.
    pub taken_at: Option<SystemTime>,
    /// The client's reconnect count when they were read: figures from before the latest
    /// reconnection are stale (the server may have lost memory streams, for one).
    pub connection: u64,
    /// The stream change count (`StreamsState::changes`) the figures include.
    pub streams_version: u64,
    /// The stream change count at the start of the latest attempt, successful or not.
    pub attempted_version: u64,
    /// Why the latest attempt failed; `None` when it succeeded.
    pub error: Option<String>,
    pub figures: Arc<Figures>,
}

impl StatusSnapshot {
    /// Before the first refresh: no figures.
    pub fn initial() -> StatusSnapshot {
        StatusSnapshot {
            taken_at: None,
            connection: 0,
            streams_version: 0,
            attempted_version: 0,
            error: Some("no refresh has completed yet".into()),
            figures: Arc::new(Figures::default()),
        }
    }

    /// The outcome of a successful refresh that started with `connection` and
    /// `streams_version` and ended `at`.
    pub fn taken(
        figures: Figures,
        connection: u64,
        streams_version: u64,
        at: SystemTime,
    ) -> StatusSnapshot {
        StatusSnapshot {
            taken_at: Some(at),
            connection,
            streams_version,
            attempted_version: streams_version,
            error: None,
            figures: Arc::new(figures),
        }
    }

    /// This snapshot's figures after an attempt that started at `attempted_version` failed:
    /// they keep their time (so their age grows) and are marked by `error`.
    pub fn failed(&self, error: String, attempted_version: u64) -> StatusSnapshot {
        StatusSnapshot {
            taken_at: self.taken_at,
            connection: self.connection,
            streams_version: self.streams_version,
            attempted_version: attempted_version.max(self.attempted_version),
            error: Some(error),
            figures: self.figures.clone(),
        }
    }

    /// Why the figures must not be shown as current, given the live facts; `None` when
    /// they may.
    pub fn stale_reason(
        &self,
        connected: bool,
        connection: u64,
        streams_changes: u64,
    ) -> Option<String> {
        if !connected {
            return Some("nats is not connected".into());
        }
        if let Some(error) = &self.error {
            return Some(error.clone());
        }
        if self.connection != connection {
            return Some("figures predate the latest nats reconnection".into());
        }
        if self.streams_version < streams_changes {
            return Some("a stream change is not in the figures yet".into());
        }
        None
    }

    /// `data.snapshot` of an answer, as of `now`.
    pub fn meta(&self, stale: Option<String>, now: SystemTime) -> SnapshotMeta {
        SnapshotMeta {
            taken_at: self.taken_at.map(rfc3339),
            age_ms: self.taken_at.map(|t| {
                now.duration_since(t)
                    .unwrap_or(Duration::ZERO)
                    .as_millis()
                    .min(u64::MAX as u128) as u64
            }),
            stale: stale.is_some(),
            error: stale,
        }
    }
}

/// How old the snapshot figures of an answer are (`data.snapshot`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// When the figures were read from NATS (RFC 3339 UTC); `null` before the first read.
    pub taken_at: Option<String>,
    /// Milliseconds between `taken_at` and the answer.
    pub age_ms: Option<u64>,
    /// True when the figures are not current; the stream figures are then left out.
    pub stale: bool,
    /// Why they are stale.
    pub error: Option<String>,
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The published snapshot: one writer (the refresher), any number of readers.
#[derive(Debug)]
pub struct SnapshotCell {
    current: ArcSwap<StatusSnapshot>,
    /// Bumped at every publish, for requests waiting for a refresh to land.
    published: watch::Sender<u64>,
}

impl Default for SnapshotCell {
    fn default() -> Self {
        SnapshotCell {
            current: ArcSwap::from_pointee(StatusSnapshot::initial()),
            published: watch::channel(0).0,
        }
    }
}

impl SnapshotCell {
    /// The current snapshot: a pointer copy, no lock, no wait.
    pub fn load(&self) -> Arc<StatusSnapshot> {
        self.current.load_full()
    }

    pub(crate) fn publish(&self, snapshot: StatusSnapshot) {
        self.current.store(Arc::new(snapshot));
        self.published.send_modify(|n| *n += 1);
    }

    /// The current snapshot once an attempt that started after stream change `version`
    /// has ended, or after `bound`, whichever comes first.
    pub async fn attempted(&self, version: u64, bound: Duration) -> Arc<StatusSnapshot> {
        let mut published = self.published.subscribe();
        let _ = tokio::time::timeout(bound, async {
            while self.current.load().attempted_version < version {
                if published.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        self.load()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn figures() -> Figures {
        Figures::new(Vec::new(), false, None, json!({ "version": "2.9.10" }))
    }

    #[test]
    fn fresh_figures_are_current_and_dated() {
        let at = SystemTime::now();
        let snap = StatusSnapshot::taken(figures(), 3, 7, at);
        assert_eq!(snap.stale_reason(true, 3, 7), None);
        let meta = snap.meta(None, at + Duration::from_millis(250));
        assert_eq!(meta.age_ms, Some(250));
        assert!(!meta.stale);
        assert!(meta.taken_at.unwrap().ends_with('Z'));
        assert_eq!(
            snap.figures.rendered.server_info.get(),
            r#"{"version":"2.9.10"}"#
        );
        assert_eq!(snap.figures.rendered.streams.get(), "[]");
    }

    #[test]
    fn figures_go_stale_on_disconnect_reconnect_failure_and_pending_changes() {
        let at = SystemTime::now();
        let snap = StatusSnapshot::taken(figures(), 3, 7, at);
        assert!(snap
            .stale_reason(false, 3, 7)
            .unwrap()
            .contains("not connected"));
        assert!(snap
            .stale_reason(true, 4, 7)
            .unwrap()
            .contains("reconnection"));
        assert!(snap
            .stale_reason(true, 3, 8)
            .unwrap()
            .contains("stream change"));
        let failed = snap.failed("refresh timed out".into(), 8);
        assert_eq!(
            failed.stale_reason(true, 3, 7).unwrap(),
            "refresh timed out"
        );
        assert_eq!(failed.taken_at, snap.taken_at, "the age keeps growing");
        assert_eq!(failed.attempted_version, 8);
        assert_eq!(failed.streams_version, 7);
        let initial = StatusSnapshot::initial();
        assert!(initial.stale_reason(true, 0, 0).is_some());
        let meta = initial.meta(Some("x".into()), at);
        assert_eq!((meta.taken_at, meta.age_ms, meta.stale), (None, None, true));
    }

    #[tokio::test]
    async fn waiting_for_an_attempt_ends_when_one_lands_or_at_the_bound() {
        let cell = Arc::new(SnapshotCell::default());
        let waiter = {
            let cell = cell.clone();
            tokio::spawn(async move { cell.attempted(2, Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        cell.publish(StatusSnapshot::taken(figures(), 0, 1, SystemTime::now()));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "version 1 does not satisfy 2");
        cell.publish(StatusSnapshot::taken(figures(), 0, 2, SystemTime::now()));
        let got = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.streams_version, 2);
        let started = std::time::Instant::now();
        let got = cell.attempted(5, Duration::from_millis(50)).await;
        assert_eq!(got.streams_version, 2);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
