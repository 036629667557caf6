//! Every metric of the service, declared once, named `prism_<what>_<unit>[_total]`, with
//! help text and bounded labels only (route, stream, consumer, endpoint, method, status,
//! outcome) — never a subject or a payload.
//!
//! One [`Metrics`] value owns the one [`Registry`]; it is shared as `Arc<Metrics>` by the
//! `StatsActor` (which refreshes the derived NATS and stream gauges on a timer), the HTTP
//! middleware, the router (through cheap [`RouteMetrics`] handles) and the status
//! endpoints. The same counters feed `/metrics` and the `message_stats` / `statistics`
//! blocks of the status endpoints ([`Metrics::message_totals`]), so the two never disagree.
//!
//! Beside ours, [`Metrics::render`] writes the six series the Python `message-broker`
//! exported, under their old names and labels ([`COMPAT_FAMILIES`]): each is a copy of one
//! of our families from the same gather, never a count of its own.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::proto::MetricType;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use serde::Serialize;
use serde_json::Value;

use crate::collectors::CollectorsState;
use crate::nats::NatsState;

/// Content type of [`Metrics::render`]: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// The `source` label values of the message totals.
pub const SOURCES: [&str; 2] = ["api", "router"];

/// Processing time of one message by one route: 50 µs … 1 s.
const PROCESSING_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Age of exchange data when routed: 1 ms … 10 min.
const AGE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];

