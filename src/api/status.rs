//! `GET /api/v1/status`, `GET /api/v1/broker/status`, `GET /api/v1/broker/health`: what the
//! service, its NATS server (with the supervisor's crash and JetStream-probe record), its
//! streams and its NATS cluster (the snapshot's cluster section) are doing. Health is
//! `healthy`, `degraded` (200, with the reason: a replica down while its stream keeps a
//! quorum, a crash-looping child) or `unhealthy` (503: no stream leader or quorum,
//! JetStream silent, NATS down, …). Process facts (uptime, counters,
//! connection, readiness, restarts) are read live from the shared state; the figures that
//! need a NATS round trip (streams with their state, server info, JetStream usage) come
//! from the status snapshot, and `data.snapshot` says how old they are. While the snapshot
//! is stale the stream figures are left out (never shown as live); the server info is the
//! last one read. The collectors (in-process, kept by their own task) are read live from
//! their published view, a pointer copy.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::envelope::{success, ApiError, ErrorCode};
use super::state::{AppState, SnapshotView};
use crate::collectors::CollectorsReport;
use crate::nats::state::Snapshot;
use crate::stats::cluster::{ClusterView, Level};
use crate::stats::snapshot::SnapshotMeta;

pub(super) fn server_status(state: &AppState) -> &'static str {
    match (
        state.nats.supervised,
        state.nats.server_up(),
        state.nats_connected(),
    ) {
        (true, true, _) => "running",
        (true, false, _) => "down",
        (false, _, true) => "external",
        (false, _, false) => "unreachable",
    }
}

/// Pre-rendered JSON, or `[]` for figures left out.
#[derive(Serialize)]
#[serde(untagged)]
enum Listed<'a> {
    Raw(&'a RawValue),
    Empty([(); 0]),
    Null(Option<()>),
}

impl<'a> Listed<'a> {
    fn or_empty(raw: Option<&'a RawValue>) -> Listed<'a> {
        raw.map_or(Listed::Empty([]), Listed::Raw)
    }
}

#[derive(Serialize)]
struct MessageStats {
    published: u64,
    consumed: u64,
    errors: u64,
}

fn message_stats(state: &AppState) -> MessageStats {
    let (published, consumed, errors) = state.metrics.message_totals();
    MessageStats {
        published,
        consumed,
        errors,
    }
}

#[derive(Serialize)]
struct Features {
    nats_server: bool,
    jetstream: bool,
    message_routing: bool,
    stream_management: bool,
    message_persistence: bool,
}

#[derive(Serialize)]
struct NatsBrief<'a> {
    server_status: &'static str,
    client_connected: bool,
    streams_count: usize,
    server_version: &'a Value,
}

#[derive(Serialize)]
struct NatsServer<'a> {
    status: &'static str,
    server_info: &'a RawValue,
}

#[derive(Serialize)]
struct Statistics {
    messages_published: u64,
    messages_consumed: u64,
    errors: u64,
    active_streams: Option<usize>,
    connection_errors: u64,
}

#[derive(Serialize)]
struct Status<'a> {
    service: &'static str,
    status: &'static str,
    uptime_seconds: f64,
    version: &'static str,
    environment: &'a str,
    port: u16,
    features: Features,
    nats_info: NatsBrief<'a>,
    nats_server: NatsServer<'a>,
    jetstream_streams: Listed<'a>,
    message_stats: MessageStats,
    statistics: Statistics,
    /// `{count, instances}` as the Python service showed it.
    collectors: CollectorsReport,
    snapshot: &'a SnapshotMeta,
}

pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let view = state.snapshot_view().await;
    let current = view.current();
    let latest = view.latest();
    let active_streams = current.map(|f| f.streams.len());
    let stats = message_stats(&state);
    let server_status = server_status(&state);
    let connected = state.nats_connected();
    let data = Status {
        service: "prism-broker",
        status: if state.not_ready().is_empty() {
            "running"
        } else {
            "degraded"
        },
        uptime_seconds: state.uptime_seconds(),
        version: env!("CARGO_PKG_VERSION"),
        environment: &state.config.service.environment,
        port: state.config.service.port,
        features: Features {
            nats_server: state.nats.supervised,
            jetstream: true,
            message_routing: true,
            stream_management: true,
            message_persistence: true,
        },
        nats_info: NatsBrief {
            server_status,
            client_connected: connected,
            streams_count: active_streams.unwrap_or(0),
            server_version: latest.server_info.get("version").unwrap_or(&Value::Null),
        },
        nats_server: NatsServer {
            status: server_status,
            server_info: &latest.rendered.server_info,
        },
        jetstream_streams: Listed::or_empty(current.map(|f| &*f.rendered.stream_states)),
        statistics: Statistics {
            messages_published: stats.published,
            messages_consumed: stats.consumed,
            errors: stats.errors,
            active_streams,
            connection_errors: state.nats.client_reconnects(),
        },
        message_stats: stats,
        collectors: state.collectors.report(std::time::Instant::now()),
        snapshot: &view.meta,
    };
    success("Service status retrieved successfully", data)
}

/// `(ok, error)` of something ensured: `(null, null)` until its first attempt.
fn ensured(health: Option<&Result<(), String>>) -> (Option<bool>, Option<String>) {
    match health {
        Some(Ok(())) => (Some(true), None),
        Some(Err(e)) => (Some(false), Some(e.clone())),
        None => (None, None),
    }
}

fn configured_streams(state: &AppState) -> Vec<Value> {
    let health = state.streams.health();
    state
        .config
        .effective_streams()
        .iter()
        .map(|spec| {
            let (ok, error) = ensured(health.get(&spec.name));
            json!({ "name": spec.name, "subjects": spec.subjects, "ok": ok, "error": error })
        })
        .collect()
}

#[derive(Serialize)]
struct Ports {
    nats: u16,
    http: u16,
    cluster: Option<u16>,
}

pub(super) fn ports(state: &AppState) -> impl Serialize {
    let ports = state.nats.ports();
    Ports {
        nats: ports.client,
        http: ports.http,
        cluster: ports.cluster,
    }
}

/// The supervisor's record of the child: crashes and whether its JetStream answers.
#[derive(Serialize)]
pub(super) struct Supervision {
    recent_crashes: usize,
    crash_window_s: u64,
    crash_looping: bool,
    hang_restarts: u64,
    jetstream_answering: bool,
    jetstream_last_answer: Option<String>,
    jetstream_error: Option<String>,
}

pub(super) fn supervision(state: &AppState) -> Option<Supervision> {
    let nats = &state.nats;
    if !nats.supervised {
        return None;
    }
    let probe = nats.jetstream_probe();
    let silence = nats.jetstream_silence();
    Some(Supervision {
        recent_crashes: nats.recent_crashes(),
        crash_window_s: nats.crash_policy().window.as_secs(),
        crash_looping: nats.crash_looping(),
        hang_restarts: nats.hang_restarts(),
        jetstream_answering: nats.server_up() && silence.is_none(),
        jetstream_last_answer: probe.last_answer.map(rfc3339),
        jetstream_error: silence.map(|(_, why)| why),
    })
}

fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Serialize)]
struct BrokerNats<'a, P> {
    mode: &'static str,
    status: &'static str,
    pid: Option<u32>,
    ports: P,
    restarts: u64,
    /// Supervised mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    supervision: Option<Supervision>,
    last_error: Option<String>,
    client_connected: bool,
    client_reconnects: u64,
    urls: Vec<String>,
    data_dir: Option<String>,
    server_info: &'a RawValue,
}

#[derive(Serialize)]
struct BrokerStreams {
    ensured: bool,
    configured: Vec<Value>,
    total: Option<usize>,
}

