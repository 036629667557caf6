//! Publishing what routes produce: header conversion between async-nats and the rule
//! language, core or JetStream sends (acks awaited by the caller, so sends pipeline), and
//! dead letters for messages whose outputs could not be published.

use async_nats::jetstream::context::{Context as JetStream, PublishAckFuture};
use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;
use bytes::Bytes;

use crate::rules::route::{HEADER_ERROR, HEADER_ORIGINAL_SUBJECT, HEADER_ROUTE};
use crate::rules::{Headers, OutputMessage};

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

/// Sends one output. Core publishes are queued on the connection; JetStream ones return
/// the ack future so the caller can keep several in flight, in order.
pub async fn send(
    client: &async_nats::Client,
    js: &JetStream,
    out: OutputMessage,
) -> Result<Sent, String> {
    let OutputMessage {
        subject,
        headers,
        payload,
        jetstream,
        msg_id,
    } = out;
    let headers = to_nats(&headers, msg_id.as_deref());
    if jetstream {
        let message = PublishMessage::build().payload(payload).headers(headers);
        js.send_publish(subject, message)
            .await
            .map(Sent::JetStream)
            .map_err(|e| e.to_string())
    } else if headers.is_empty() {
        client
            .publish(subject, payload)
            .await
            .map(|()| Sent::Core)
            .map_err(|e| e.to_string())
    } else {
        client
            .publish_with_headers(subject, headers, payload)
            .await
            .map(|()| Sent::Core)
            .map_err(|e| e.to_string())
    }
}

/// Waits for the stream's ack of a JetStream send.
pub async fn confirm(sent: Sent) -> Result<(), String> {
    match sent {
        Sent::Core => Ok(()),
        Sent::JetStream(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
    }
}

/// The original message as a dead letter for `route`, when publishing its outputs failed.
pub fn publish_failure_letter(
    route: &crate::rules::CompiledRoute,
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
    let error: String = format!("publish failed: {error}")
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