/// REST request latency: 0.5 ms … 10 s.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot register metric: {0}")]
    Register(#[from] prometheus::Error),
    #[error("cannot encode metrics: {0}")]
    Encode(#[source] prometheus::Error),
    #[error("encoded metrics are not utf-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// The registry and every metric in it; shared as `Arc<Metrics>`.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Messages the broker published (REST publish and router outputs), by source
    /// (`api`, `router`).
    pub messages_published: IntCounterVec,
    /// Messages the broker consumed from NATS (router inputs).
    pub messages_consumed: IntCounter,
    /// Publish and routing failures, by source.
    pub message_errors: IntCounterVec,
    /// Figures of the supervised server's `/varz`; absent from the exposition until a
    /// snapshot exists (never in external mode) so nobody mistakes "unknown" for zero.
    pub nats_server: ServerGauges,
    /// JetStream usage: `/jsz` when supervised, the account info API otherwise.
    pub jetstream: JetStreamGauges,
    /// Per-stream and per-durable-consumer gauges, refreshed by the `StatsActor`.
    pub streams: StreamGauges,
    /// The NATS cluster: peers seen, meta leader, and per stream its replication.
    pub cluster: ClusterGauges,
    /// REST requests by endpoint pattern, method and status, and their latency.
    pub http: HttpMetrics,
    /// Counted by the client's event callback: slow-consumer events it could not attribute
    /// to a route.
    pub nats_slow_consumer_events: IntCounter,
    /// Route table reloads by outcome (`ok`, `failed`).
    pub route_reloads: IntCounterVec,
    /// Version of the loaded route table (bumped by every successful reload).
    pub routes_version: IntGauge,
    /// Number of routes in the loaded table.
    pub routes_loaded: IntGauge,
    /// Refreshes of the derived gauges by outcome (`ok`, `failed`, `skipped`).
    pub stats_refreshes: IntCounterVec,
    /// Unix time of the last completed refresh.
    pub stats_last_refresh: Gauge,
    /// Collector heartbeats and the collectors heard from.
    pub collectors: CollectorMetrics,
    nats_live: NatsLive,
    routes: RouteFamilies,
    /// Route names with live series, so a reload can remove the series of deleted routes.
    known_routes: Arc<Mutex<HashSet<String>>>,
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let messages_published = IntCounterVec::new(
            Opts::new(
                "prism_messages_published_total",
                "Messages published by the broker, by source (api, router)",
            ),
            &["source"],
        )?;
        let messages_consumed = IntCounter::new(
            "prism_messages_consumed_total",
            "Messages the broker consumed from NATS",
        )?;
        let message_errors = IntCounterVec::new(
            Opts::new(
                "prism_message_errors_total",
                "Publish and routing failures, by source (api, router)",
            ),
            &["source"],
        )?;
        registry.register(Box::new(messages_published.clone()))?;
        registry.register(Box::new(messages_consumed.clone()))?;
        registry.register(Box::new(message_errors.clone()))?;
        for source in SOURCES {
            messages_published.with_label_values(&[source]);
            message_errors.with_label_values(&[source]);
        }

        let nats_live = NatsLive::new()?;
        registry.register(Box::new(nats_live.clone()))?;
        let nats_server = ServerGauges::new()?;
        registry.register(Box::new(nats_server.gate.clone()))?;
        let jetstream = JetStreamGauges::new()?;
        registry.register(Box::new(jetstream.gate.clone()))?;
        let streams = StreamGauges::new(&registry)?;
        let cluster = ClusterGauges::new(&registry)?;
        let http = HttpMetrics::new(&registry)?;
        let routes = RouteFamilies::new(&registry)?;

        let nats_slow_consumer_events = counter(
            &registry,
            "prism_nats_client_slow_consumer_events_total",
            "Slow-consumer events reported by the NATS client and not attributed to a route",
        )?;
        let route_reloads = counter_vec(
            &registry,
            "prism_route_reloads_total",
            "Route table reloads, by outcome (ok, failed)",
            &["outcome"],
        )?;
        for outcome in ["ok", "failed"] {
            route_reloads.with_label_values(&[outcome]);
        }
        let routes_version = gauge(
            &registry,
            "prism_routes_version",
            "Version of the loaded route table, bumped by every successful reload",
        )?;
        let routes_loaded = gauge(
            &registry,
            "prism_routes_loaded",
            "Routes in the loaded route table",
        )?;
        let stats_refreshes = counter_vec(
            &registry,
            "prism_stats_refreshes_total",
            "Refreshes of the derived NATS and stream gauges, by outcome (ok, failed, skipped: nats client not connected)",
            &["outcome"],
        )?;
        for outcome in ["ok", "failed", "skipped"] {
            stats_refreshes.with_label_values(&[outcome]);
        }
        let stats_last_refresh = Gauge::new(
            "prism_stats_last_refresh_timestamp_seconds",
            "Unix time of the last completed refresh of the derived gauges",
        )?;
        registry.register(Box::new(stats_last_refresh.clone()))?;
        let collectors = CollectorMetrics::new(&registry)?;

        Ok(Metrics {
            registry,
            messages_published,
            messages_consumed,
            message_errors,
            nats_server,
            jetstream,
            streams,
            cluster,
            http,
            nats_slow_consumer_events,
            route_reloads,
            routes_version,
            routes_loaded,
            stats_refreshes,
            stats_last_refresh,
            collectors,
            nats_live,
            routes,
            known_routes: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// `message_stats` of the status endpoints: published, consumed, errors — the sums of
    /// `prism_messages_published_total`, `prism_messages_consumed_total` and
    /// `prism_message_errors_total`.
    pub fn message_totals(&self) -> (u64, u64, u64) {
        let sum = |vec: &IntCounterVec| {
            SOURCES
                .iter()
                .map(|s| vec.with_label_values(&[*s]).get())
                .sum::<u64>()
        };
        (
            sum(&self.messages_published),
            self.messages_consumed.get(),
            sum(&self.message_errors),
        )
    }

    /// A message published through the REST API (`POST /api/v1/broker/publish`, batch
    /// entries one each).
    pub fn api_published(&self) {
        self.messages_published.with_label_values(&["api"]).inc();
    }

    /// A REST publish that failed.
    pub fn api_publish_failed(&self) {
        self.message_errors.with_label_values(&["api"]).inc();
    }

    /// Makes `prism_nats_server_up`, `prism_nats_client_connected`,
    /// `prism_nats_server_restarts_total`, `prism_nats_client_reconnects_total`, the crash
    /// figures (`prism_nats_server_recent_crashes`, `_crash_looping`,
    /// `_hang_restarts_total`) and `prism_nats_jetstream_answering` read `state` at every
    /// scrape (a few atomic loads and short locks), so `/metrics` and the status endpoints
    /// agree. Later calls are ignored.
    pub fn bind_nats(&self, state: Arc<NatsState>) {
        let _ = self.nats_live.state.set(state);
    }

    /// Makes `prism_nats_client_connected` (and `marketprism_broker_connected`) also read
    /// the shared client's own connection state at every scrape: the state's flag follows
    /// the client's events, which arrive a moment after the connection is lost, and the
    /// metric must read 0 whenever the client is not connected. Later calls are ignored.
    pub fn bind_client(&self, client: async_nats::Client) {
        let _ = self.nats_live.client.set(client);
    }

    /// Makes the collector gauges read `state` at every scrape. Later calls are ignored.
    pub fn bind_collectors(&self, state: Arc<CollectorsState>) {
        let _ = self.collectors.live.state.set(state);
    }

    /// The whole registry in the Prometheus text format ([`CONTENT_TYPE`]), followed by
    /// the compatibility families ([`COMPAT_FAMILIES`]) copied from the same gather.
    pub fn render(&self) -> Result<String, MetricsError> {
        let families = self.registry.gather();
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut buffer)
            .map_err(MetricsError::Encode)?;
        let mut text = String::from_utf8(buffer)?;
        render_compat(&families, &mut text);
        Ok(text)
    }

    /// A handle on one route's series, resolved once: keep it beside the compiled route and
    /// count through it on the hot path (atomic increments, no label lookups, no locks).
    pub fn route(&self, name: &str) -> RouteMetrics {
        if let Ok(mut known) = self.known_routes.lock() {
            known.insert(name.to_string());
        }
        let f = &self.routes;
        let label = &[name];
        RouteMetrics {
            matched: f.matched.with_label_values(label),
            passed: f.passed.with_label_values(label),
            filtered: f.filtered.with_label_values(label),
            published: f.published.with_label_values(label),
            errored: f.errored.with_label_values(label),
            dead_lettered: f.dead_lettered.with_label_values(label),
            dropped: f.dropped.with_label_values(label),
            passed_through: f.passed_through.with_label_values(label),
            retried: f.retried.with_label_values(label),
            task_restarts: f.task_restarts.with_label_values(label),
            switch_overlap: f.switch_overlap.with_label_values(label),
            processing: f.processing.with_label_values(label),
            age: f.age.with_label_values(label),
            consumed_total: self.messages_consumed.clone(),
            published_total: self.messages_published.with_label_values(&["router"]),
            errors_total: self.message_errors.with_label_values(&["router"]),
            state: f.state.resolve(name),
        }
    }

    /// Removes the series of every route not in `names` (call after a reload). Handles of
    /// removed routes keep counting into detached series that are no longer exported.
    pub fn retain_routes<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let keep: HashSet<&str> = names.into_iter().collect();
        let Ok(mut known) = self.known_routes.lock() else {
            return;
        };
        let gone: Vec<String> = known
            .iter()
            .filter(|name| !keep.contains(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.routes.remove(&name);
            known.remove(&name);
        }
    }

    /// A successful reload: counts it and publishes the new table's version and size.
    pub fn reload_succeeded(&self, version: u64, routes: usize) {
        self.route_reloads.with_label_values(&["ok"]).inc();
        self.routes_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.routes_loaded
            .set(i64::try_from(routes).unwrap_or(i64::MAX));
    }

    /// A rejected reload: the old table stays loaded.
    pub fn reload_failed(&self) {
        self.route_reloads.with_label_values(&["failed"]).inc();
    }

    /// For the NATS client's event callback: a slow-consumer event not tied to a route.
    pub fn nats_slow_consumer(&self) {
        self.nats_slow_consumer_events.inc();
    }
}

/// One route's series, resolved once. Cloning is cheap (a few `Arc`s); every method is a
/// lock-free atomic update.
///
/// Meaning of the counters, per message delivered to the route:
/// `matched` = `passed` + `filtered`; an error counts `errored` and then one of
/// `dead_lettered`, `dropped` or `passed_through` (the route's `on_error`);
/// `published` counts every output published (a fan-out to two subjects counts two).
#[derive(Clone)]
pub struct RouteMetrics {
    matched: IntCounter,
    passed: IntCounter,
    filtered: IntCounter,
    published: IntCounter,
    errored: IntCounter,
    dead_lettered: IntCounter,
    dropped: IntCounter,
    passed_through: IntCounter,
    retried: IntCounter,
    task_restarts: IntCounter,
    switch_overlap: IntCounter,
    processing: Histogram,
    age: Histogram,
    consumed_total: IntCounter,
    published_total: IntCounter,
    errors_total: IntCounter,
    /// The stateful steps' figures.
    pub state: StateMetrics,
}

/// One route's stateful-step series: keys held, evictions, and what the steps did.
#[derive(Clone)]
pub struct StateMetrics {
    pub keys: IntGauge,
    pub evictions: IntCounter,
    pub deduplicated: IntCounter,
    pub conflated: IntCounter,
    pub late: IntCounter,
    pub gaps: IntCounter,
}

/// The stateful-step families, labelled by route.
#[derive(Clone)]
struct StateFamilies {
    keys: IntGaugeVec,
    evictions: IntCounterVec,
    deduplicated: IntCounterVec,
    conflated: IntCounterVec,
    late: IntCounterVec,
    gaps: IntCounterVec,
}

impl StateFamilies {
    fn new(registry: &Registry) -> Result<StateFamilies, MetricsError> {
        let c = |name: &str, help: &str| counter_vec(registry, name, help, &["route"]);
        Ok(StateFamilies {
            keys: gauge_vec(
                registry,
                "prism_route_state_keys",
                "Keys held by a route's stateful steps (dedupe, throttle, window, sequence_check), by route",
                &["route"],
            )?,
            evictions: c(
                "prism_route_state_evictions_total",
                "Keys a stateful step forgot because it reached its max_keys, by route",
            )?,
            deduplicated: c(
                "prism_route_state_deduplicated_total",
                "Messages dropped as repeats (dedupe, sequence_check duplicates or old), by route",
            )?,
            conflated: c(
                "prism_route_state_conflated_total",
                "Messages a throttle dropped or replaced by a later one, by route",
            )?,
            late: c(
                "prism_route_state_late_total",
                "Messages that came after their window closed, by route",
            )?,
            gaps: c(
                "prism_route_state_gaps_total",
                "Sequence gaps found by sequence_check, by route",
            )?,
        })
    }

    fn resolve(&self, route: &str) -> StateMetrics {
        let label = &[route];
        StateMetrics {
            keys: self.keys.with_label_values(label),
            evictions: self.evictions.with_label_values(label),
            deduplicated: self.deduplicated.with_label_values(label),
            conflated: self.conflated.with_label_values(label),
            late: self.late.with_label_values(label),
            gaps: self.gaps.with_label_values(label),
        }
    }

    fn remove(&self, route: &str) {
        let label = &[route];
        let _ = self.keys.remove_label_values(label);
        for vec in [
            &self.evictions,
            &self.deduplicated,
            &self.conflated,
            &self.late,
            &self.gaps,
        ] {
            let _ = vec.remove_label_values(label);
        }
    }
}

/// A route's counters as `/api/v1/routes` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RouteCounts {
    pub matched: u64,
    pub passed: u64,
    pub filtered: u64,
    pub published: u64,
    pub errored: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
    pub passed_through: u64,
    pub retried: u64,
    pub task_restarts: u64,
    pub switch_overlap: u64,
}

impl RouteMetrics {
    /// A message delivered to the route (matched its `from`); also counts
    /// `prism_messages_consumed_total`.
    pub fn matched(&self) {
        self.matched.inc();
        self.consumed_total.inc();
    }

    /// The message passed the route's `when` conditions.
    pub fn passed(&self) {
        self.passed.inc();
    }

    /// The message was filtered out by the route's `when` conditions.
    pub fn filtered(&self) {
        self.filtered.inc();
    }

    /// One output was published; also counts `prism_messages_published_total{source="router"}`.
    pub fn published(&self) {
        self.published.inc();
        self.published_total.inc();
    }

    /// Transforming or publishing failed; also counts
    /// `prism_message_errors_total{source="router"}`.
    pub fn errored(&self) {
        self.errored.inc();
        self.errors_total.inc();
    }

    /// The failed message went to the dead-letter subject.
    pub fn dead_lettered(&self) {
        self.dead_lettered.inc();
    }

    /// The failed message was dropped (`on_error: drop`).
    pub fn dropped(&self) {
        self.dropped.inc();
    }

    /// The failed message was published unchanged (`on_error: pass_through`).
    pub fn passed_through(&self) {
        self.passed_through.inc();
    }

    /// An output that failed transiently was sent again.
    pub fn retried(&self) {
        self.retried.inc();
    }

    /// The route's task ended unexpectedly (a panic) and was started again.
    pub fn task_restarted(&self) {
        self.task_restarts.inc();
    }

    /// A message handled by a route's previous task after its replacement (a reload that
    /// changed the source) was live: it may have been handled twice.
    pub fn switch_overlap(&self) {
        self.switch_overlap.inc();
    }

    /// Time spent routing one message (match to last publish).
    pub fn observe_processing(&self, elapsed: Duration) {
        self.processing.observe(elapsed.as_secs_f64());
    }

    /// Age of the message at routing time from its `age_from` field, both in epoch
    /// milliseconds; a timestamp in the future (clock skew) counts as age zero.
    pub fn observe_age_ms(&self, event_ts_ms: i64, now_ms: i64) {
        let age_ms = now_ms.saturating_sub(event_ts_ms).max(0);
        self.age.observe(age_ms as f64 / 1000.0);
    }

    /// The route's counters now.
    pub fn counts(&self) -> RouteCounts {
        RouteCounts {
            matched: self.matched.get(),
            passed: self.passed.get(),
            filtered: self.filtered.get(),
            published: self.published.get(),
            errored: self.errored.get(),
            dead_lettered: self.dead_lettered.get(),
            dropped: self.dropped.get(),
            passed_through: self.passed_through.get(),
            retried: self.retried.get(),
            task_restarts: self.task_restarts.get(),
            switch_overlap: self.switch_overlap.get(),
        }
    }

    /// Observations of the message-age histogram so far.
    pub fn age_samples(&self) -> u64 {
        self.age.get_sample_count()
    }

    /// Observations of the processing histogram so far.
    pub fn processing_samples(&self) -> u64 {
        self.processing.get_sample_count()
    }
}

/// The per-route families; [`Metrics::route`] resolves them into a [`RouteMetrics`].
#[derive(Clone)]
struct RouteFamilies {
    matched: IntCounterVec,
    passed: IntCounterVec,
    filtered: IntCounterVec,
    published: IntCounterVec,
    errored: IntCounterVec,
    dead_lettered: IntCounterVec,
    dropped: IntCounterVec,
    passed_through: IntCounterVec,
    retried: IntCounterVec,
    task_restarts: IntCounterVec,
    switch_overlap: IntCounterVec,
    processing: HistogramVec,
    age: HistogramVec,
    state: StateFamilies,
}

impl RouteFamilies {
    fn new(registry: &Registry) -> Result<RouteFamilies, MetricsError> {
        let c = |name: &str, help: &str| counter_vec(registry, name, help, &["route"]);
        let processing = HistogramVec::new(
            HistogramOpts::new(
                "prism_route_processing_duration_seconds",
                "Time to route one message (match, filter, transform, publish), by route",
            )
            .buckets(PROCESSING_BUCKETS.to_vec()),
            &["route"],
        )?;
        registry.register(Box::new(processing.clone()))?;
        let age = HistogramVec::new(
            HistogramOpts::new(
                "prism_route_message_age_seconds",
                "Routing time minus the message's timestamp field (age_from), by route",
            )
            .buckets(AGE_BUCKETS.to_vec()),
            &["route"],
        )?;
        registry.register(Box::new(age.clone()))?;
        Ok(RouteFamilies {
            matched: c(
                "prism_route_messages_matched_total",
                "Messages delivered to a route (matched its from pattern), by route",
            )?,
            passed: c(
                "prism_route_messages_passed_total",
                "Messages that passed a route's conditions, by route",
            )?,
            filtered: c(
                "prism_route_messages_filtered_total",
                "Messages filtered out by a route's conditions, by route",
            )?,
            published: c(
                "prism_route_messages_published_total",
                "Outputs published by a route (fan-out counts each output), by route",
            )?,
            errored: c(
                "prism_route_messages_errored_total",
                "Messages a route failed to transform or publish, by route",
            )?,
            dead_lettered: c(
                "prism_route_messages_dead_lettered_total",
                "Failed messages sent to the dead-letter subject, by route",
            )?,
            dropped: c(
                "prism_route_messages_dropped_total",
                "Failed messages dropped (on_error: drop), by route",
            )?,
            passed_through: c(
                "prism_route_messages_passed_through_total",
                "Failed messages published unchanged (on_error: pass_through), by route",
            )?,
            retried: c(
                "prism_route_output_retries_total",
                "Outputs sent again after a transient failure (no responders, no ack, no room), by route",
            )?,
            task_restarts: c(
                "prism_route_task_restarts_total",
                "Route tasks started again after ending unexpectedly (a panic), by route",
            )?,
            switch_overlap: c(
                "prism_route_switch_overlap_total",
                "Messages handled by a route's previous task after a reload's new one was live (possible duplicates), by route",
            )?,
            processing,
            age,
            state: StateFamilies::new(registry)?,
        })
    }

    fn remove(&self, route: &str) {
        self.state.remove(route);
        let label = &[route];
        for vec in [
            &self.matched,
            &self.passed,
            &self.filtered,
            &self.published,
            &self.errored,
            &self.dead_lettered,
            &self.dropped,
            &self.passed_through,
            &self.retried,
            &self.task_restarts,
            &self.switch_overlap,
        ] {
            let _ = vec.remove_label_values(label);
        }
        let _ = self.processing.remove_label_values(label);
        let _ = self.age.remove_label_values(label);
    }
}

/// `/varz` figures of the supervised server.
#[derive(Clone)]
pub struct ServerGauges {
    pub connections: IntGauge,
    pub in_msgs: IntGauge,
    pub out_msgs: IntGauge,
    pub in_bytes: IntGauge,
    pub out_bytes: IntGauge,
    pub slow_consumers: IntGauge,
    pub memory_bytes: IntGauge,
    gate: Gated,
}

impl ServerGauges {
    fn new() -> Result<ServerGauges, MetricsError> {
        let g = |name: &str, help: &str| IntGauge::new(name, help);
        let connections = g(
            "prism_nats_server_connections",
            "Client connections of the supervised nats-server (varz)",
        )?;
        let in_msgs = g(
            "prism_nats_server_in_messages",
            "Messages received by the supervised nats-server since it started (varz)",
        )?;
        let out_msgs = g(
            "prism_nats_server_out_messages",
            "Messages sent by the supervised nats-server since it started (varz)",
        )?;
        let in_bytes = g(
            "prism_nats_server_in_bytes",
            "Bytes received by the supervised nats-server since it started (varz)",
        )?;
        let out_bytes = g(
            "prism_nats_server_out_bytes",
            "Bytes sent by the supervised nats-server since it started (varz)",
        )?;
        let slow_consumers = g(
            "prism_nats_server_slow_consumers",
            "Slow consumers seen by the supervised nats-server since it started (varz)",
        )?;
        let memory_bytes = g(
            "prism_nats_server_memory_bytes",
            "Resident memory of the supervised nats-server process (varz)",
        )?;
        let gate = Gated::new(vec![
            connections.clone(),
            in_msgs.clone(),
            out_msgs.clone(),
            in_bytes.clone(),
            out_bytes.clone(),
            slow_consumers.clone(),
            memory_bytes.clone(),
        ]);
        Ok(ServerGauges {
            connections,
            in_msgs,
            out_msgs,
            in_bytes,
            out_bytes,
            slow_consumers,
            memory_bytes,
            gate,
        })
    }

    /// Sets the gauges from a `/varz` body and exports them.
    pub fn apply_varz(&self, varz: &Value) {
        for (gauge, key) in [
            (&self.connections, "connections"),
            (&self.in_msgs, "in_msgs"),
            (&self.out_msgs, "out_msgs"),
            (&self.in_bytes, "in_bytes"),
            (&self.out_bytes, "out_bytes"),
            (&self.slow_consumers, "slow_consumers"),
            (&self.memory_bytes, "mem"),
        ] {
            if let Some(value) = varz.get(key).and_then(as_i64) {
                gauge.set(value);
            }
        }
        self.gate.open(true);
    }

    /// Stops exporting the gauges (no fresh figures: server down or external mode).
    pub fn hide(&self) {
        self.gate.open(false);
    }

    pub fn exported(&self) -> bool {
        self.gate.is_open()
    }
}

/// JetStream usage of the server (supervised, `/jsz`) or of our account (external).
#[derive(Clone)]
pub struct JetStreamGauges {
    pub memory_bytes: IntGauge,
    pub storage_bytes: IntGauge,
    pub streams: IntGauge,
    pub consumers: IntGauge,
    gate: Gated,
}

/// JetStream usage figures, from `/jsz` or the account info API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JetStreamUsage {
    pub memory: u64,
    pub storage: u64,
    pub streams: u64,
    pub consumers: u64,
}

