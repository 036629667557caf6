//! `POST /api/v1/broker/publish` (alias `/api/v1/publish`) and
//! `POST /api/v1/broker/publish/batch`: one path for both.
//!
//! Every entry is read by [`parse_entry`] without building a JSON tree of its message (the
//! message's bytes go out as given, white space outside strings removed, so `2.50` stays
//! `2.50` and keys keep their order), and sent on the HTTP worker's own connection
//! ([`Publisher`]). A subject that a stream is meant to capture (see
//! [`crate::streams::StreamsState::stream_for`]) is published through JetStream and answered
//! 200 only with that stream's ack; no responders, no ack in time or a broken connection is a
//! retryable 503 (`Retry-After`), a stream without room 507 `STORAGE_FULL`. Only a subject no
//! stream captures goes out on core NATS, and a request with `persist: true` gets 404
//! `STREAM_NOT_FOUND` instead.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use async_nats::header::{HeaderName, HeaderValue};
use async_nats::jetstream::context::{Context as JetStream, PublishAckFuture};
use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;
use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::body::read_limited;
use super::envelope::{success, success_with, timestamp, ApiError, ErrorCode};
use super::state::AppState;
use crate::streams::state::Refusal;
use crate::streams::AckFailure;
use crate::subject;

/// Most entries one batch may hold.
pub const MAX_BATCH: usize = 1000;
/// First pause before a single publish that met no responders is tried again.
const NO_RESPONDERS_PAUSE: Duration = Duration::from_millis(25);

/// One validated publish request.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    pub payload: Bytes,
    /// The request's headers with `msg_id` as `Nats-Msg-Id`.
    pub headers: HeaderMap,
    /// `persist: true`: a stream must store it; never sent on core NATS.
    pub persist: bool,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidMessageData, message)
}

/// The fields of a publish entry, each left as its JSON text.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry<'a> {
    #[serde(borrow, default)]
    subject: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    headers: Option<&'a RawValue>,
    #[serde(borrow, default)]
    msg_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    persist: Option<&'a RawValue>,
}

const ENTRY_SHAPE: &str =
    "a message is a JSON object {subject, message, headers?, msg_id?, persist?}";

/// Validates one `{subject, message, headers?, msg_id?, persist?}` entry. Objects and
/// arrays are sent as their JSON text without white space outside strings, strings as their
/// raw text, other values as their JSON text.
pub fn parse_entry(raw: &str) -> Result<Outgoing, ApiError> {
    let entry: Entry = serde_json::from_str(raw).map_err(|e| {
        if raw.trim_start().starts_with('{') {
            invalid(format!("{e}; {ENTRY_SHAPE}"))
        } else {
            invalid(ENTRY_SHAPE)
        }
    })?;
    let subject: Cow<str> = match present(entry.subject) {
        None => return Err(invalid("subject: is required")),
        Some(raw) => serde_json::from_str(raw.get())
            .map_err(|_| invalid(format!("subject: must be a string, not {}", raw.get())))?,
    };
    subject::validate_subject(&subject).map_err(|e| invalid(format!("subject: {e}")))?;
    let payload = match present(entry.message) {
        None => return Err(invalid("message: is required")),
        Some(raw) if raw.get().starts_with('"') => Bytes::from(
            serde_json::from_str::<String>(raw.get())
                .map_err(|e| invalid(format!("message: {e}")))?,
        ),
        Some(raw) => Bytes::from(compact_json(raw.get())),
    };
    let mut headers = match present(entry.headers) {
        None => HeaderMap::new(),
        Some(raw) => parse_headers(raw.get())?,
    };
    if let Some(raw) = present(entry.msg_id) {
        let id: String = serde_json::from_str(raw.get())
            .map_err(|_| invalid(format!("msg_id: must be a string, not {}", raw.get())))?;
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id_value(&id)?);
    }
    let persist = match present(entry.persist).map(RawValue::get) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(invalid(format!(
                "persist: must be true or false, not {other}"
            )))
        }
    };
    Ok(Outgoing {
        subject: subject.into_owned(),
        payload,
        headers,
        persist,
    })
}

