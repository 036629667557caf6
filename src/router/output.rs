//! Publishing what routes produce: core or JetStream sends of the messages the rule
//! language made ready for async-nats ([`OutputMessage::to_nats`]; acks awaited by the
//! caller, so sends pipeline), what a failed send means (transient or not), and the headers
//! of incoming messages in the rule language's form.

use async_nats::jetstream::context::{Context as JetStream, PublishAckFuture};
use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;

use crate::rules::{Headers, NatsMessage, OutputMessage};
use crate::streams::AckFailure;

/// Headers of an incoming message in the rule language's form.
pub fn from_nats(headers: Option<&HeaderMap>) -> Headers {
    headers.map(Headers::from_nats).unwrap_or_default()
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
            error: format!("{subject}: {}", failure.summary()),
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
    let NatsMessage {
        subject,
        headers,
        payload,
        jetstream,
    } = out.to_nats();
    if jetstream {
        let message = PublishMessage::build().payload(payload).headers(headers);
        js.send_publish(subject, message)
            .await
            .map(Sent::JetStream)
            .map_err(|e| OutputFailure::jetstream(&out.subject, &e))
    } else {
        let sent = if headers.is_empty() {
            client.publish(subject, payload).await
        } else {
            client.publish_with_headers(subject, headers, payload).await
        };
        sent.map(|()| Sent::Core).map_err(|e| OutputFailure {
            error: format!("{}: {e}", out.subject),
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
