//! `POST /api/v1/broker/publish` (alias `/api/v1/publish`) and
//! `POST /api/v1/broker/publish/batch`. A subject some stream captures is published through
//! JetStream and answered with the stream's ack; any other subject goes out on core NATS.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use async_nats::jetstream::context::Context as JetStream;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;
use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::body::{parse_json, read_json, read_limited};
use super::envelope::{success, success_with, ApiError, ErrorCode};
use super::state::AppState;
use crate::subject;

/// Most entries one batch may hold.
pub const MAX_BATCH: usize = 1000;

/// One validated publish request.
#[derive(Debug)]
pub struct Outgoing {
    pub subject: String,
    pub payload: Bytes,
    pub headers: Option<HeaderMap>,
    pub msg_id: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidMessageData, message)
}

/// Validates `{subject, message, headers?, msg_id?}`. Objects and arrays are sent as compact
/// JSON, strings as their raw text, other values as their JSON text.
pub fn parse_outgoing(entry: &Value) -> Result<Outgoing, ApiError> {
    let Value::Object(fields) = entry else {
        return Err(invalid(
            "a message must be a JSON object with subject and message",
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "subject" | "message" | "headers" | "msg_id"))
    {
        return Err(invalid(format!(
            "unknown field {unknown:?}: expected subject, message, headers, msg_id"
        )));
    }
    let subject = match fields.get("subject") {
        Some(Value::String(s)) => s.clone(),
        None => return Err(invalid("subject: is required")),
        Some(other) => return Err(invalid(format!("subject: must be a string, not {other}"))),
    };
    subject::validate_subject(&subject).map_err(|e| invalid(format!("subject: {e}")))?;
    let payload = match fields.get("message") {
        None | Some(Value::Null) => return Err(invalid("message: is required")),
        Some(Value::String(text)) => Bytes::from(text.clone()),
        Some(value) => Bytes::from(value.to_string()),
    };
    let headers = fields.get("headers").map(parse_headers).transpose()?;
    let msg_id = match fields.get("msg_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if !id.is_empty() && !id.contains(['\r', '\n']) => Some(id.clone()),
        Some(other) => {
            return Err(invalid(format!(
                "msg_id: must be a non-empty string, not {other}"
            )))
        }
    };
    Ok(Outgoing {
        subject,
        payload,
        headers,
        msg_id,
    })
}

fn valid_msg_id(id: &str) -> Result<String, ApiError> {
    if id.is_empty() || id.contains(['\r', '\n']) {
        return Err(invalid(
            "msg_id: must be a non-empty string without line breaks",
        ));
    }
    Ok(id.to_string())
}

/// `headers`: an object of name -> string or list of strings.
fn parse_headers(given: &Value) -> Result<HeaderMap, ApiError> {
    let Value::Object(given) = given else {
        return Err(invalid("headers: must be an object of name -> string"));
    };
    let mut map = HeaderMap::new();
    for (name, value) in given {
        if name.is_empty()
            || name
                .chars()
                .any(|c| c.is_whitespace() || c == ':' || c.is_control())
        {
            return Err(invalid(format!("headers: invalid header name {name:?}")));
        }
        let values: Vec<&str> = match value {
            Value::String(v) => vec![v.as_str()],
            Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .ok_or_else(|| invalid(format!("headers.{name}: values must be strings")))
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(invalid(format!(
                    "headers.{name}: must be a string or a list of strings"
                )))
            }
        };
        for v in values {
            if v.contains(['\r', '\n']) {
                return Err(invalid(format!(
                    "headers.{name}: value must not contain line breaks"
                )));
            }
            map.append(name.as_str(), v);
        }
    }
    Ok(map)
}

/// The usual single-message body, read without building a JSON tree of the message.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FastBody<'a> {
    #[serde(borrow)]
    subject: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    message: &'a RawValue,
    #[serde(default)]
    headers: Option<Value>,
    #[serde(default)]
    msg_id: Option<String>,
}

/// Parses a well-formed body quickly; `None` sends it down the slow path, which also
/// produces the precise error for a bad one.
fn fast_outgoing(body: &[u8]) -> Option<Result<Outgoing, ApiError>> {
    let fast: FastBody = serde_json::from_slice(body).ok()?;
    Some((|| {
        subject::validate_subject(&fast.subject).map_err(|e| invalid(format!("subject: {e}")))?;
        let raw = fast.message.get();
        let payload = match raw.as_bytes().first() {
            Some(b'n') if raw == "null" => return Err(invalid("message: is required")),
            Some(b'"') => Bytes::from(
                serde_json::from_str::<String>(raw)
                    .map_err(|e| invalid(format!("message: {e}")))?,
            ),
            _ => Bytes::from(compact_json(raw)),
        };
        let headers = fast.headers.as_ref().map(parse_headers).transpose()?;
        let msg_id = fast.msg_id.as_deref().map(valid_msg_id).transpose()?;
        Ok(Outgoing {
            subject: fast.subject.into_owned(),
            payload,
            headers,
            msg_id,
        })
    })())
}

