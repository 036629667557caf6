//! `GET /api/v1/status`, `GET /api/v1/broker/status`, `GET /api/v1/broker/health`: what the
//! service, its NATS server and its streams are doing, with live figures only.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::envelope::{success, ApiError, ErrorCode};
use super::nats_info::server_info;
use super::state::AppState;
use crate::streams::ListStreams;

/// Bound on the live stream listing inside a status call.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Live streams with their state, or an empty list while NATS is away.
async fn live_streams(state: &AppState) -> Option<Vec<async_nats::jetstream::stream::Info>> {
    if !state.nats_connected() {
        return None;
    }
    match tokio::time::timeout(STATUS_TIMEOUT, state.stream_actor.send(ListStreams)).await {
        Ok(Ok(Ok(infos))) => Some(infos),
        _ => None,
    }
}

fn server_status(state: &AppState) -> &'static str {
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

fn message_stats(state: &AppState) -> Value {
    let (published, consumed, errors) = state.metrics.message_totals();
    json!({ "published": published, "consumed": consumed, "errors": errors })
}

pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let streams = live_streams(&state).await;
    let stream_list: Vec<Value> = streams
        .iter()
        .flatten()
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
    let info = server_info(&state).await;
    let (published, consumed, errors) = state.metrics.message_totals();
    let healthy = state.not_ready().is_empty();
    success(
        "Service status retrieved successfully",
        json!({
            "service": "prism-broker",
            "status": if healthy { "running" } else { "degraded" },
            "uptime_seconds": state.uptime_seconds(),
            "version": env!("CARGO_PKG_VERSION"),
            "environment": state.config.service.environment,
            "port": state.config.service.port,
            "features": {
                "nats_server": state.nats.supervised,
                "jetstream": true,
                "message_routing": true,
                "stream_management": true,
                "message_persistence": true,
            },
            "nats_info": {
                "server_status": server_status(&state),
                "client_connected": state.nats_connected(),
                "streams_count": stream_list.len(),
                "server_version": info.get("version").cloned().unwrap_or(Value::Null),
            },
            "nats_server": {
                "status": server_status(&state),
                "server_info": info,
            },
            "jetstream_streams": stream_list,
            "message_stats": message_stats(&state),
            "statistics": {
                "messages_published": published,
                "messages_consumed": consumed,
                "errors": errors,
                "active_streams": streams.as_ref().map(Vec::len),
                "connection_errors": state.nats.client_reconnects(),
            },
        }),
    )
}

fn configured_streams(state: &AppState) -> Vec<Value> {
    let health = state.streams.health();
    state
        .config
        .effective_streams()
        .iter()
        .map(|spec| {
            let (ok, error) = match health.get(&spec.name) {
                Some(Ok(())) => (Some(true), None),
                Some(Err(e)) => (Some(false), Some(e.clone())),
                None => (None, None),
            };
            json!({ "name": spec.name, "subjects": spec.subjects, "ok": ok, "error": error })
        })
        .collect()
}

pub async fn broker_status(state: web::Data<AppState>) -> HttpResponse {
    let nats = &state.nats;
    let live = live_streams(&state).await;
    success(
        "Broker status retrieved successfully",
        json!({
            "service": "prism-broker",
            "version": env!("CARGO_PKG_VERSION"),
            "environment": state.config.service.environment,
            "port": state.config.service.port,
            "uptime_seconds": state.uptime_seconds(),
            "ready": state.not_ready().is_empty(),
            "nats": {
                "mode": if nats.supervised { "supervised" } else { "external" },
                "status": server_status(&state),
                "pid": nats.pid(),
                "ports": { "nats": nats.ports().client, "http": nats.ports().http, "cluster": nats.ports().cluster },
                "restarts": nats.restarts(),
                "last_error": nats.last_error(),
                "client_connected": state.nats_connected(),
                "client_reconnects": nats.client_reconnects(),
                "urls": state.config.nats.client_urls(),
                "data_dir": nats.supervised.then(|| state.config.nats.data_dir.display().to_string()),
                "server_info": server_info(&state).await,
            },
            "streams": {
                "ensured": state.streams.ensured(),
                "configured": configured_streams(&state),
                "total": live.as_ref().map(Vec::len),
            },
            "message_stats": message_stats(&state),
        }),
    )
}

pub async fn broker_health(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut checks = serde_json::Map::new();
    let mut healthy = true;
    let mut check = |name: &str, ok: bool, detail: Value| {
        healthy &= ok;
        checks.insert(
            name.into(),
            json!({ "status": if ok { "healthy" } else { "unhealthy" }, "detail": detail }),
        );
    };
    if state.nats.supervised {
        let up = state.nats.server_up();
        check(
            "nats_server",
            up,
            json!({ "pid": state.nats.pid(), "restarts": state.nats.restarts(), "last_error": state.nats.last_error() }),
        );
    }
    let connected = state.nats_connected();
    check(
        "nats_client",
        connected,
        json!({ "connected": connected, "reconnects": state.nats.client_reconnects() }),
    );
    let account = if connected {
        jetstream_account(&state).await
    } else {
        Err("not connected".to_string())
    };
    match account {
        Ok(detail) => check("jetstream", true, detail),
        Err(e) => check("jetstream", false, json!({ "error": e })),
    }
    let failures = state.streams.failures();
    check(
        "streams",
        state.streams.ensured() && failures.is_empty(),
        json!({ "ensured": state.streams.ensured(), "configured": configured_streams(&state) }),
    );
    let not_live = state.router.not_live();
    check(
        "router",
        not_live.is_empty(),
        json!({
            "routes": state.router.table().routes().len(),
            "version": state.router.version(),
            "not_consuming": not_live,
        }),
    );
    let data = json!({ "status": if healthy { "healthy" } else { "unhealthy" }, "checks": checks });
    if healthy {
        Ok(success("Broker is healthy", data))
    } else {
        let failing: Vec<&String> = checks
            .iter()
            .filter(|(_, c)| c["status"] == "unhealthy")
            .map(|(name, _)| name)
            .collect();
        Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!(
                "broker is unhealthy: {}",
                failing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_data(data))
    }
}

/// `$JS.API.INFO` read as plain JSON (the typed account info of async-nats expects fields
/// that nats-server 2.9 does not send).
async fn jetstream_account(state: &AppState) -> Result<Value, String> {
    let reply = tokio::time::timeout(
        STATUS_TIMEOUT,
        state.client.request("$JS.API.INFO", bytes::Bytes::new()),
    )
    .await
    .map_err(|_| format!("no answer within {STATUS_TIMEOUT:?}"))?
    .map_err(|e| e.to_string())?;
    let info: Value = serde_json::from_slice(&reply.payload).map_err(|e| e.to_string())?;
    if let Some(error) = info.get("error") {
        return Err(error.to_string());
    }
    Ok(json!({
        "memory": info["memory"],
        "storage": info["storage"],
        "streams": info["streams"],
        "consumers": info["consumers"],
    }))
}