/// The configured durable consumers with their health (`ok: null` until first ensured).
fn configured_consumers(state: &AppState) -> Vec<Value> {
    let health = state.consumers.health();
    state
        .config
        .durable_consumers()
        .iter()
        .map(|spec| {
            let (ok, error) = ensured(health.get(&spec.name));
            json!({ "name": spec.name, "stream": spec.stream, "filter_subject": spec.filter_subject, "ok": ok, "error": error })
        })
        .collect()
}

#[derive(Serialize)]
struct BrokerStatus<'a, P> {
    service: &'static str,
    version: &'static str,
    environment: &'a str,
    port: u16,
    uptime_seconds: f64,
    ready: bool,
    nats: BrokerNats<'a, P>,
    streams: BrokerStreams,
    consumers: Vec<Value>,
    /// The cluster section; `null` when the server is not clustered.
    cluster: Listed<'a>,
    message_stats: MessageStats,
    snapshot: &'a SnapshotMeta,
}

/// The cluster section as a request shows it: the snapshot's while it is current; while
/// it is stale, the node part read live from the monitoring snapshots (meta leader, peers),
/// without streams; `None` when the server is not clustered.
fn cluster_view(state: &AppState, view: &SnapshotView) -> Option<ClusterView> {
    if let Some(figures) = view.current() {
        return figures.cluster.clone();
    }
    if !state.config.nats.clustered() {
        return view.latest().cluster.as_ref().map(|c| ClusterView {
            streams: Vec::new(),
            ..c.clone()
        });
    }
    let nats = &state.nats;
    let body = |s: Option<Snapshot>| s.map(|s| s.body);
    let (varz, jsz, routez) = (body(nats.varz()), body(nats.jsz()), body(nats.routez()));
    Some(ClusterView::from_monitoring(
        varz.as_ref(),
        jsz.as_ref().filter(|_| nats.server_up()),
        routez.as_ref(),
    ))
}

pub async fn broker_status(state: web::Data<AppState>) -> HttpResponse {
    let view = state.snapshot_view().await;
    let nats = &state.nats;
    let live_cluster;
    let cluster = match view.current() {
        Some(figures) => Listed::Raw(&figures.rendered.cluster),
        None => {
            live_cluster =
                cluster_view(&state, &view).and_then(|c| serde_json::value::to_raw_value(&c).ok());
            live_cluster
                .as_deref()
                .map_or(Listed::Null(None), Listed::Raw)
        }
    };
    let data = BrokerStatus {
        service: "prism-broker",
        version: env!("CARGO_PKG_VERSION"),
        environment: &state.config.service.environment,
        port: state.config.service.port,
        uptime_seconds: state.uptime_seconds(),
        ready: state.not_ready().is_empty(),
        nats: BrokerNats {
            mode: if nats.supervised {
                "supervised"
            } else {
                "external"
            },
            status: server_status(&state),
            pid: nats.pid(),
            ports: ports(&state),
            restarts: nats.restarts(),
            supervision: supervision(&state),
            last_error: nats.last_error(),
            client_connected: state.nats_connected(),
            client_reconnects: nats.client_reconnects(),
            urls: state.config.nats.client_urls(),
            data_dir: nats
                .supervised
                .then(|| state.config.nats.data_dir.display().to_string()),
            server_info: &view.latest().rendered.server_info,
        },
        streams: BrokerStreams {
            ensured: state.streams_ensured(),
            configured: configured_streams(&state),
            total: view.current().map(|f| f.streams.len()),
        },
        consumers: configured_consumers(&state),
        cluster,
        message_stats: message_stats(&state),
        snapshot: &view.meta,
    };
    success("Broker status retrieved successfully", data)
}

