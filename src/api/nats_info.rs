//! `GET /api/v1/nats/info`: pid, ports, restarts and `varz` figures of the supervised server.

use actix_web::{web, HttpResponse};
use std::time::Duration;

use serde_json::{json, Value};

use super::envelope::success;
use super::state::AppState;

/// Bound on a live read of the monitoring port.
const VARZ_TIMEOUT: Duration = Duration::from_secs(1);

/// `varz` of the supervised server read now; the latest snapshot if that fails; `None` in
/// external mode.
async fn varz(state: &AppState) -> Option<Value> {
    if !state.nats.supervised {
        return None;
    }
    let url = state.config.nats.monitor_url("/varz");
    let live = async {
        let response = state
            .http
            .get(&url)
            .timeout(VARZ_TIMEOUT)
            .send()
            .await
            .ok()?;
        response.json::<Value>().await.ok()
    };
    match live.await {
        Some(body) => Some(body),
        None => state.nats.varz().map(|s| s.body),
    }
}

/// The `varz` fields the seeds show, read live from the supervised server (or the
/// connected server's info in external mode).
pub async fn server_info(state: &AppState) -> Value {
    if let Some(v) = varz(state).await {
        let v = &v;
        let pick = |key: &str| v.get(key).cloned().unwrap_or(Value::Null);
        return json!({
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
        });
    }
    let info = state.client.server_info();
    json!({
        "server_id": info.server_id,
        "server_name": info.server_name,
        "version": info.version,
        "go": info.go,
        "host": info.host,
        "port": info.port,
        "max_payload": info.max_payload,
    })
}

pub async fn nats_info(state: web::Data<AppState>) -> HttpResponse {
    let nats = &state.nats;
    let status = if nats.supervised {
        if nats.server_up() {
            "running"
        } else {
            "down"
        }
    } else if state.nats_connected() {
        "external"
    } else {
        "unreachable"
    };
    success(
        "NATS server info retrieved successfully",
        json!({
            "status": status,
            "supervised": nats.supervised,
            "pid": nats.pid(),
            "ports": {
                "nats": nats.ports().client,
                "http": nats.ports().http,
                "cluster": nats.ports().cluster,
            },
            "restarts": nats.restarts(),
            "client_connected": state.nats_connected(),
            "client_reconnects": nats.client_reconnects(),
            "last_error": nats.last_error(),
            "server_info": server_info(&state).await,
        }),
    )
}