/// A field that is there and not `null`.
fn present(value: Option<&RawValue>) -> Option<&RawValue> {
    value.filter(|v| v.get() != "null")
}

/// The one check of a `msg_id`: a non-empty valid header value.
fn msg_id_value(id: &str) -> Result<HeaderValue, ApiError> {
    if id.is_empty() {
        return Err(invalid("msg_id: must not be empty"));
    }
    HeaderValue::from_str(id).map_err(|_| invalid("msg_id: must not contain line breaks"))
}

/// `headers`: an object of name -> string or list of strings, each checked with the
/// library's own fallible constructors (a name is printable ASCII without `:` or spaces, a
/// value has no line break).
fn parse_headers(raw: &str) -> Result<HeaderMap, ApiError> {
    let given: serde_json::Map<String, Value> = serde_json::from_str(raw)
        .map_err(|_| invalid("headers: must be an object of name -> string"))?;
    let mut map = HeaderMap::new();
    for (name, value) in &given {
        let header = HeaderName::from_str(name)
            .map_err(|_| invalid(format!("headers: invalid header name {name:?}")))?;
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
            let value = HeaderValue::from_str(v).map_err(|_| {
                invalid(format!(
                    "headers.{name}: value must not contain line breaks"
                ))
            })?;
            map.append(header.clone(), value);
        }
    }
    Ok(map)
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
/// [`crate::nats::client::connect_publisher`]). Every publish of the API goes through it.
pub struct Publisher {
    pub client: async_nats::Client,
    pub js: JetStream,
}

/// The publishing connections of every HTTP worker, so readiness can tell whether all of
/// them are up (a worker whose connection is still connecting would answer 503).
#[derive(Debug, Default)]
pub struct Publishers {
    expected: usize,
    clients: std::sync::Mutex<Vec<async_nats::Client>>,
}

impl Publishers {
    /// Expects one connection per HTTP worker.
    pub fn new(workers: usize) -> Publishers {
        Publishers {
            expected: workers,
            clients: Default::default(),
        }
    }

    pub(crate) fn register(&self, client: &async_nats::Client) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.push(client.clone());
        }
    }

    /// How many workers' connections are connected, of how many expected.
    pub fn connected(&self) -> (usize, usize) {
        let up = self
            .clients
            .lock()
            .map(|c| {
                c.iter()
                    .filter(|c| c.connection_state() == async_nats::connection::State::Connected)
                    .count()
            })
            .unwrap_or(0);
        (up, self.expected)
    }
}

/// JetStream publishes whose acks may be outstanding at once on one worker.
const ACKS_IN_FLIGHT: usize = 10_000;

impl Publisher {
    pub fn new(client: async_nats::Client, timeout: Duration) -> Publisher {
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
    JetStream {
        stream: std::sync::Arc<str>,
        ack: PublishAckFuture,
    },
    Core,
}

/// A sent entry: what its answer needs besides the ack.
struct Sent {
    subject: String,
    size: usize,
    pending: Pending,
}

/// Why one entry was not published; `nothing_stored` when it may be sent again as it is
/// (no responders: nobody received it).
struct Failure {
    error: ApiError,
    nothing_stored: bool,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure {
            error,
            nothing_stored: false,
        }
    }
}

/// The failure of a JetStream publish that did not end with an ack; records what it says
/// about the stream (no room, no responders) for health and the stream actor.
fn ack_failure(state: &AppState, stream: &str, failure: AckFailure) -> Failure {
    // Nobody received it: worth sending again (a stream found missing meanwhile is
    // answered at once by `send`).
    let nothing_stored = failure == AckFailure::NoResponders;
    Failure {
        error: ack_error(state, stream, failure),
        nothing_stored,
    }
}

/// The answer for a stream the server reported missing: nothing is sent (its subjects must
/// not go out as a plain core message, and waiting for an ack would be in vain).
fn missing_stream(stream: &str) -> ApiError {
    ApiError::new(
        ErrorCode::StreamUnavailable,
        format!("stream {stream} does not exist on the server (deleted outside the broker?); the message was not stored: create the stream again, or DELETE /api/v1/broker/streams/{stream} to publish its subjects on core nats"),
    )
}

