//! `GET /health` (liveness) and `GET /ready` (503 until NATS is connected).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::envelope::{success, ApiError, ErrorCode};
use super::state::AppState;

/// 200 while the process is alive and serving HTTP.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    success(
        "service is alive",
        json!({
            "service": "prism-broker",
            "status": "healthy",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": state.uptime_seconds(),
        }),
    )
}

/// 200 when NATS (and later the streams) are up; 503 `NATS_CONNECTION_ERROR` otherwise,
/// with the failing components in `data`.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let problems = state.not_ready();
    if problems.is_empty() {
        return Ok(success("service is ready", json!({ "ready": true })));
    }
    let components: serde_json::Map<String, serde_json::Value> = problems
        .iter()
        .map(|(name, reason)| (name.clone(), json!(reason)))
        .collect();
    let message = problems
        .iter()
        .map(|(name, reason)| format!("{name}: {reason}"))
        .collect::<Vec<_>>()
        .join("; ");
    Err(ApiError::new(
        ErrorCode::NatsConnectionError,
        format!("not ready: {message}"),
    )
    .with_data(json!({ "ready": false, "components": components })))
}
