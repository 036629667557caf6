//! `StatsActor`: owns the refresh timer of the derived gauges. Every `interval` it copies
//! the supervised server's latest `/varz` and `/jsz` snapshots (taken by
//! `NatsProcessActor`, read from [`NatsState`]) into [`Metrics`], and asks the JetStream API
//! through the shared client for per-stream and per-durable-consumer figures (and for the
//! account usage when there is no `/jsz`, i.e. external mode). Scrapes only read the
//! registry; they never trigger NATS requests.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use async_nats::jetstream;
use futures::TryStreamExt;
use tracing::{debug, info, warn};

use super::metrics::{JetStreamUsage, Metrics};
use crate::nats::NatsState;

/// How often the derived gauges are refreshed.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Bound on one refresh's JetStream requests.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(4);

/// At most this many streams get per-stream series.
pub const MAX_STREAM_SERIES: usize = 256;

/// At most this many durable consumers get per-consumer series.
pub const MAX_CONSUMER_SERIES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("nats client is not connected")]
    NotConnected,
    #[error("cannot list jetstream streams: {0}")]
    Streams(#[source] jetstream::context::StreamsError),
    #[error("cannot list consumers of stream {stream}: {source}")]
    Consumers {
        stream: String,
        #[source]
        source: jetstream::stream::ConsumersError,
    },
    #[error("cannot open stream {stream}: {source}")]
    Stream {
        stream: String,
        #[source]
        source: jetstream::context::GetStreamError,
    },
    #[error("cannot read jetstream account info: {0}")]
    Account(#[source] async_nats::RequestError),
    #[error("unexpected jetstream account info: {0}")]
    AccountReply(String),
    #[error("refresh timed out after {0:?}")]
    Timeout(Duration),
    #[error("a refresh is already running")]
    Busy,
}

/// What the actor refreshes and how much of it.
#[derive(Debug, Clone)]
pub struct StatsConfig {
    pub interval: Duration,
    pub timeout: Duration,
    /// Durable consumers whose name starts with this get per-consumer series; `None`
    /// means every durable (ephemeral consumers never do).
    pub consumer_prefix: Option<String>,
    pub max_streams: usize,
    pub max_consumers: usize,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            interval: REFRESH_INTERVAL,
            timeout: REFRESH_TIMEOUT,
            consumer_prefix: None,
            max_streams: MAX_STREAM_SERIES,
            max_consumers: MAX_CONSUMER_SERIES,
        }
    }
}

/// Figures of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFigures {
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
    pub consumers: u64,
}

/// Figures of one durable consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerFigures {
    pub stream: String,
    pub name: String,
    pub pending: u64,
    pub ack_pending: u64,
}

/// What one refresh found; also the answer to [`RefreshStats`].
#[derive(Debug, Clone, Default)]
pub struct RefreshReport {
    pub streams: Vec<StreamFigures>,
    pub consumers: Vec<ConsumerFigures>,
    /// JetStream usage from the account API (`None` when `/jsz` supplied it).
    pub account: Option<JetStreamUsage>,
    /// Streams or consumers left out because of the series caps.
    pub truncated: bool,
}

pub struct StatsActor {
    metrics: Arc<Metrics>,
    nats: Arc<NatsState>,
    client: async_nats::Client,
    config: StatsConfig,
    refreshing: bool,
    /// Series currently exported, so vanished streams and consumers are removed.
    exported_streams: HashSet<String>,
    exported_consumers: HashSet<(String, String)>,
    /// The last refresh failed (logged once at `warn`, then at `debug` until it recovers).
    failing: bool,
    /// The series caps were hit (logged once).
    warned_truncated: bool,
}

impl StatsActor {
    /// Also binds the NATS liveness metrics of `metrics` to `nats` (see
    /// [`Metrics::bind_nats`]).
    pub fn new(
        metrics: Arc<Metrics>,
        nats: Arc<NatsState>,
        client: async_nats::Client,
        config: StatsConfig,
    ) -> Self {
        metrics.bind_nats(nats.clone());
        StatsActor {
            metrics,
            nats,
            client,
            config,
            refreshing: false,
            exported_streams: HashSet::new(),
            exported_consumers: HashSet::new(),
            failing: false,
            warned_truncated: false,
        }
    }