fn ack_error(state: &AppState, stream: &str, failure: AckFailure) -> ApiError {
    let message = failure.describe(stream);
    match failure {
        AckFailure::NoResponders => {
            state.streams.suspect(stream);
            ApiError::new(ErrorCode::StreamUnavailable, message)
        }
        AckFailure::TimedOut => {
            // A core subscriber on the subjects of a stream that is gone makes a publish time
            // out instead of meeting no responders: check the stream too.
            state.streams.suspect(stream);
            ApiError::new(ErrorCode::StreamUnavailable, message)
        }
        AckFailure::Disconnected => ApiError::new(ErrorCode::NatsConnectionError, message),
        AckFailure::NoRoom(reason) => {
            if state.streams.refusal(stream).is_none() {
                state.streams.mark_refusing(
                    stream,
                    Refusal {
                        reason: format!("refuses writes: {reason}"),
                    },
                );
            }
            ApiError::new(ErrorCode::StorageFull, message).retry_after(10)
        }
        AckFailure::TooLarge(_) => ApiError::new(ErrorCode::PayloadTooLarge, message),
        AckFailure::Rejected(_) => ApiError::new(ErrorCode::MessagePublishError, message),
    }
}

fn core_error(e: async_nats::client::PublishError) -> ApiError {
    match e.kind() {
        async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
            ApiError::new(ErrorCode::PayloadTooLarge, e.to_string())
        }
        _ => ApiError::new(
            ErrorCode::NatsConnectionError,
            format!("core publish failed: {e}"),
        ),
    }
}

/// Sends one entry; JetStream acks are awaited later by [`finish`], so a batch is
/// pipelined while keeping its order on the wire.
async fn send(state: &AppState, publisher: &Publisher, out: &Outgoing) -> Result<Sent, Failure> {
    let Outgoing {
        subject,
        payload,
        headers,
        persist,
    } = out;
    let (payload, headers) = (payload.clone(), headers.clone());
    let size = payload.len();
    let pending = match state.streams.stream_for(subject) {
        Some(stream) if state.streams.is_missing(&stream) => {
            return Err(Failure::from(missing_stream(&stream)))
        }
        Some(stream) => {
            let message = PublishMessage::build().payload(payload).headers(headers);
            let ack = publisher
                .js
                .send_publish(subject.clone(), message)
                .await
                .map_err(|e| ack_failure(state, &stream, AckFailure::of(&e)))?;
            Pending::JetStream { stream, ack }
        }
        None if *persist => {
            return Err(Failure::from(ApiError::new(
                ErrorCode::StreamNotFound,
                format!("no stream captures subject {subject:?}; persist: true needs one (create it with POST /api/v1/broker/streams)"),
            )))
        }
        None => {
            let sent = if headers.is_empty() {
                publisher.client.publish(subject.clone(), payload).await
            } else {
                publisher
                    .client
                    .publish_with_headers(subject.clone(), headers, payload)
                    .await
            };
            sent.map_err(core_error)?;
            Pending::Core
        }
    };
    Ok(Sent {
        subject: subject.clone(),
        size,
        pending,
    })
}

/// The answer for one published entry: ours (`jetstream`, `sequence`, `duplicate`) and the
/// Python service's (`message_id`, `stream`, `published_at`, `message_size`). Serialized
/// straight into the response, without a `Value` tree.
#[derive(Debug, serde::Serialize)]
struct Published {
    subject: String,
    jetstream: bool,
    stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
    message_id: Option<u64>,
    published_at: String,
    message_size: usize,
}