/// Valid JSON text without the white space outside strings.
fn compact_json(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    if !bytes
        .iter()
        .any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
    {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
    out
}

/// One HTTP worker's own connection and JetStream context for publishing (see
/// [`crate::nats::client::connect_publisher`]).
pub struct Publisher {
    pub client: async_nats::Client,
    pub js: JetStream,
}

/// JetStream publishes whose acks may be outstanding at once on one worker.
const ACKS_IN_FLIGHT: usize = 10_000;

impl Publisher {
    pub fn new(client: async_nats::Client, timeout: std::time::Duration) -> Publisher {
        let js = async_nats::jetstream::context::ContextBuilder::new()
            .timeout(timeout)
            .max_ack_inflight(ACKS_IN_FLIGHT)
            .backpressure_on_inflight(true)
            .build(client.clone());
        Publisher { client, js }
    }

    /// 503 `NATS_CONNECTION_ERROR` unless this worker's connection is up.
    fn require_connected(&self) -> Result<(), ApiError> {
        if self.client.connection_state() == async_nats::connection::State::Connected {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::NatsConnectionError,
                "not connected to nats; retry when /ready answers 200",
            ))
        }
    }
}

/// A publish on its way: the ack to await for JetStream, nothing for core NATS.
enum Pending {
    JetStream(async_nats::jetstream::context::PublishAckFuture),
    Core,
}

fn publish_error(kind: PublishErrorKind, detail: String) -> ApiError {
    match kind {
        PublishErrorKind::MaxPayloadExceeded => ApiError::new(ErrorCode::PayloadTooLarge, detail),
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => ApiError::new(
            ErrorCode::NatsConnectionError,
            format!("no acknowledgement from jetstream: {detail}"),
        ),
        _ => ApiError::new(ErrorCode::MessagePublishError, detail),
    }
}

/// Sends one message; JetStream acks are awaited later by [`finish`], so a batch is
/// pipelined while keeping its order on the wire.
async fn send(
    state: &AppState,
    publisher: &Publisher,
    out: Outgoing,
) -> Result<(String, Pending), ApiError> {
    let Outgoing {
        subject,
        payload,
        headers,
        msg_id,
    } = out;
    let mut headers = headers.unwrap_or_default();
    if let Some(id) = &msg_id {
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    }
    if state.streams.stream_for(&subject).is_some() {
        let message = PublishMessage::build().payload(payload).headers(headers);
        let ack = publisher
            .js
            .send_publish(subject.clone(), message)
            .await
            .map_err(|e| publish_error(e.kind(), e.to_string()))?;
        return Ok((subject, Pending::JetStream(ack)));
    }
    let sent = if headers.is_empty() {
        publisher.client.publish(subject.clone(), payload).await
    } else {
        state
            .client
            .publish_with_headers(subject.clone(), headers, payload)
            .await
    };
    sent.map_err(|e| {
        let kind = match e.kind() {
            async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                PublishErrorKind::MaxPayloadExceeded
            }
            _ => PublishErrorKind::Other,
        };
        publish_error(kind, e.to_string())
    })?;
    Ok((subject, Pending::Core))
}

/// Awaits the ack and describes the result. A subject whose stream vanished (no
/// responders) was still published on core NATS.
async fn finish(subject: String, pending: Pending) -> Result<Value, ApiError> {
    match pending {
        Pending::Core => Ok(json!({ "subject": subject, "jetstream": false })),
        Pending::JetStream(ack) => match ack.await {
            Ok(ack) => Ok(json!({
                "subject": subject,
                "jetstream": true,
                "stream": ack.stream,
                "sequence": ack.sequence,
                "duplicate": ack.duplicate,
            })),
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                Ok(json!({ "subject": subject, "jetstream": false }))
            }
            Err(e) => Err(publish_error(e.kind(), e.to_string())),
        },
    }
}

fn count(state: &AppState, ok: bool) {
    if ok {
        state.metrics.api_published();
    } else {
        state.metrics.api_publish_failed();
    }
}

pub async fn publish(
    state: web::Data<AppState>,
    publisher: web::Data<Publisher>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let limit = state.config.service.max_request_size.bytes() as usize;
    let body = read_limited(body, limit).await?;
    let out = match fast_outgoing(&body) {
        Some(out) => out?,
        None => parse_outgoing(&parse_json(&body, ErrorCode::InvalidMessageData)?)?,
    };
    publisher.require_connected()?;
    let deadline = state.request_timeout();
    let result = tokio::time::timeout(deadline, async {
        let (subject, pending) = send(&state, &publisher, out).await?;
        finish(subject, pending).await
    })
    .await
    .unwrap_or_else(|_| {
        Err(ApiError::new(
            ErrorCode::NatsConnectionError,
            format!("publish did not complete within {deadline:?}"),
        ))
    });
    count(&state, result.is_ok());
    Ok(success("Message published successfully", result?))
}