impl JetStreamUsage {
    /// The figures of a `/jsz` body; `None` when it has none (JetStream off).
    pub fn from_jsz(jsz: &Value) -> Option<JetStreamUsage> {
        let field = |key: &str| jsz.get(key).and_then(Value::as_u64);
        Some(JetStreamUsage {
            memory: field("memory")?,
            storage: field("storage")?,
            streams: field("streams").unwrap_or(0),
            consumers: field("consumers").unwrap_or(0),
        })
    }
}

impl JetStreamGauges {
    fn new() -> Result<JetStreamGauges, MetricsError> {
        let memory_bytes = IntGauge::new(
            "prism_nats_jetstream_memory_bytes",
            "JetStream memory storage in use (jsz when supervised, account info otherwise)",
        )?;
        let storage_bytes = IntGauge::new(
            "prism_nats_jetstream_storage_bytes",
            "JetStream file storage in use (jsz when supervised, account info otherwise)",
        )?;
        let streams = IntGauge::new("prism_nats_jetstream_streams", "JetStream streams")?;
        let consumers = IntGauge::new("prism_nats_jetstream_consumers", "JetStream consumers")?;
        let gate = Gated::new(vec![
            memory_bytes.clone(),
            storage_bytes.clone(),
            streams.clone(),
            consumers.clone(),
        ]);
        Ok(JetStreamGauges {
            memory_bytes,
            storage_bytes,
            streams,
            consumers,
            gate,
        })
    }

