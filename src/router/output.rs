//! Publishing what routes produce: header conversion between async-nats and the rule
//! language, core or JetStream sends (acks awaited by the caller, so sends pipeline), and
//! dead letters for messages whose outputs could not be published.

use async_nats::jetstream::context::{Context as JetStream, PublishAckFuture};
use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;
use bytes::Bytes;

use crate::routing::route::{HEADER_ERROR, HEADER_ORIGINAL_SUBJECT, HEADER_ROUTE};
use crate::routing::{Headers, OutputMessage};
use crate::streams::AckFailure;

/// Headers of an incoming message in the rule language's form.
pub fn from_nats(headers: Option<&HeaderMap>) -> Headers {
    let mut out = Headers::new();
    if let Some(headers) = headers {
        for (name, values) in headers.iter() {
            for value in values {
                out.append(name.to_string(), value.as_str());
            }
        }
    }
    out
}

/// Headers of an outgoing message; `msg_id` becomes `Nats-Msg-Id`.
pub fn to_nats(headers: &Headers, msg_id: Option<&str>) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, values) in headers.iter() {
        for value in values {
            out.append(name, value.as_str());
        }
    }
    if let Some(id) = msg_id {
        out.insert(async_nats::header::NATS_MESSAGE_ID, id);
    }
    out
}

/// A send in progress: done for core NATS, an ack to await for JetStream.
pub enum Sent {
    Core,
    JetStream(PublishAckFuture),
}

/// Why an output was not published, and whether sending it again may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFailure {
    pub error: String,
    /// No responders, no ack in time, no connection, no room: retry, never dead-letter.
    pub transient: bool,
    /// A JetStream output refused for lack of room (its stream is marked as refusing).
    pub no_room: bool,
}

impl OutputFailure {
    fn jetstream(subject: &str, e: &async_nats::jetstream::context::PublishError) -> Self {
        let failure = AckFailure::of(e);
        OutputFailure {
            error: format!("publish to {subject} failed: {}", failure.summary()),
            transient: failure.is_transient(),
            no_room: matches!(failure, AckFailure::NoRoom(_)),
        }
    }
}

/// Sends one output. Core publishes are queued on the connection; JetStream ones return
/// the ack future so the caller can keep several in flight, in order. The message is only
/// borrowed, so a failed one can be sent again.
pub async fn send(
    client: &async_nats::Client,
    js: &JetStream,
    out: &OutputMessage,
) -> Result<Sent, OutputFailure> {
    let headers = to_nats(&out.headers, out.msg_id.as_deref());
    let subject = out.subject.clone();
    if out.jetstream {
        let message = PublishMessage::build()
            .payload(out.payload.clone())
            .headers(headers);
        js.send_publish(subject, message)
            .await
            .map(Sent::JetStream)
            .map_err(|e| OutputFailure::jetstream(&out.subject, &e))
    } else {
        let sent = if headers.is_empty() {
            client.publish(subject, out.payload.clone()).await
        } else {
            client
                .publish_with_headers(subject, headers, out.payload.clone())
                .await
        };
        sent.map(|()| Sent::Core).map_err(|e| OutputFailure {
            error: format!("publish to {} failed: {e}", out.subject),
            transient: e.kind() != async_nats::client::PublishErrorKind::MaxPayloadExceeded,
            no_room: false,
        })
    }
}

/// Waits for the stream's ack of a JetStream send.
pub async fn confirm(subject: &str, sent: Sent) -> Result<(), OutputFailure> {
    match sent {
        Sent::Core => Ok(()),
        Sent::JetStream(ack) => ack
            .await
            .map(|_| ())
            .map_err(|e| OutputFailure::jetstream(subject, &e)),
    }
}

/// The original message as a dead letter for `route`, when publishing its outputs failed.
pub fn publish_failure_letter(
    route: &crate::routing::CompiledRoute,
    subject: &str,
    headers: &Headers,
    payload: &Bytes,
    error: &str,
) -> OutputMessage {
    let mut out = Headers::new();
    for (name, values) in headers.iter() {
        if !name.to_ascii_lowercase().starts_with("nats-") {
            for v in values {
                out.append(name, v.as_str());
            }
        }
    }
    let error: String = error
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect();
    out.insert(HEADER_ROUTE, route.name.as_str());
    out.insert(HEADER_ERROR, error);
    out.insert(HEADER_ORIGINAL_SUBJECT, subject);
    OutputMessage {
        subject: route.dead_letter_subject.clone(),
        headers: out,
        payload: payload.clone(),
        jetstream: route.dead_letter_jetstream,
        msg_id: None,
    }
}
