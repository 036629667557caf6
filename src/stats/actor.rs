//! `StatsActor`: the one background refresher of the figures that need a NATS round trip.
//! Every `interval` (1 s), at once after a stream change made through this service
//! ([`StreamsState::changed`]) and at every (re)connection of the client, it reads through
//! the shared client the streams with their state and the account's JetStream usage, and
//! the supervised server's `/varz` (and `/routez` when clustered) from its monitoring port
//! (the connected server's INFO in external mode). From one read it publishes the
//! [`StatusSnapshot`] the status endpoints answer from — its cluster section built from the
//! same read and the latest `/jsz` of the supervisor's probe — and sets the per-stream,
//! cluster and server gauges of [`Metrics`]. `/varz` and `/routez` go into [`NatsState`]
//! as soon as they are read (even when the rest of the refresh fails), so the monitoring
//! port is asked once for each: `/jsz` by the supervisor, these by this actor. Every
//! `consumers_interval` (5 s) it lists the durable consumers for their gauges. Scrapes and
//! status requests only read what it left; they never trigger NATS requests. Every refresh
//! is bounded by `timeout`, runs beside the mailbox (never blocks it), and a trigger during
//! a refresh makes the next one start as soon as it ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use async_nats::jetstream;
use futures::TryStreamExt;
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use super::cluster::{ClusterView, StreamCluster};
use super::metrics::{JetStreamUsage, Metrics};
use super::snapshot::{Figures, SnapshotCell, StatusSnapshot, MAX_SNAPSHOT_STREAMS};
use crate::nats::NatsState;
use crate::streams::StreamsState;

/// How often the snapshot and the stream gauges are refreshed.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// How often the durable consumers are listed for their gauges.
pub const CONSUMERS_INTERVAL: Duration = Duration::from_secs(5);

/// Bound on one refresh's requests.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// Bound on one refresh against a clustered server: its stream listing waits up to 4 s for
/// streams whose leader does not answer (an election) and then lists them as missing.
pub const CLUSTER_REFRESH_TIMEOUT: Duration = Duration::from_secs(6);

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
    #[error("cannot read varz from the monitoring port: {0}")]
    Varz(String),
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
    pub consumers_interval: Duration,
    pub timeout: Duration,
    /// `/varz` of the supervised server; `None` in external mode (the client's INFO is
    /// shown instead).
    pub varz_url: Option<String>,
    /// `/routez` of a clustered supervised server (the peers it has routes to).
    pub routez_url: Option<String>,
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
            consumers_interval: CONSUMERS_INTERVAL,
            timeout: REFRESH_TIMEOUT,
            varz_url: None,
            routez_url: None,
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

/// What one refresh found for the metrics; also the answer to [`RefreshStats`].
#[derive(Debug, Clone, Default)]
pub struct RefreshReport {
    pub streams: Vec<StreamFigures>,
    /// Durable consumers, when this refresh listed them (`consumers_listed`).
    pub consumers: Vec<ConsumerFigures>,
    pub consumers_listed: bool,
    /// JetStream usage from the account API (`None` when `/jsz` supplied it).
    pub account: Option<JetStreamUsage>,
    /// Streams or consumers left out because of the series caps.
    pub truncated: bool,
    /// Replication of every stream read (for the per-stream cluster gauges).
    pub replication: Vec<StreamCluster>,
    /// The node part of the cluster section: clustered, peers seen, meta leader.
    pub cluster_node: Option<(bool, usize, bool)>,
}