    /// Sets the gauges and exports them.
    pub fn apply(&self, usage: JetStreamUsage) {
        self.memory_bytes.set(saturating_i64(usage.memory));
        self.storage_bytes.set(saturating_i64(usage.storage));
        self.streams.set(saturating_i64(usage.streams));
        self.consumers.set(saturating_i64(usage.consumers));
        self.gate.open(true);
    }

    /// Stops exporting the gauges (no fresh figures).
    pub fn hide(&self) {
        self.gate.open(false);
    }

    pub fn exported(&self) -> bool {
        self.gate.is_open()
    }
}

/// Per-stream and per-durable-consumer gauges. The `StatsActor` sets them and removes the
/// series of streams and consumers that disappeared.
#[derive(Clone)]
pub struct StreamGauges {
    pub messages: IntGaugeVec,
    pub bytes: IntGaugeVec,
    pub consumers: IntGaugeVec,
    pub consumer_pending: IntGaugeVec,
    pub consumer_ack_pending: IntGaugeVec,
}

impl StreamGauges {
    fn new(registry: &Registry) -> Result<StreamGauges, MetricsError> {
        Ok(StreamGauges {
            messages: gauge_vec(
                registry,
                "prism_stream_messages",
                "Messages stored in a JetStream stream, by stream",
                &["stream"],
            )?,
            bytes: gauge_vec(
                registry,
                "prism_stream_bytes",
                "Bytes stored in a JetStream stream, by stream",
                &["stream"],
            )?,
            consumers: gauge_vec(
                registry,
                "prism_stream_consumers",
                "Consumers of a JetStream stream, by stream",
                &["stream"],
            )?,
            consumer_pending: gauge_vec(
                registry,
                "prism_consumer_pending_messages",
                "Messages not yet delivered to a durable consumer, by stream and consumer",
                &["stream", "consumer"],
            )?,
            consumer_ack_pending: gauge_vec(
                registry,
                "prism_consumer_ack_pending_messages",
                "Messages delivered to a durable consumer and not yet acknowledged, by stream and consumer",
                &["stream", "consumer"],
            )?,
        })
    }