pub async fn publish_batch(
    state: web::Data<AppState>,
    publisher: web::Data<Publisher>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let limit = state.config.service.max_request_size.bytes() as usize;
    let body = read_json(body, limit, ErrorCode::InvalidMessageData).await?;
    let entries = match &body {
        Value::Array(entries) => entries,
        Value::Object(map) => match map.get("messages") {
            Some(Value::Array(entries)) => entries,
            _ => {
                return Err(invalid(
                    "a batch is {\"messages\": [ {subject, message, headers?, msg_id?}, … ]} or a bare list",
                ))
            }
        },
        _ => return Err(invalid("a batch must be a JSON object with a messages list, or a list")),
    };
    if entries.is_empty() {
        return Err(invalid("messages: the batch is empty"));
    }
    if entries.len() > MAX_BATCH {
        return Err(invalid(format!(
            "messages: {} entries, at most {MAX_BATCH} are allowed per batch",
            entries.len()
        )));
    }
    publisher.require_connected()?;
    let deadline = state.request_timeout();
    let outcome = tokio::time::timeout(deadline, async {
        // Send in order, then await the acks together.
        let mut pending = Vec::with_capacity(entries.len());
        for entry in entries {
            let sent = match parse_outgoing(entry) {
                Ok(out) => send(&state, &publisher, out).await,
                Err(e) => Err(e),
            };
            pending.push(sent);
        }
        let mut results = Vec::with_capacity(pending.len());
        for sent in pending {
            results.push(match sent {
                Ok((subject, pending)) => finish(subject, pending).await,
                Err(e) => Err(e),
            });
        }
        results
    })
    .await
    .map_err(|_| {
        ApiError::new(
            ErrorCode::NatsConnectionError,
            format!("batch did not complete within {deadline:?}"),
        )
    })?;

    let mut failed = 0;
    let results: Vec<Value> = outcome
        .into_iter()
        .enumerate()
        .map(|(index, result)| {
            count(&state, result.is_ok());
            match result {
                Ok(mut value) => {
                    if let Some(map) = value.as_object_mut() {
                        map.insert("index".into(), json!(index));
                        map.insert("status".into(), json!("success"));
                    }
                    value
                }
                Err(e) => {
                    failed += 1;
                    json!({
                        "index": index,
                        "status": "error",
                        "error_code": e.code,
                        "message": e.message,
                    })
                }
            }
        })
        .collect();
    let total = results.len();
    let data = json!({
        "total": total,
        "succeeded": total - failed,
        "failed": failed,
        "results": results,
    });
    if failed == 0 {
        Ok(success(format!("{total} messages published"), data))
    } else {
        Ok(success_with(
            StatusCode::MULTI_STATUS,
            format!(
                "{} of {total} messages published, {failed} failed",
                total - failed
            ),
            data,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_json_drops_white_space_outside_strings_only() {
        assert_eq!(compact_json(r#"{"a":1}"#), br#"{"a":1}"#);
        assert_eq!(
            compact_json("{ \"a b\" : [1, 2],\n \"c\\\" d\": \" x \" }"),
            br#"{"a b":[1,2],"c\" d":" x "}"#
        );
    }

    #[test]
    fn fast_and_slow_paths_agree() {
        let bodies = [
            r#"{"subject":"a.b","message":{"x": [1, 2]}}"#,
            r#"{"subject":"a.b","message":"raw text","msg_id":"m1"}"#,
            r#"{"subject":"a.b","message":42,"headers":{"H":"v","L":["1","2"]}}"#,
        ];
        for body in bodies {
            let fast = fast_outgoing(body.as_bytes()).unwrap().unwrap();
            let slow = parse_outgoing(&serde_json::from_str(body).unwrap()).unwrap();
            assert_eq!(fast.subject, slow.subject);
            assert_eq!(fast.payload, slow.payload, "{body}");
            assert_eq!(fast.msg_id, slow.msg_id);
            let sorted = |h: Option<HeaderMap>| {
                h.map(|h| {
                    h.iter()
                        .map(|(k, v)| {
                            (
                                k.to_string(),
                                v.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                            )
                        })
                        .collect::<std::collections::BTreeMap<_, _>>()
                })
            };
            assert_eq!(sorted(fast.headers), sorted(slow.headers));
        }
    }

    #[test]
    fn fast_path_rejects_what_the_slow_path_rejects() {
        for body in [
            r#"{"subject":"a.*","message":1}"#,
            r#"{"subject":"a.b","message":null}"#,
            r#"{"subject":"a b","message":1}"#,
        ] {
            let fast = fast_outgoing(body.as_bytes()).unwrap();
            let slow = parse_outgoing(&serde_json::from_str(body).unwrap());
            assert_eq!(fast.unwrap_err().code, ErrorCode::InvalidMessageData);
            assert_eq!(slow.unwrap_err().code, ErrorCode::InvalidMessageData);
        }
        // Unknown fields and missing ones fall to the slow path for the precise message.
        assert!(fast_outgoing(br#"{"subject":"a.b"}"#).is_none());
        assert!(fast_outgoing(br#"{"subject":"a.b","message":1,"x":1}"#).is_none());
    }
}
