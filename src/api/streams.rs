//! Stream CRUD: `GET|POST /api/v1/broker/streams`, `GET|PUT|DELETE
//! /api/v1/broker/streams/{name}` (and the `GET /api/v1/streams` alias). Bodies are
//! validated here, every problem named by field, before the `StreamActor` is asked.
//!
//! The listing answers from the status snapshot (never from the actor): a change made
//! through this API is in it before the next request is answered, streams made by others
//! within about a second; `data.snapshot` dates it, and while it is stale the answer is a
//! 503 rather than old streams. One stream (`GET …/{name}`) is read live from JetStream:
//! it is what an operator asks after a change, and its 404 must be exact.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::body::read_json;
use super::envelope::{success, ApiError, ErrorCode};
use super::state::AppState;
use crate::config::{replicas_problem, validate_stream_name, NatsConfig, StreamConfig, StreamSpec};
use crate::stats::snapshot::SnapshotMeta;
use crate::streams::mapping::info_view;
use crate::streams::{CreateStream, Created, DeleteStream, GetStream, UpdateStream};
use crate::subject;

#[derive(Serialize)]
struct Listing<'a> {
    count: usize,
    streams: &'a RawValue,
    /// More streams exist than the snapshot keeps.
    truncated: bool,
    snapshot: &'a SnapshotMeta,
}

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = state.snapshot_view().await;
    let Some(figures) = view.current() else {
        let reason = view.stale.as_deref().unwrap_or("stale");
        return Err(ApiError::new(
            ErrorCode::NatsConnectionError,
            format!("stream list unavailable: {reason}; retry when /ready answers 200"),
        )
        .with_data(json!({ "snapshot": view.meta })));
    };
    Ok(success(
        "Streams retrieved successfully",
        Listing {
            count: figures.streams.len(),
            streams: &figures.rendered.streams,
            truncated: figures.truncated,
            snapshot: &view.meta,
        },
    ))
}

pub async fn get(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = valid_name(&name)?;
    let info = state
        .ask_streams(state.stream_actor.send(GetStream(name)))
        .await?;
    Ok(success("Stream retrieved successfully", info_view(&info)))
}

pub async fn create(
    state: web::Data<AppState>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let limit = state.config.service.max_request_size.bytes() as usize;
    let body = read_json(body, limit, ErrorCode::InvalidStreamData).await?;
    let (name, config) = parse_stream_body(body, None, &state.config.nats)?;
    let mut spec = StreamSpec::from_config(&name, &config);
    if config.replicas.is_none() {
        spec.replicas = state.config.nats.default_replicas();
    }
    match state
        .ask_streams(state.stream_actor.send(CreateStream(spec)))
        .await?
    {
        Created::New(info) => Ok(success("Stream created successfully", info_view(&info))),
        Created::Existing(info) => Ok(success(
            "Stream already exists with the same config",
            info_view(&info),
        )),
    }
}

pub async fn update(
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = valid_name(&name)?;
    let limit = state.config.service.max_request_size.bytes() as usize;
    let body = read_json(body, limit, ErrorCode::InvalidStreamData).await?;
    let (_, changes) = parse_stream_body(body, Some(&name), &state.config.nats)?;
    let info = state
        .ask_streams(state.stream_actor.send(UpdateStream { name, changes }))
        .await?;
    Ok(success("Stream updated successfully", info_view(&info)))
}

pub async fn delete(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = valid_name(&name)?;
    let deleted = state
        .ask_streams(state.stream_actor.send(DeleteStream(name)))
        .await?;
    Ok(success("Stream deleted successfully", deleted))
}

fn valid_name(name: &str) -> Result<String, ApiError> {
    validate_stream_name(name)
        .map(|()| name.to_string())
        .map_err(|e| ApiError::new(ErrorCode::InvalidStreamData, format!("name: {e}")))
}

/// Splits `name` off a create/update body and parses the rest as a stream config,
/// collecting every problem. `path_name` is the name from the URL of an update: the body
/// may repeat it but not contradict it, and `subjects` becomes optional.
fn parse_stream_body(
    body: Value,
    path_name: Option<&str>,
    nats: &NatsConfig,
) -> Result<(String, StreamConfig), ApiError> {
    let Value::Object(mut fields) = body else {
        return Err(ApiError::new(
            ErrorCode::InvalidStreamData,
            "request body must be a JSON object",
        ));
    };
    let mut problems: Vec<(String, String)> = Vec::new();
    let name = match (fields.remove("name"), path_name) {
        (None, Some(path)) => path.to_string(),
        (Some(Value::String(n)), Some(path)) if n == path => n,
        (Some(other), Some(path)) => {
            problems.push((
                "name".into(),
                format!("{other} does not match the stream {path:?} in the path"),
            ));
            path.to_string()
        }
        (None, None) => {
            problems.push(("name".into(), "is required".into()));
            String::new()
        }
        (Some(Value::String(n)), None) => {
            if let Err(e) = validate_stream_name(&n) {
                problems.push(("name".into(), e));
            }
            n
        }
        (Some(other), None) => {
            problems.push(("name".into(), format!("must be a string, not {other}")));
            String::new()
        }
    };
    check_limits(&mut fields, &mut problems);
    let config = match crate::config::deserialize_all::<StreamConfig>(&Value::Object(fields)) {
        Ok(config) => Some(config),
        Err(found) => {
            problems.extend(found.into_iter().map(|p| (p.path, p.message)));
            None
        }
    };
    if let Some(config) = &config {
        match &config.subjects {
            None if path_name.is_none() => problems.push(("subjects".into(), "is required".into())),
            Some(list) if list.is_empty() => {
                problems.push(("subjects".into(), "must list at least one subject".into()))
            }
            Some(list) => {
                for (i, filter) in list.iter().enumerate() {
                    if let Err(e) = subject::validate_filter(filter) {
                        problems.push((format!("subjects[{i}]"), e));
                    }
                }
            }
            None => {}
        }
        if let Some(problem) = config.replicas.and_then(|r| replicas_problem(nats, r)) {
            problems.push(("replicas".into(), problem));
        }
    }
    match config {
        Some(config) if problems.is_empty() => Ok((name, config)),
        _ => {
            let message = problems
                .iter()
                .map(|(field, problem)| format!("{field}: {problem}"))
                .collect::<Vec<_>>()
                .join("; ");
            let details: Vec<Value> = problems
                .iter()
                .map(|(field, problem)| json!({ "field": field, "problem": problem }))
                .collect();
            Err(ApiError::new(
                ErrorCode::InvalidStreamData,
                format!("invalid stream: {message}"),
            )
            .with_data(json!({ "problems": details })))
        }
    }
}

/// Negative limits get a clear message (serde would only say "expected u64"); they are
/// taken out so they are reported once.
fn check_limits(fields: &mut Map<String, Value>, problems: &mut Vec<(String, String)>) {
    for field in [
        "max_msgs",
        "max_bytes",
        "max_msg_size",
        "max_age",
        "duplicate_window",
        "replicas",
    ] {
        if fields
            .get(field)
            .and_then(Value::as_f64)
            .is_some_and(|v| v < 0.0)
        {
            fields.remove(field);
            problems.push((field.into(), "must not be negative".into()));
        }
    }
}