    pub fn set_stream(&self, stream: &str, messages: u64, bytes: u64, consumers: u64) {
        let label = &[stream];
        self.messages
            .with_label_values(label)
            .set(saturating_i64(messages));
        self.bytes
            .with_label_values(label)
            .set(saturating_i64(bytes));
        self.consumers
            .with_label_values(label)
            .set(saturating_i64(consumers));
    }

    pub fn remove_stream(&self, stream: &str) {
        let label = &[stream];
        let _ = self.messages.remove_label_values(label);
        let _ = self.bytes.remove_label_values(label);
        let _ = self.consumers.remove_label_values(label);
    }

    pub fn set_consumer(&self, stream: &str, consumer: &str, pending: u64, ack_pending: u64) {
        let labels = &[stream, consumer];
        self.consumer_pending
            .with_label_values(labels)
            .set(saturating_i64(pending));
        self.consumer_ack_pending
            .with_label_values(labels)
            .set(saturating_i64(ack_pending));
    }

    pub fn remove_consumer(&self, stream: &str, consumer: &str) {
        let labels = &[stream, consumer];
        let _ = self.consumer_pending.remove_label_values(labels);
        let _ = self.consumer_ack_pending.remove_label_values(labels);
    }
}

/// The NATS cluster as the `StatsActor` last read it. The node gauges are exported only
/// while the server is clustered; the per-stream ones for every stream read (a single
/// server is its streams' only replica and leader).
#[derive(Clone)]
pub struct ClusterGauges {
    /// Distinct servers this node has a route to.
    pub peers: IntGauge,
    /// 1 while the JetStream meta group has a leader.
    pub meta_leader: IntGauge,
    pub replicas: IntGaugeVec,
    pub replicas_current: IntGaugeVec,
    pub replica_lag: IntGaugeVec,
    pub has_leader: IntGaugeVec,
    gate: Gated,
}