/// The `collectors` check: degraded (with the reason) while a collector is stale or, on a
/// live connection, the heartbeat subscription was lost and is being made again.
/// `subscribed` in the detail says whether a round trip confirmed it on this connection.
fn collectors_check(state: &AppState) -> (Value, Option<String>) {
    let report = state.collectors.report(std::time::Instant::now());
    let stale = report.stale();
    let subscribed = state
        .collectors
        .subscribed(state.nats.connection_generation());
    let stale_after = state.collectors.settings.stale_after.as_secs_f64();
    let reason = if !stale.is_empty() {
        Some(format!(
            "{} stale collector(s), no heartbeat for more than {stale_after}s: {}",
            stale.len(),
            stale.join(", ")
        ))
    } else if !state.collectors.has_subscription() && state.nats_connected() {
        Some(format!(
            "not subscribed to {} (subscribing again)",
            state.collectors.subject
        ))
    } else {
        None
    };
    let detail = json!({
        "count": report.count(),
        "stale": stale,
        "subscribed": subscribed,
        "subject": state.collectors.subject,
    });
    let status = if reason.is_some() {
        "degraded"
    } else {
        "healthy"
    };
    (json!({ "status": status, "detail": detail }), reason)
}

/// The `jetstream` check: the account's usage from a current snapshot.
fn jetstream_check(view: &SnapshotView) -> Result<Value, String> {
    match (&view.stale, view.latest().account) {
        (Some(reason), _) => Err(reason.clone()),
        (None, None) => Err("no jetstream account info".into()),
        (None, Some(usage)) => Ok(json!({
            "memory": usage.memory,
            "storage": usage.storage,
            "streams": usage.streams,
            "consumers": usage.consumers,
        })),
    }
}

/// The `cluster` check, when the server is clustered: [`ClusterView::assess`] over the
/// snapshot's cluster section (or, while it is stale, the node part read live, with the
/// reason the stream replication is unknown).
fn cluster_check(state: &AppState, view: &SnapshotView) -> Option<(Level, Value)> {
    let cluster = cluster_view(state, view)?;
    let duplicate = state.nats.duplicate_name().map(|(name, _)| name);
    let specs = state.config.effective_streams();
    let configured: Vec<&str> = match view.current() {
        Some(_) => specs.iter().map(|s| s.name.as_str()).collect(),
        None => Vec::new(),
    };
    let (mut level, mut reasons) = cluster.assess(&configured, duplicate.as_deref());
    if let Some(stale) = &view.stale {
        level = level.max(Level::Unhealthy);
        reasons.push(format!("stream replication unknown: {stale}"));
    }
    let streams: Vec<Value> = cluster
        .streams
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "leader": s.leader,
                "replicas": s.replicas,
                "replicas_current": s.replicas_current,
                "max_lag": s.max_lag,
                "quorum": s.quorum,
                "status": s.status,
                "reason": s.reason,
            })
        })
        .collect();
    Some((
        level,
        json!({
            "name": cluster.name,
            "this_node": cluster.this_node,
            "size": cluster.size,
            "meta_leader": cluster.meta_leader,
            "peers_seen": cluster.peers_seen,
            "duplicate_server_name": duplicate,
            "streams": streams,
            "reasons": reasons,
        }),
    ))
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Healthy => "healthy",
        Level::Degraded => "degraded",
        Level::Unhealthy => "unhealthy",
    }
}