pub struct StatsActor {
    metrics: Arc<Metrics>,
    nats: Arc<NatsState>,
    client: async_nats::Client,
    streams: Arc<StreamsState>,
    snapshot: Arc<SnapshotCell>,
    http: reqwest::Client,
    config: StatsConfig,
    refreshing: bool,
    /// When the durable consumers were last listed.
    consumers_listed_at: Option<Instant>,
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
    /// [`Metrics::bind_nats`]). Publishes into `snapshot`; follows the changes counted in
    /// `streams`.
    pub fn new(
        metrics: Arc<Metrics>,
        nats: Arc<NatsState>,
        client: async_nats::Client,
        streams: Arc<StreamsState>,
        snapshot: Arc<SnapshotCell>,
        config: StatsConfig,
    ) -> Self {
        metrics.bind_nats(nats.clone());
        StatsActor {
            metrics,
            nats,
            client,
            streams,
            snapshot,
            http: reqwest::Client::new(),
            config,
            refreshing: false,
            consumers_listed_at: None,
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
        streams: Arc<StreamsState>,
        snapshot: Arc<SnapshotCell>,
        config: StatsConfig,
    ) -> Addr<StatsActor> {
        Supervisor::start(move |_| {
            StatsActor::new(metrics, nats, client, streams, snapshot, config)
        })
    }

    /// Sets the server gauges from the latest `/varz` (hidden while there is no live one).
    fn apply_varz(&self) {
        let live = self.nats.supervised && self.nats.server_up();
        match self.nats.varz().filter(|_| live) {
            Some(varz) => self.metrics.nats_server.apply_varz(&varz.body),
            None => self.metrics.nats_server.hide(),
        }
    }

    /// Sets the cluster node gauges (peers, meta leader) from the latest monitoring
    /// snapshots of a supervised server, whether or not the rest of the refresh succeeded:
    /// a cluster without quorum fails the stream listing, and must still show it.
    fn apply_cluster_node(&self) {
        if !self.nats.supervised {
            return;
        }
        if !self.nats.server_up() {
            self.metrics.cluster.hide_node();
            return;
        }
        let body = |s: Option<crate::nats::state::Snapshot>| s.map(|s| s.body);
        let (varz, jsz, routez) = (
            body(self.nats.varz()),
            body(self.nats.jsz()),
            body(self.nats.routez()),
        );
        let node = ClusterView::from_monitoring(varz.as_ref(), jsz.as_ref(), routez.as_ref());
        self.metrics.cluster.set_node(
            node.clustered(),
            node.peers_seen,
            node.meta_leader.is_some(),
        );
    }

    /// Copies the supervisor's `/jsz` into the JetStream gauges; returns whether it
    /// supplied JetStream usage.
    fn apply_jsz(&self) -> bool {
        let live = self.nats.supervised && self.nats.server_up();
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
        for r in report
            .replication
            .iter()
            .filter(|r| streams.contains(&r.name))
        {
            self.metrics.cluster.set_stream(
                &r.name,
                r.replicas,
                r.replicas_current,
                r.max_lag,
                r.leader.is_some(),
            );
        }
        for gone in self.exported_streams.difference(&streams) {
            gauges.remove_stream(gone);
            self.metrics.cluster.remove_stream(gone);
        }
        self.exported_streams = streams;
        // Supervised, the node gauges follow the monitoring snapshots at every attempt.
        if !self.nats.supervised {
            match report.cluster_node {
                Some((clustered, peers, meta_leader)) => {
                    self.metrics.cluster.set_node(clustered, peers, meta_leader)
                }
                None => self.metrics.cluster.hide_node(),
            }
        }

        if report.consumers_listed {
            let mut consumers = HashSet::new();
            for c in &report.consumers {
                gauges.set_consumer(&c.stream, &c.name, c.pending, c.ack_pending);
                consumers.insert((c.stream.clone(), c.name.clone()));
            }
            for (stream, name) in self.exported_consumers.difference(&consumers) {
                gauges.remove_consumer(stream, name);
            }
            self.exported_consumers = consumers;
        }

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

impl StatsActor {
    /// Starts a refresh unless one is running ([`StatsError::Busy`] then: the running one
    /// re-runs at its end if anything changed meanwhile). Lists the durable consumers when
    /// `consumers` is set.
    fn refresh(
        &mut self,
        consumers: bool,
    ) -> ResponseActFuture<Self, Result<RefreshReport, StatsError>> {
        if self.refreshing {
            return Box::pin(fut::ready(Err(StatsError::Busy)));
        }
        self.refreshing = true;
        let jsz_usage = self.apply_jsz();
        // Read before the figures: a change or reconnection after this point makes the
        // figures stale and the refresh run again.
        let connection = self.nats.client_reconnects();
        let version = self.streams.changes();
        let connected = self.nats.client_connected();
        let client = self.client.clone();
        let http = self.http.clone();
        let config = self.config.clone();
        let nats = self.nats.clone();
        let want = Want {
            account_metrics: !jsz_usage,
            consumers,
        };
        let work = async move {
            if !connected {
                return Err(StatsError::NotConnected);
            }
            match tokio::time::timeout(config.timeout, collect(client, &nats, &http, &config, want))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(StatsError::Timeout(config.timeout)),
            }
        };
        Box::pin(work.into_actor(self).map(move |result, act, ctx| {
            act.refreshing = false;
            act.apply_varz();
            act.apply_cluster_node();
            let result = match result {
                Ok(collected) => {
                    act.apply_report(&collected.report);
                    act.snapshot.publish(StatusSnapshot::taken(
                        collected.figures,
                        connection,
                        version,
                        SystemTime::now(),
                    ));
                    if consumers {
                        act.consumers_listed_at = Some(Instant::now());
                    }
                    Ok(collected.report)
                }
                Err(e) => {
                    let current = act.snapshot.load();
                    act.snapshot.publish(current.failed(e.to_string(), version));
                    Err(e)
                }
            };
            act.record_outcome(&result);
            if act.streams.changes() != version || act.nats.client_reconnects() != connection {
                ctx.notify(Refresh);
            }
            result
        }))
    }

    fn consumers_due(&self) -> bool {
        self.consumers_listed_at
            .is_none_or(|at| at.elapsed() >= self.config.consumers_interval)
    }
}

impl Actor for StatsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(Refresh);
        ctx.run_interval(self.config.interval, |_, ctx| ctx.notify(Refresh));
        let addr = ctx.address();
        let mut connections = self.nats.watch_connections();
        ctx.spawn(
            async move {
                while connections.changed().await.is_ok() {
                    addr.do_send(Refresh);
                }
            }
            .into_actor(self),
        );
        let addr = ctx.address();
        let streams = self.streams.clone();
        ctx.spawn(
            async move {
                loop {
                    streams.changed().await;
                    addr.do_send(Refresh);
                }
            }
            .into_actor(self),
        );
    }
}

