//! Publishing what routes produce: core or JetStream sends of the messages the rule
//! language made ready for async-nats (`OutputMessage::into_nats`; acks awaited by the
//! caller, so sends pipeline), and the headers of incoming messages in its form.

use async_nats::jetstream::context::{Context as JetStream, PublishAckFuture};
use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;

use crate::rules::{Headers, NatsMessage, OutputMessage};

/// Headers of an incoming message in the rule language's form.
pub fn from_nats(headers: Option<&HeaderMap>) -> Headers {
    headers.map(Headers::from_nats).unwrap_or_default()
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
    let NatsMessage {
        subject,
        headers,
        payload,
        jetstream,
    } = out.into_nats();
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
