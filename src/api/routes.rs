//! The routes API: `GET /api/v1/routes` and `/api/v1/routes/{name}` (compiled routes with
//! live counters), `POST /api/v1/routes/reload` (400 `INVALID_ROUTES` with every problem
//! when the files are invalid; the old table keeps running), `POST /api/v1/routes/test`
//! (a dry run of one message through the live table; publishes nothing).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};

use super::body::read_json;
use super::envelope::{success, ApiError, ErrorCode};
use super::state::AppState;
use crate::router::task::queue_name;
use crate::router::ReloadRoutes;
use crate::rules::{CompiledRoute, Headers, RouteSource};

/// Bound on a reload requested through the API.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

fn route_view(state: &AppState, route: &CompiledRoute) -> Value {
    let outputs: Vec<Value> = route
        .outputs
        .iter()
        .map(|o| {
            json!({
                "subject": o.subject.as_str(),
                "jetstream": o.jetstream,
                "msg_id": o.msg_id.as_ref().map(|t| t.as_str()),
                "carry_headers": o.carry_headers,
            })
        })
        .collect();
    json!({
        "name": route.name,
        "origin": route.origin,
        "from": route.pattern.as_str(),
        "subscription": route.subscription(),
        "source": route.source,
        "queue": match &route.source {
            RouteSource::Core { queue_group } => Some(queue_name(queue_group, &route.name)),
            RouteSource::JetStream { .. } => None,
        },
        "transforms": route.transform_names,
        "outputs": outputs,
        "partition_by": route.partition_by.as_ref().map(|t| t.as_str()),
        "age_from": route.age_from.as_ref().map(|p| p.as_str()),
        "on_error": route.on_error,
        "dead_letter_subject": route.dead_letter_subject,
        "counters": state.metrics.route(&route.name).counts(),
    })
}

pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    let table = state.router.table();
    let routes: Vec<Value> = table
        .routes()
        .iter()
        .map(|r| route_view(&state, r))
        .collect();
    let last = state.router.last_reload();
    success(
        "Routes retrieved successfully",
        json!({
            "version": state.router.version(),
            "count": routes.len(),
            "routes": routes,
            "last_reload": last.map(|r| json!({
                "ok": r.ok,
                "reason": r.reason,
                "at_ms": r.at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default(),
                "problems": r.problems,
            })),
        }),
    )
}

pub async fn get(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let table = state.router.table();
    let route = table.route(&name).ok_or_else(|| {
        ApiError::new(ErrorCode::RouteNotFound, format!("route {name} not found"))
    })?;
    Ok(success(
        "Route retrieved successfully",
        route_view(&state, route),
    ))
}

pub async fn reload(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let request = state.router_actor.send(ReloadRoutes {
        reason: "api".into(),
    });
    match tokio::time::timeout(RELOAD_TIMEOUT, request).await {
        Ok(Ok(Ok(report))) => Ok(success("Routes reloaded", report)),
        Ok(Ok(Err(problems))) => {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            Err(ApiError::new(
                ErrorCode::InvalidRoutes,
                format!(
                    "{} problem(s); the previous routes keep running: {}",
                    problems.len(),
                    lines.join("; ")
                ),
            )
            .with_data(json!({ "problems": problems, "version": state.router.version() })))
        }
        Ok(Err(e)) => Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!("router unavailable: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!("reload did not finish within {RELOAD_TIMEOUT:?}"),
        )),
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidMessageData, message)
}

/// `{subject, headers?, message}` through the live table; nothing is published.
pub async fn test(
    state: web::Data<AppState>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let limit = state.config.service.max_request_size.bytes() as usize;
    let body = read_json(body, limit, ErrorCode::InvalidMessageData).await?;
    let Value::Object(fields) = body else {
        return Err(invalid("body must be {subject, headers?, message}"));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "subject" | "headers" | "message"))
    {
        return Err(invalid(format!(
            "unknown field {unknown:?}: expected subject, headers, message"
        )));
    }
    let subject = match fields.get("subject") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(invalid("subject: is required and must be a string")),
    };
    crate::subject::validate_subject(&subject).map_err(|e| invalid(format!("subject: {e}")))?;
    let payload = match fields.get("message") {
        None => return Err(invalid("message: is required")),
        Some(Value::String(text)) => Bytes::from(text.clone()),
        Some(value) => Bytes::from(value.to_string()),
    };
    let mut headers = Headers::new();
    match fields.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                match value {
                    Value::String(v) => headers
                        .append_text(name, v)
                        .map_err(|e| invalid(format!("headers.{name}: {e}")))?,
                    Value::Array(items) => {
                        for item in items {
                            let v = item.as_str().ok_or_else(|| {
                                invalid(format!("headers.{name}: values must be strings"))
                            })?;
                            headers
                                .append_text(name, v)
                                .map_err(|e| invalid(format!("headers.{name}: {e}")))?;
                        }
                    }
                    _ => {
                        return Err(invalid(format!(
                            "headers.{name}: must be a string or a list"
                        )))
                    }
                }
            }
        }
        Some(_) => return Err(invalid("headers: must be an object")),
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let table = state.router.table();
    let results = table.evaluate(&subject, &headers, &payload, now_ms);
    Ok(success(
        "Dry run complete; nothing was published",
        json!({
            "subject": subject,
            "version": state.router.version(),
            "matched_routes": results.len(),
            "results": results,
        }),
    ))
}