impl Supervised for StatsActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.refreshing = false;
    }
}

/// Refreshes everything now, durable consumers included (the timer and the change
/// triggers send [`Refresh`]). Fails with [`StatsError::Busy`] while another refresh is
/// running.
#[derive(Message)]
#[rtype(result = "Result<RefreshReport, StatsError>")]
pub struct RefreshStats;

impl Handler<RefreshStats> for StatsActor {
    type Result = ResponseActFuture<Self, Result<RefreshReport, StatsError>>;

    fn handle(&mut self, _msg: RefreshStats, _ctx: &mut Context<Self>) -> Self::Result {
        self.refresh(true)
    }
}

/// A tick or a change: refresh unless a refresh is running (which then re-runs by itself
/// if needed); the consumers only when they are due.
#[derive(Message)]
#[rtype(result = "()")]
struct Refresh;

impl Handler<Refresh> for StatsActor {
    type Result = ();

    fn handle(&mut self, _msg: Refresh, ctx: &mut Context<Self>) {
        if self.refreshing {
            return;
        }
        let consumers = self.consumers_due();
        ctx.spawn(self.refresh(consumers).map(|_, _, _| ()));
    }
}

/// What a refresh reads beyond the snapshot's figures.
#[derive(Debug, Clone, Copy)]
struct Want {
    /// Account usage for the JetStream gauges (no `/jsz` supplied it).
    account_metrics: bool,
    consumers: bool,
}

/// One refresh's reads: for the metrics and for the snapshot.
struct Collected {
    report: RefreshReport,
    figures: Figures,
}