impl ClusterGauges {
    fn new(registry: &Registry) -> Result<ClusterGauges, MetricsError> {
        let peers = IntGauge::new(
            "prism_cluster_peers",
            "Distinct NATS servers this node has a cluster route to (routez)",
        )?;
        let meta_leader = IntGauge::new(
            "prism_cluster_meta_leader",
            "1 while the JetStream meta group has a leader (jsz meta_cluster)",
        )?;
        let gate = Gated::new(vec![peers.clone(), meta_leader.clone()]);
        registry.register(Box::new(gate.clone()))?;
        let vec = |name: &str, help: &str| gauge_vec(registry, name, help, &["stream"]);
        Ok(ClusterGauges {
            peers,
            meta_leader,
            replicas: vec(
                "prism_stream_replicas",
                "Configured replicas of a JetStream stream, by stream",
            )?,
            replicas_current: vec(
                "prism_stream_replicas_current",
                "Replicas of a stream up to date with its leader (the leader included), by stream",
            )?,
            replica_lag: vec(
                "prism_stream_replica_lag",
                "Operations the furthest-behind replica of a stream lags its leader, by stream",
            )?,
            has_leader: vec(
                "prism_stream_has_leader",
                "1 while a stream has a leader, by stream",
            )?,
            gate,
        })
    }

    /// Sets (and exports) the node gauges, or hides them when the server is not clustered.
    pub fn set_node(&self, clustered: bool, peers: usize, meta_leader: bool) {
        self.peers.set(i64::try_from(peers).unwrap_or(i64::MAX));
        self.meta_leader.set(i64::from(meta_leader));
        self.gate.open(clustered);
    }

    /// Stops exporting the node gauges (no fresh figures).
    pub fn hide_node(&self) {
        self.gate.open(false);
    }

    pub fn node_exported(&self) -> bool {
        self.gate.is_open()
    }

    pub fn set_stream(
        &self,
        stream: &str,
        replicas: usize,
        current: usize,
        max_lag: u64,
        has_leader: bool,
    ) {
        let label = &[stream];
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.replicas.with_label_values(label).set(count(replicas));
        self.replicas_current
            .with_label_values(label)
            .set(count(current));
        self.replica_lag
            .with_label_values(label)
            .set(saturating_i64(max_lag));
        self.has_leader
            .with_label_values(label)
            .set(i64::from(has_leader));
    }

    pub fn remove_stream(&self, stream: &str) {
        let label = &[stream];
        for vec in [
            &self.replicas,
            &self.replicas_current,
            &self.replica_lag,
            &self.has_leader,
        ] {
            let _ = vec.remove_label_values(label);
        }
    }
}

/// REST requests by endpoint pattern (`unmatched` when no route matched), method and
/// status, and their latency by endpoint and method.
#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
}

/// `endpoint` label of requests that matched no route.
pub const UNMATCHED_ENDPOINT: &str = "unmatched";