/// Awaits the ack and describes the result.
async fn finish(state: &AppState, sent: Sent) -> Result<Published, Failure> {
    let Sent {
        subject,
        size,
        pending,
    } = sent;
    match pending {
        Pending::Core => Ok(Published {
            subject,
            jetstream: false,
            stream: None,
            sequence: None,
            duplicate: None,
            message_id: None,
            published_at: timestamp(),
            message_size: size,
        }),
        Pending::JetStream { stream, ack } => match ack.await {
            Ok(ack) => {
                state.streams.clear_refusing(&stream);
                Ok(Published {
                    subject,
                    jetstream: true,
                    stream: Some(ack.stream),
                    sequence: Some(ack.sequence),
                    duplicate: Some(ack.duplicate),
                    message_id: Some(ack.sequence),
                    published_at: timestamp(),
                    message_size: size,
                })
            }
            Err(e) => Err(ack_failure(state, &stream, AckFailure::of(&e))),
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

fn out_of_time(deadline: Duration, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::StreamUnavailable,
        format!("{what} did not complete within {deadline:?}; a message without an ack may or may not be stored (retry with the same msg_id)"),
    )
}

/// Publishes one entry. No responders means nothing was stored (the stream has no leader
/// for a moment, or is being re-created): the entry is sent again, with a short growing
/// pause, until it is acked or the request's deadline is near.
async fn publish_one(
    state: &AppState,
    publisher: &Publisher,
    out: &Outgoing,
) -> Result<Published, ApiError> {
    let deadline = state.request_timeout();
    let end = Instant::now() + deadline;
    let mut pause = NO_RESPONDERS_PAUSE;
    loop {
        let attempt = async {
            let sent = send(state, publisher, out).await?;
            finish(state, sent).await
        };
        let failure = match tokio::time::timeout_at(end.into(), attempt).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(failure)) => failure,
            Err(_) => {
                let what = match state.streams.stream_for(&out.subject) {
                    Some(stream) => {
                        state.streams.suspect(&stream);
                        format!("publish to stream {stream}")
                    }
                    None => "publish".to_string(),
                };
                return Err(out_of_time(deadline, &what));
            }
        };
        if !failure.nothing_stored || Instant::now() + pause >= end {
            return Err(failure.error);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

pub async fn publish(
    state: web::Data<AppState>,
    publisher: web::Data<Publisher>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let limit = state.config.service.max_request_size.bytes() as usize;
    let body = read_limited(body, limit).await?;
    let out = parse_entry(body_text(&body)?)?;
    state.require_nats()?;
    publisher.require_connected()?;
    let result = publish_one(&state, &publisher, &out).await;
    count(&state, result.is_ok());
    Ok(success("Message published successfully", result?))
}

/// The body as text; a body that is empty or not UTF-8 is a 400.
fn body_text(body: &[u8]) -> Result<&str, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("request body is empty: a JSON object is expected"));
    }
    std::str::from_utf8(body).map_err(|e| invalid(format!("request body is not valid JSON: {e}")))
}

/// `{"messages": [...]}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<'a> {
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
}

/// The entries of `{"messages": [...]}` or of a bare list, each left as its JSON text.
fn batch_entries(raw: &str) -> Result<Vec<&RawValue>, ApiError> {
    let parsed = if raw.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<&RawValue>>(raw)
    } else {
        serde_json::from_str::<Batch>(raw).map(|b| b.messages)
    };
    parsed.map_err(|_| match serde_json::from_str::<&RawValue>(raw) {
        Err(e) => invalid(format!("request body is not valid JSON: {e}")),
        Ok(_) => invalid(BATCH_SHAPE),
    })
}

const BATCH_SHAPE: &str =
    "a batch is {\"messages\": [ {subject, message, headers?, msg_id?, persist?}, … ]} or a bare list";