    /// Starts the actor under a supervisor.
    pub fn start_supervised(
        metrics: Arc<Metrics>,
        nats: Arc<NatsState>,
        client: async_nats::Client,
        config: StatsConfig,
    ) -> Addr<StatsActor> {
        Supervisor::start(move |_| StatsActor::new(metrics, nats, client, config))
    }

    /// Copies the monitoring snapshots; returns whether `/jsz` supplied JetStream usage.
    fn apply_snapshots(&self) -> bool {
        let live = self.nats.supervised && self.nats.server_up();
        match self.nats.varz().filter(|_| live) {
            Some(varz) => self.metrics.nats_server.apply_varz(&varz.body),
            None => self.metrics.nats_server.hide(),
        }
        let usage = self
            .nats
            .jsz()
            .filter(|_| live)
            .and_then(|jsz| JetStreamUsage::from_jsz(&jsz.body));
        if let Some(usage) = usage {
            self.metrics.jetstream.apply(usage);
        }
        usage.is_some()
    }

    fn apply_report(&mut self, report: &RefreshReport) {
        let gauges = &self.metrics.streams;
        let mut streams = HashSet::new();
        for s in &report.streams {
            gauges.set_stream(&s.name, s.messages, s.bytes, s.consumers);
            streams.insert(s.name.clone());
        }
        for gone in self.exported_streams.difference(&streams) {
            gauges.remove_stream(gone);
        }
        self.exported_streams = streams;

        let mut consumers = HashSet::new();
        for c in &report.consumers {
            gauges.set_consumer(&c.stream, &c.name, c.pending, c.ack_pending);
            consumers.insert((c.stream.clone(), c.name.clone()));
        }
        for (stream, name) in self.exported_consumers.difference(&consumers) {
            gauges.remove_consumer(stream, name);
        }
        self.exported_consumers = consumers;

        if let Some(usage) = report.account {
            self.metrics.jetstream.apply(usage);
        }
    }

    fn record_outcome(&mut self, result: &Result<RefreshReport, StatsError>) {
        match result {
            Ok(report) => {
                self.metrics
                    .stats_refreshes
                    .with_label_values(&["ok"])
                    .inc();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                self.metrics.stats_last_refresh.set(now);
                if self.failing {
                    info!("stats refresh recovered");
                }
                if report.truncated && !self.warned_truncated {
                    self.warned_truncated = true;
                    warn!(
                        max_streams = self.config.max_streams,
                        max_consumers = self.config.max_consumers,
                        "stream or consumer series capped; the rest are not exported"
                    );
                }
                self.failing = false;
            }
            Err(StatsError::Busy) => {}
            // The client logs connection trouble itself; refreshes resume on reconnect.
            Err(e @ StatsError::NotConnected) => {
                self.metrics
                    .stats_refreshes
                    .with_label_values(&["skipped"])
                    .inc();
                debug!(error = %e, "stats refresh skipped");
            }
            Err(e) => {
                self.metrics
                    .stats_refreshes
                    .with_label_values(&["failed"])
                    .inc();
                if self.failing {
                    debug!(error = %e, "stats refresh failed");
                } else {
                    warn!(error = %e, "stats refresh failed");
                }
                self.failing = true;
            }
        }
    }
}

impl Actor for StatsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(RefreshStats);
        ctx.run_interval(self.config.interval, |_, ctx| ctx.notify(RefreshStats));
    }
}

impl Supervised for StatsActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.refreshing = false;
    }
}

/// Refreshes the derived gauges now (the timer sends it too). Fails with
/// [`StatsError::Busy`] while another refresh is running.
#[derive(Message)]
#[rtype(result = "Result<RefreshReport, StatsError>")]
pub struct RefreshStats;