impl HttpMetrics {
    fn new(registry: &Registry) -> Result<HttpMetrics, MetricsError> {
        let requests = counter_vec(
            registry,
            "prism_http_requests_total",
            "REST requests, by endpoint (route pattern or unmatched), method and status",
            &["endpoint", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "prism_http_request_duration_seconds",
                "REST request latency until the response head, by endpoint and method",
            )
            .buckets(HTTP_BUCKETS.to_vec()),
            &["endpoint", "method"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        Ok(HttpMetrics { requests, duration })
    }

    /// Counts one request. `endpoint` must be a route pattern or [`UNMATCHED_ENDPOINT`],
    /// `method` one of [`bounded_method`]'s values.
    pub fn observe(&self, endpoint: &str, method: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        self.requests
            .with_label_values(&[endpoint, method, status.as_str()])
            .inc();
        self.duration
            .with_label_values(&[endpoint, method])
            .observe(elapsed.as_secs_f64());
    }
}

/// The `method` label: the standard methods as they are, anything else `OTHER`, so a
/// client cannot grow the label set.
pub fn bounded_method(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

/// Gauges exported only while `open`: absent series mean "unknown", not zero.
#[derive(Clone)]
struct Gated {
    open: Arc<AtomicBool>,
    gauges: Vec<IntGauge>,
}

impl Gated {
    fn new(gauges: Vec<IntGauge>) -> Gated {
        Gated {
            open: Arc::new(AtomicBool::new(false)),
            gauges,
        }
    }

    fn open(&self, open: bool) {
        self.open.store(open, Ordering::Release);
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

impl Collector for Gated {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges.iter().flat_map(|g| g.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if !self.is_open() {
            return Vec::new();
        }
        self.gauges.iter().flat_map(|g| g.collect()).collect()
    }
}

/// NATS liveness read from [`NatsState`] at scrape time (atomic loads only).
#[derive(Clone)]
struct NatsLive {
    state: Arc<OnceLock<Arc<NatsState>>>,
    client: Arc<OnceLock<async_nats::Client>>,
    up: IntGauge,
    connected: IntGauge,
    restarts: IntCounter,
    reconnects: IntCounter,
    recent_crashes: IntGauge,
    crash_looping: IntGauge,
    hang_restarts: IntCounter,
    jetstream_answering: IntGauge,
    /// Serializes scrapes so two concurrent ones never both add the same delta.
    sync: Arc<Mutex<()>>,
}

impl NatsLive {
    fn new() -> Result<NatsLive, MetricsError> {
        Ok(NatsLive {
            state: Arc::new(OnceLock::new()),
            client: Arc::new(OnceLock::new()),
            up: IntGauge::new(
                "prism_nats_server_up",
                "1 when the NATS server is usable: the supervised child is running, or (external mode) the client is connected",
            )?,
            connected: IntGauge::new(
                "prism_nats_client_connected",
                "1 when the broker's NATS client is connected",
            )?,
            restarts: IntCounter::new(
                "prism_nats_server_restarts_total",
                "Restarts of the supervised nats-server child",
            )?,
            reconnects: IntCounter::new(
                "prism_nats_client_reconnects_total",
                "Reconnects of the broker's NATS client (the first connection is not counted)",
            )?,
            recent_crashes: IntGauge::new(
                "prism_nats_server_recent_crashes",
                "Crashes of the supervised nats-server (unexpected exits and hang restarts) within nats.restart.crash_window",
            )?,
            crash_looping: IntGauge::new(
                "prism_nats_server_crash_looping",
                "1 while the supervised nats-server crashed at least nats.restart.crash_loop_after times within the crash window",
            )?,
            hang_restarts: IntCounter::new(
                "prism_nats_server_hang_restarts_total",
                "Restarts of a supervised nats-server whose JetStream stopped answering for nats.hang_timeout",
            )?,
            jetstream_answering: IntGauge::new(
                "prism_nats_jetstream_answering",
                "1 while the supervised nats-server's JetStream answers the supervisor's probe (/jsz); supervised mode only",
            )?,
            sync: Arc::new(Mutex::new(())),
        })
    }
}

/// Raises `counter` to `value` (both only grow).
fn catch_up(counter: &IntCounter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

impl Collector for NatsLive {
    fn desc(&self) -> Vec<&Desc> {
        [
            self.up.desc(),
            self.connected.desc(),
            self.restarts.desc(),
            self.reconnects.desc(),
            self.recent_crashes.desc(),
            self.crash_looping.desc(),
            self.hang_restarts.desc(),
            self.jetstream_answering.desc(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _guard = self.sync.lock();
        if let Some(state) = self.state.get() {
            let connected = state.client_connected()
                && self.client.get().is_none_or(|c| {
                    c.connection_state() == async_nats::connection::State::Connected
                });
            let up = if state.supervised {
                state.server_up()
            } else {
                connected
            };
            self.up.set(i64::from(up));
            self.connected.set(i64::from(connected));
            catch_up(&self.restarts, state.restarts());
            catch_up(&self.reconnects, state.client_reconnects());
            let recent = state.recent_crashes();
            self.recent_crashes
                .set(i64::try_from(recent).unwrap_or(i64::MAX));
            self.crash_looping.set(i64::from(
                recent >= state.crash_policy().loop_after as usize,
            ));
            catch_up(&self.hang_restarts, state.hang_restarts());
            let answering = state.server_up() && state.jetstream_silence().is_none();
            self.jetstream_answering.set(i64::from(answering));
        }
        let supervised = self.state.get().is_some_and(|s| s.supervised);
        let mut families: Vec<MetricFamily> = [
            self.up.collect(),
            self.connected.collect(),
            self.restarts.collect(),
            self.reconnects.collect(),
            self.recent_crashes.collect(),
            self.crash_looping.collect(),
            self.hang_restarts.collect(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if supervised {
            families.extend(self.jetstream_answering.collect());
        }
        families
    }
}

/// The `outcome` label values of `prism_collector_heartbeats_total`.
pub const HEARTBEAT_OUTCOMES: [&str; 3] = ["accepted", "malformed", "rejected"];

/// Collector heartbeats: counters bumped by the heartbeat task, and gauges read from the
/// collectors' view at every scrape ([`Metrics::bind_collectors`]).
#[derive(Clone)]
pub struct CollectorMetrics {
    heartbeats: IntCounterVec,
    subscription_losses: IntCounter,
    task_restarts: IntCounter,
    live: CollectorsLive,
}

impl CollectorMetrics {
    fn new(registry: &Registry) -> Result<CollectorMetrics, MetricsError> {
        let heartbeats = counter_vec(
            registry,
            "prism_collector_heartbeats_total",
            "Collector heartbeats received, by outcome (accepted, malformed, rejected: collectors.max_instances reached)",
            &["outcome"],
        )?;
        for outcome in HEARTBEAT_OUTCOMES {
            heartbeats.with_label_values(&[outcome]);
        }
        let live = CollectorsLive {
            state: Arc::new(OnceLock::new()),
            active: IntGauge::new(
                "prism_collectors_active",
                "Collectors whose latest heartbeat is younger than collectors.stale_after",
            )?,
            stale: IntGauge::new(
                "prism_collectors_stale",
                "Collectors tracked whose latest heartbeat is older than collectors.stale_after (forgotten after collectors.ttl)",
            )?,
            age: GaugeVec::new(
                Opts::new(
                    "prism_collector_heartbeat_age_seconds",
                    "Seconds since the latest heartbeat of a tracked collector, by collector (instance; at most collectors.max_instances)",
                ),
                &["collector"],
            )?,
            sync: Arc::new(Mutex::new(())),
        };
        registry.register(Box::new(live.clone()))?;
        Ok(CollectorMetrics {
            heartbeats,
            subscription_losses: counter(
                registry,
                "prism_collector_subscription_losses_total",
                "Times the collector heartbeat subscription ended and was made again",
            )?,
            task_restarts: counter(
                registry,
                "prism_collector_task_restarts_total",
                "Times the collector heartbeat task ended unexpectedly (a panic) and was started again",
            )?,
            live,
        })
    }

    /// One heartbeat with its outcome, one of [`HEARTBEAT_OUTCOMES`].
    pub fn heartbeat(&self, outcome: &str) {
        self.heartbeats.with_label_values(&[outcome]).inc();
    }

    /// Heartbeats counted with `outcome` so far.
    pub fn heartbeats(&self, outcome: &str) -> u64 {
        self.heartbeats.with_label_values(&[outcome]).get()
    }

    pub fn subscription_lost(&self) {
        self.subscription_losses.inc();
    }

    pub fn task_restarted(&self) {
        self.task_restarts.inc();
    }
}

/// The collector gauges, read from [`CollectorsState`] at scrape time.
#[derive(Clone)]
struct CollectorsLive {
    state: Arc<OnceLock<Arc<CollectorsState>>>,
    active: IntGauge,
    stale: IntGauge,
    age: GaugeVec,
    /// Serializes scrapes: the age series are rebuilt on each.
    sync: Arc<Mutex<()>>,
}

impl Collector for CollectorsLive {
    fn desc(&self) -> Vec<&Desc> {
        [self.active.desc(), self.stale.desc(), self.age.desc()]
            .into_iter()
            .flatten()
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _guard = self.sync.lock();
        self.age.reset();
        let (mut active, mut stale) = (0, 0);
        if let Some(state) = self.state.get() {
            let report = state.report(std::time::Instant::now());
            for (name, age, is_stale) in report.ages() {
                self.age.with_label_values(&[name]).set(age);
                if is_stale {
                    stale += 1;
                } else {
                    active += 1;
                }
            }
        }
        self.active.set(active);
        self.stale.set(stale);
        [
            self.active.collect(),
            self.stale.collect(),
            self.age.collect(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// One family the Python `message-broker` exported: the samples of our family `source`
/// under the old `name` (and `label` renamed), typed as it was.
pub struct CompatFamily {
    pub name: &'static str,
    /// `gauge`, or `untyped` for the two whose names end in `_total` but are levels (the
    /// Python service wrote no TYPE line; `untyped` says the same and keeps linters quiet).
    pub kind: &'static str,
    pub help: &'static str,
    pub source: &'static str,
    /// `(our label, its old name)`.
    pub label: Option<(&'static str, &'static str)>,
}

/// The compatibility families, in exposition order. The deployment's alert `BrokerDown`
/// reads the first one.
pub const COMPAT_FAMILIES: [CompatFamily; 6] = [
    CompatFamily {
        name: "marketprism_broker_connected",
        kind: "gauge",
        help: "1 when the broker's NATS client is connected (prism_nats_client_connected under the name of the Python message-broker)",
        source: "prism_nats_client_connected",
        label: None,
    },
    CompatFamily {
        name: "marketprism_broker_stream_messages_total",
        kind: "untyped",
        help: "Messages stored in a JetStream stream, by stream (prism_stream_messages under the name of the Python message-broker)",
        source: "prism_stream_messages",
        label: None,
    },
    CompatFamily {
        name: "marketprism_broker_stream_bytes_total",
        kind: "untyped",
        help: "Bytes stored in a JetStream stream, by stream (prism_stream_bytes under the name of the Python message-broker)",
        source: "prism_stream_bytes",
        label: None,
    },
    CompatFamily {
        name: "marketprism_broker_stream_consumers",
        kind: "gauge",
        help: "Consumers of a JetStream stream, by stream (prism_stream_consumers under the name of the Python message-broker)",
        source: "prism_stream_consumers",
        label: None,
    },
    CompatFamily {
        name: "marketprism_broker_collectors_active",
        kind: "gauge",
        help: "Collectors whose latest heartbeat is younger than collectors.stale_after (prism_collectors_active under the name of the Python message-broker)",
        source: "prism_collectors_active",
        label: None,
    },
    CompatFamily {
        name: "marketprism_broker_collector_last_heartbeat_age_seconds",
        kind: "gauge",
        help: "Seconds since the latest heartbeat of a tracked collector, by instance (prism_collector_heartbeat_age_seconds under the name of the Python message-broker)",
        source: "prism_collector_heartbeat_age_seconds",
        label: Some(("collector", "instance")),
    },
];

/// Appends [`COMPAT_FAMILIES`] to `out`, copied from `families` (one gather); a family
/// with no samples is left out, as ours are.
fn render_compat(families: &[MetricFamily], out: &mut String) {
    use std::fmt::Write;
    for compat in &COMPAT_FAMILIES {
        let Some(family) = families.iter().find(|f| f.name() == compat.source) else {
            continue;
        };
        if family.get_metric().is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", compat.name, compat.help);
        let _ = writeln!(out, "# TYPE {} {}", compat.name, compat.kind);
        for metric in family.get_metric() {
            let value = match family.get_field_type() {
                MetricType::COUNTER => metric.get_counter().get_value(),
                _ => metric.get_gauge().get_value(),
            };
            out.push_str(compat.name);
            let labels = metric.get_label();
            if !labels.is_empty() {
                out.push('{');
                for (i, pair) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let name = match compat.label {
                        Some((ours, theirs)) if pair.name() == ours => theirs,
                        _ => pair.name(),
                    };
                    out.push_str(name);
                    out.push_str("=\"");
                    escape_label_value(pair.value(), out);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            write_value(value, out);
            out.push('\n');
        }
    }
}

/// A label value in the text format: backslash, double quote and line feed escaped.
fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value in the text format (`+Inf`, `-Inf`, `NaN` spelled as Prometheus reads them).
fn write_value(value: f64, out: &mut String) {
    use std::fmt::Write;
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, MetricsError> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A JSON number as i64 (varz reports some figures as floats).
fn as_i64(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_u64().map(saturating_i64))
        .or_else(|| value.as_f64().map(|f| f as i64))
}

#[cfg(test)]
mod tests;