pub async fn publish_batch(
    state: web::Data<AppState>,
    publisher: web::Data<Publisher>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let limit = state.config.service.max_request_size.bytes() as usize;
    let body = read_limited(body, limit).await?;
    let raw = body_text(&body)?;
    let entries = batch_entries(raw)?;
    if entries.is_empty() {
        return Err(invalid("messages: the batch is empty"));
    }
    if entries.len() > MAX_BATCH {
        return Err(invalid(format!(
            "messages: {} entries, at most {MAX_BATCH} are allowed per batch",
            entries.len()
        )));
    }
    state.require_nats()?;
    publisher.require_connected()?;
    let deadline = state.request_timeout();
    let outcome = tokio::time::timeout(deadline, async {
        // Send in order, then await the acks together.
        let mut pending = Vec::with_capacity(entries.len());
        for entry in &entries {
            pending.push(match parse_entry(entry.get()) {
                Ok(out) => send(&state, &publisher, &out).await,
                Err(e) => Err(Failure::from(e)),
            });
        }
        let mut results = Vec::with_capacity(pending.len());
        for sent in pending {
            results.push(match sent {
                Ok(sent) => finish(&state, sent).await.map_err(|f| f.error),
                Err(f) => Err(f.error),
            });
        }
        results
    })
    .await
    .map_err(|_| out_of_time(deadline, "batch"))?;

    let mut failed = 0;
    let results: Vec<Value> = outcome
        .into_iter()
        .enumerate()
        .map(|(index, result)| {
            count(&state, result.is_ok());
            match result {
                Ok(published) => {
                    let mut value = json!(published);
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
                        "retryable": e.retryable() || e.code == ErrorCode::StorageFull,
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
    fn entries_keep_the_message_bytes_as_given() {
        let out =
            parse_entry(r#"{"subject":"a.b","message":{"b":1, "a":2.50},"msg_id":"m1"}"#).unwrap();
        assert_eq!(out.subject, "a.b");
        assert_eq!(&out.payload[..], br#"{"b":1,"a":2.50}"#);
        assert_eq!(
            out.headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str()),
            Some("m1")
        );
        assert!(!out.persist);
        let text =
            parse_entry(r#"{"subject":"a.b","message":"raw \"text\"","persist":true}"#).unwrap();
        assert_eq!(&text.payload[..], br#"raw "text""#);
        assert!(text.persist);
        let headers =
            parse_entry(r#"{"subject":"a.b","message":42,"headers":{"H":"v","L":["1","2"]}}"#)
                .unwrap();
        assert_eq!(&headers.payload[..], b"42");
        assert_eq!(
            headers
                .headers
                .get_all("L")
                .map(|v| v.as_str())
                .collect::<Vec<_>>(),
            vec!["1", "2"]
        );
    }

    #[test]
    fn bad_entries_are_invalid_message_data_naming_the_field() {
        for (body, names) in [
            (r#"{"subject":"a.*","message":1}"#, "subject"),
            (r#"{"subject":"a.b","message":null}"#, "message"),
            (r#"{"subject":"a.b"}"#, "message"),
            (r#"{"message":1}"#, "subject"),
            (r#"{"subject":5,"message":1}"#, "subject"),
            (r#"{"subject":"a b","message":1}"#, "subject"),
            (
                r#"{"subject":"a.b","message":1,"x":1}"#,
                "unknown field `x`",
            ),
            (r#"{"subject":"a.b","message":1,"headers":"x"}"#, "headers"),
            (
                r#"{"subject":"a.b","message":1,"headers":{"a b":"x"}}"#,
                "header name",
            ),
            (
                r#"{"subject":"a.b","message":1,"headers":{"é":"x"}}"#,
                "header name",
            ),
            (
                r#"{"subject":"a.b","message":1,"headers":{"H":"a\nb"}}"#,
                "line breaks",
            ),
            (
                r#"{"subject":"a.b","message":1,"msg_id":"a\r\nb"}"#,
                "msg_id",
            ),
            (r#"{"subject":"a.b","message":1,"msg_id":""}"#, "msg_id"),
            (r#"{"subject":"a.b","message":1,"msg_id":7}"#, "msg_id"),
            (
                r#"{"subject":"a.b","message":1,"persist":"yes"}"#,
                "persist",
            ),
            (r#""just a string""#, "a message is a JSON object"),
        ] {
            let e = parse_entry(body).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidMessageData, "{body}");
            assert!(e.message.contains(names), "{body}: {}", e.message);
        }
    }
}