impl Handler<RefreshStats> for StatsActor {
    type Result = ResponseActFuture<Self, Result<RefreshReport, StatsError>>;

    fn handle(&mut self, _msg: RefreshStats, _ctx: &mut Context<Self>) -> Self::Result {
        if self.refreshing {
            return Box::pin(fut::ready(Err(StatsError::Busy)));
        }
        self.refreshing = true;
        let jsz_usage = self.apply_snapshots();
        let client = self.client.clone();
        let config = self.config.clone();
        let connected = self.nats.client_connected();
        let work = async move {
            if !connected {
                return Err(StatsError::NotConnected);
            }
            match tokio::time::timeout(config.timeout, collect(client, &config, !jsz_usage)).await {
                Ok(result) => result,
                Err(_) => Err(StatsError::Timeout(config.timeout)),
            }
        };
        Box::pin(work.into_actor(self).map(|result, act, _ctx| {
            act.refreshing = false;
            if let Ok(report) = &result {
                act.apply_report(report);
            }
            act.record_outcome(&result);
            result
        }))
    }
}

/// Reads streams, durable consumers and (when `account` is set) the account usage through
/// the JetStream API.
async fn collect(
    client: async_nats::Client,
    config: &StatsConfig,
    account: bool,
) -> Result<RefreshReport, StatsError> {
    let js = jetstream::new(client.clone());
    let mut report = RefreshReport::default();
    if account {
        report.account = Some(account_usage(&client).await?);
    }

    let mut streams = js.streams();
    while let Some(info) = streams.try_next().await.map_err(StatsError::Streams)? {
        if report.streams.len() >= config.max_streams {
            report.truncated = true;
            break;
        }
        report.streams.push(StreamFigures {
            name: info.config.name.clone(),
            messages: info.state.messages,
            bytes: info.state.bytes,
            consumers: info.state.consumer_count as u64,
        });
    }
    report.streams.sort_by(|a, b| a.name.cmp(&b.name));

    'streams: for stream in report.streams.iter().filter(|s| s.consumers > 0) {
        let handle = js
            .get_stream_no_info(&stream.name)
            .await
            .map_err(|source| StatsError::Stream {
                stream: stream.name.clone(),
                source,
            })?;
        let mut consumers = handle.consumers();
        while let Some(info) =
            consumers
                .try_next()
                .await
                .map_err(|source| StatsError::Consumers {
                    stream: stream.name.clone(),
                    source,
                })?
        {
            let Some(durable) = info.config.durable_name.as_deref() else {
                continue;
            };
            if let Some(prefix) = &config.consumer_prefix {
                if !durable.starts_with(prefix.as_str()) {
                    continue;
                }
            }
            if report.consumers.len() >= config.max_consumers {
                report.truncated = true;
                break 'streams;
            }
            report.consumers.push(ConsumerFigures {
                stream: stream.name.clone(),
                name: durable.to_string(),
                pending: info.num_pending,
                ack_pending: info.num_ack_pending as u64,
            });
        }
    }
    Ok(report)
}

/// JetStream usage of our account from `$JS.API.INFO`, read leniently: async-nats's typed
/// `query_account` rejects the replies of some server versions (2.9.x) that lack fields.
async fn account_usage(client: &async_nats::Client) -> Result<JetStreamUsage, StatsError> {
    let reply = client
        .request("$JS.API.INFO", bytes::Bytes::new())
        .await
        .map_err(StatsError::Account)?;
    let body: serde_json::Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| StatsError::AccountReply(e.to_string()))?;
    if let Some(error) = body.get("error") {
        return Err(StatsError::AccountReply(error.to_string()));
    }
    let field = |key: &str| body.get(key).and_then(serde_json::Value::as_u64);
    match (field("memory"), field("storage")) {
        (Some(memory), Some(storage)) => Ok(JetStreamUsage {
            memory,
            storage,
            streams: field("streams").unwrap_or(0),
            consumers: field("consumers").unwrap_or(0),
        }),
        _ => Err(StatsError::AccountReply(
            "no memory or storage figures".into(),
        )),
    }
}