/// Reads the streams, the account usage and the server's monitoring endpoints
/// (concurrently), then the durable consumers when `want.consumers`; builds the cluster
/// section from the same reads and the supervisor's latest `/jsz`.
async fn collect(
    client: async_nats::Client,
    nats: &NatsState,
    http: &reqwest::Client,
    config: &StatsConfig,
    want: Want,
) -> Result<Collected, StatsError> {
    let js = jetstream::new(client.clone());
    let (varz, reads) = futures::join!(
        monitoring(nats, http, config),
        futures::future::try_join(account_usage(&client), list_streams(&js)),
    );
    let varz = varz?;
    let (account, (infos, truncated)) = reads?;
    let server_info = server_info(&client, varz.as_ref());
    let node = match &varz {
        Some(varz) => ClusterView::from_monitoring(
            Some(varz),
            nats.jsz().as_ref().map(|s| &s.body),
            nats.routez().as_ref().map(|s| &s.body),
        ),
        None => ClusterView::from_server_info(&client.server_info()),
    };
    let cluster = node.with_streams(&infos);
    let mut report = RefreshReport {
        account: want.account_metrics.then_some(account),
        truncated: infos.len() > config.max_streams,
        consumers_listed: want.consumers,
        replication: cluster.streams.clone(),
        cluster_node: Some((
            cluster.clustered(),
            cluster.peers_seen,
            cluster.meta_leader.is_some(),
        )),
        ..Default::default()
    };
    report.streams = infos
        .iter()
        .take(config.max_streams)
        .map(|info| StreamFigures {
            name: info.config.name.clone(),
            messages: info.state.messages,
            bytes: info.state.bytes,
            consumers: info.state.consumer_count as u64,
        })
        .collect();
    if want.consumers {
        list_consumers(&js, config, &mut report).await?;
    }
    Ok(Collected {
        report,
        figures: Figures::new(infos, truncated, Some(account), server_info).with_cluster(cluster),
    })
}

/// Reads `/varz` (and `/routez` when asked for) of the supervised server and stores them
/// in `nats` at once; answers the `/varz` (`None` in external mode).
async fn monitoring(
    nats: &NatsState,
    http: &reqwest::Client,
    config: &StatsConfig,
) -> Result<Option<Value>, StatsError> {
    let Some(url) = &config.varz_url else {
        return Ok(None);
    };
    let varz = get_json(http, url).await.map_err(StatsError::Varz)?;
    nats.set_varz(varz.clone());
    if let Some(url) = &config.routez_url {
        // The peers are a detail of the cluster section: a failed read leaves the last one.
        match get_json(http, url).await {
            Ok(routez) => nats.set_routez(routez),
            Err(e) => debug!(error = %e, "cannot read routez"),
        }
    }
    Ok(Some(varz))
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    http.get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}

/// Every stream with its state, by name; at most [`MAX_SNAPSHOT_STREAMS`] (then `true`).
async fn list_streams(
    js: &jetstream::Context,
) -> Result<(Vec<jetstream::stream::Info>, bool), StatsError> {
    let mut streams = js.streams();
    let mut infos = Vec::new();
    let mut truncated = false;
    while let Some(info) = streams.try_next().await.map_err(StatsError::Streams)? {
        if infos.len() >= MAX_SNAPSHOT_STREAMS {
            truncated = true;
            break;
        }
        infos.push(info);
    }
    infos.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    Ok((infos, truncated))
}

/// The durable consumers of the reported streams that have consumers.
async fn list_consumers(
    js: &jetstream::Context,
    config: &StatsConfig,
    report: &mut RefreshReport,
) -> Result<(), StatsError> {
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
    Ok(())
}

/// The `varz` fields the seeds show (supervised); the connected server's INFO otherwise.
fn server_info(client: &async_nats::Client, varz: Option<&Value>) -> Value {
    let Some(varz) = varz else {
        let info = client.server_info();
        return json!({
            "server_id": info.server_id,
            "server_name": info.server_name,
            "version": info.version,
            "go": info.go,
            "host": info.host,
            "port": info.port,
            "max_payload": info.max_payload,
        });
    };
    let pick = |key: &str| varz.get(key).cloned().unwrap_or(Value::Null);
    json!({
        "server_id": pick("server_id"),
        "server_name": pick("server_name"),
        "version": pick("version"),
        "go": pick("go"),
        "host": pick("host"),
        "port": pick("port"),
        "max_connections": pick("max_connections"),
        "connections": pick("connections"),
        "total_connections": pick("total_connections"),
        "routes": pick("routes"),
        "remotes": pick("remotes"),
        "in_msgs": pick("in_msgs"),
        "out_msgs": pick("out_msgs"),
        "in_bytes": pick("in_bytes"),
        "out_bytes": pick("out_bytes"),
        "slow_consumers": pick("slow_consumers"),
        "mem": pick("mem"),
        "cpu": pick("cpu"),
        "uptime": pick("uptime"),
    })
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