/// `healthy` and `degraded` (a replica down with quorum, a crash-looping child that is up)
/// answer 200; `unhealthy` answers 503 naming the failing checks.
pub async fn broker_health(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = state.snapshot_view().await;
    let mut checks = serde_json::Map::new();
    let mut overall = Level::Healthy;
    let mut check = |name: &str, level: Level, detail: Value| {
        overall = overall.max(level);
        checks.insert(
            name.into(),
            json!({ "status": level_name(level), "detail": detail }),
        );
    };
    let ok = |healthy: bool| {
        if healthy {
            Level::Healthy
        } else {
            Level::Unhealthy
        }
    };
    let mut crash_loop = None;
    if state.nats.supervised {
        let nats = &state.nats;
        let up = nats.server_up();
        let looping = nats.crash_looping();
        let level = match (up, looping) {
            (false, _) => Level::Unhealthy,
            (true, true) => Level::Degraded,
            (true, false) => Level::Healthy,
        };
        let mut detail = json!({
            "pid": nats.pid(),
            "restarts": nats.restarts(),
            "recent_crashes": nats.recent_crashes(),
            "crash_window_s": nats.crash_policy().window.as_secs(),
            "crash_looping": looping,
            "hang_restarts": nats.hang_restarts(),
            "last_error": nats.last_error(),
        });
        if looping {
            let reason = format!(
                "crash-looping: {} crashes in the last {}s",
                nats.recent_crashes(),
                nats.crash_policy().window.as_secs()
            );
            detail["reason"] = json!(reason);
            crash_loop = up.then_some(reason);
        }
        check("nats_server", level, detail);
    }
    let connected = state.nats_connected();
    check(
        "nats_client",
        ok(connected),
        json!({ "connected": connected, "reconnects": state.nats.client_reconnects() }),
    );
    match (state.nats.jetstream_silence(), jetstream_check(&view)) {
        (Some((silent, why)), _) => check(
            "jetstream",
            Level::Unhealthy,
            json!({
                "error": format!("no answer from jetstream for {:.1}s: {why}", silent.as_secs_f64()),
                "last_answer": state.nats.jetstream_probe().last_answer.map(rfc3339),
            }),
        ),
        (None, Ok(detail)) => check("jetstream", Level::Healthy, detail),
        (None, Err(e)) => check("jetstream", Level::Unhealthy, json!({ "error": e })),
    }
    let failures = state.streams.failures();
    check(
        "streams",
        ok(state.streams_ensured() && failures.is_empty()),
        json!({ "ensured": state.streams_ensured(), "configured": configured_streams(&state) }),
    );
    let not_live = state.router.not_live();
    check(
        "router",
        ok(not_live.is_empty()),
        json!({
            "routes": state.router.table().routes().len(),
            "version": state.router.version(),
            "not_consuming": not_live,
        }),
    );
    let consumer_failures = state.consumers.failures();
    check(
        "consumers",
        ok(consumer_failures.is_empty()),
        json!({ "configured": configured_consumers(&state) }),
    );
    // Degraded, not unhealthy: the broker works, something it watches does not.
    let mut reasons = Vec::new();
    let (collectors, degraded) = collectors_check(&state);
    if let Some(reason) = &degraded {
        reasons.push(format!("collectors: {reason}"));
    }
    if let Some(reason) = crash_loop {
        reasons.push(format!("nats_server: {reason}"));
    }
    overall = overall.max(if degraded.is_some() {
        Level::Degraded
    } else {
        Level::Healthy
    });
    checks.insert("collectors".into(), collectors);
    if let Some((level, detail)) = cluster_check(&state, &view) {
        if level == Level::Degraded {
            for reason in detail["reasons"].as_array().into_iter().flatten() {
                reasons.push(format!("cluster: {}", reason.as_str().unwrap_or_default()));
            }
        }
        overall = overall.max(level);
        checks.insert(
            "cluster".into(),
            json!({ "status": level_name(level), "detail": detail }),
        );
    }
    let data = json!({
        "status": level_name(overall),
        "checks": checks,
        "reasons": reasons,
        "snapshot": view.meta,
    });
    match overall {
        Level::Healthy => Ok(success("Broker is healthy", data)),
        Level::Degraded => Ok(success(
            format!("Broker is degraded: {}", reasons.join("; ")),
            data,
        )),
        Level::Unhealthy => {
            let failing: Vec<&str> = checks
                .iter()
                .filter(|(_, c)| c["status"] == "unhealthy")
                .map(|(name, _)| name.as_str())
                .collect();
            Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!("broker is unhealthy: {}", failing.join(", ")),
            )
            .with_data(data))
        }
    }
}
