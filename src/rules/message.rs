//! What a route hands to NATS: [`OutputMessage`] (subject, headers, payload, JetStream or
//! core, `msg_id`) and its last step, [`OutputMessage::into_nats`], the subject, header map
//! and payload exactly as async-nats takes them. Everything an output holds was checked
//! when it was made (the subject by the template that rendered it, the headers by
//! [`Headers`]), so that step cannot fail; a message that could not be made valid never
//! became an `OutputMessage`, it went to `on_error`.
//!
//! Also here, once for every builder of outgoing headers: which incoming headers are carried
//! over ([`carried_headers`]: never the `Nats-*` server controls), how an error becomes the
//! `Prism-Error` header value ([`error_header`]) and other text a header value
//! ([`header_text`]).
//!
//! Layer 3 (the compiled route's output) of [`crate::rules`]; imports only `headers`.

use std::fmt;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::headers::Headers;

/// Headers the router puts on dead letters.
pub const HEADER_ROUTE: HeaderName = HeaderName::from_static("Prism-Route");
pub const HEADER_ERROR: HeaderName = HeaderName::from_static("Prism-Error");
pub const HEADER_ORIGINAL_SUBJECT: HeaderName = HeaderName::from_static("Prism-Original-Subject");

/// The longest `Prism-Error` value, in characters; longer errors are cut.
const MAX_ERROR_CHARS: usize = 512;

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputMessage {
    pub subject: String,
    pub headers: Headers,
    #[serde(serialize_with = "payload_as_json")]
    pub payload: Bytes,
    /// Publish through JetStream and wait for the stream's ack.
    pub jetstream: bool,
    /// To send as `Nats-Msg-Id` (server-side de-duplication).
    pub msg_id: Option<HeaderValue>,
}

/// An output as async-nats takes it (`publish_with_headers`, `send_publish`).
#[derive(Debug, Clone, PartialEq)]
pub struct NatsMessage {
    pub subject: String,
    /// The output's headers, and `Nats-Msg-Id` when it has a `msg_id`.
    pub headers: HeaderMap,
    pub payload: Bytes,
    pub jetstream: bool,
}

impl OutputMessage {
    /// [`OutputMessage::into_nats`] of a copy: the router keeps the message, so one that
    /// fails transiently can be sent again.
    pub fn to_nats(&self) -> NatsMessage {
        let mut headers = self.headers.to_nats();
        if let Some(id) = &self.msg_id {
            headers.insert(NATS_MESSAGE_ID, id.clone());
        }
        NatsMessage {
            subject: self.subject.clone(),
            headers,
            payload: self.payload.clone(),
            jetstream: self.jetstream,
        }
    }

    /// The message as async-nats sends it.
    pub fn into_nats(self) -> NatsMessage {
        let mut headers = self.headers.into_nats();
        if let Some(id) = self.msg_id {
            headers.insert(NATS_MESSAGE_ID, id);
        }
        NatsMessage {
            subject: self.subject,
            headers,
            payload: self.payload,
            jetstream: self.jetstream,
        }
    }
}

/// Payloads show as JSON when they are JSON, as text otherwise (dry runs, test output).
fn payload_as_json<S: Serializer>(payload: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(v) => v.serialize(s),
        Err(_) => s.serialize_str(&String::from_utf8_lossy(payload)),
    }
}

/// `Nats-*` headers are per-message server controls (`Nats-Msg-Id`, `Nats-Expected-*`);
/// carrying them to another subject would make the server drop or reject the copy.
fn is_server_control(name: &str) -> bool {
    name.as_bytes()
        .get(..5)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"nats-"))
}

/// The incoming headers an outgoing message keeps: all but the `Nats-*` server controls.
pub fn carried_headers(incoming: &Headers) -> Headers {
    let mut out = Headers::new();
    for (name, values) in incoming.iter() {
        if !is_server_control(name.as_ref()) {
            for v in values {
                out.append(name.clone(), v.clone());
            }
        }
    }
    out
}

/// Text as a header value: control characters (line breaks among them) become spaces,
/// so the value is always valid. For text that names something (a route, a subject) and
/// comes from elsewhere than a template.
pub fn header_text(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    // without control characters the value is always valid; an empty one says the least
    clean.parse().unwrap_or_default()
}

/// An error as a `Prism-Error` value, said once: a part repeated by nested errors
/// (`publish failed: publish failed: …`) appears once, the text is cut after
/// [`MAX_ERROR_CHARS`] characters, and control characters become spaces.
pub fn error_header(error: &dyn fmt::Display) -> HeaderValue {
    let text = error.to_string();
    let mut said = String::with_capacity(text.len().min(MAX_ERROR_CHARS + 4));
    let mut last: Option<&str> = None;
    for part in text.split(": ") {
        if last == Some(part) {
            continue;
        }
        if last.is_some() {
            said.push_str(": ");
        }
        said.push_str(part);
        last = Some(part);
    }
    if said.chars().count() > MAX_ERROR_CHARS {
        said = said.chars().take(MAX_ERROR_CHARS).collect();
        said.push('…');
    }
    header_text(&said)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_controls_are_recognised_without_slicing_text() {
        assert!(is_server_control("Nats-Msg-Id"));
        assert!(is_server_control("NATS-EXPECTED-STREAM"));
        assert!(!is_server_control("Nats"));
        assert!(!is_server_control("X-Nats-Id"));
        // byte 5 inside a multibyte character must not panic
        assert!(!is_server_control("abcdé"));
        assert!(!is_server_control("日本語"));
        assert!(!is_server_control(""));
    }

    #[test]
    fn carried_headers_leave_out_server_controls() {
        let incoming: Headers = [("Nats-Msg-Id", "x"), ("X-In", "1"), ("x-in", "2")]
            .into_iter()
            .collect();
        let out = carried_headers(&incoming);
        assert_eq!(out.get("Nats-Msg-Id"), None);
        assert_eq!(out.get_all("X-In").len(), 2);
    }

    #[test]
    fn errors_are_said_once_on_one_line_and_cut() {
        let e = error_header(&"publish failed: publish failed: timed out");
        assert_eq!(e.as_str(), "publish failed: timed out");
        assert_eq!(error_header(&"a\nb\r\nc").as_str(), "a b  c");
        let long = error_header(&"é".repeat(2000));
        assert_eq!(long.as_str().chars().count(), MAX_ERROR_CHARS + 1);
        assert!(long.as_str().ends_with('…'));
    }

    #[test]
    fn into_nats_adds_the_msg_id() {
        let out = OutputMessage {
            subject: "a.b".into(),
            headers: [("X-A", "1")].into_iter().collect(),
            payload: Bytes::from_static(b"{}"),
            jetstream: true,
            msg_id: Some("id-1".parse().unwrap()),
        };
        let nats = out.into_nats();
        assert_eq!(nats.subject, "a.b");
        assert_eq!(
            nats.headers.get(NATS_MESSAGE_ID).map(HeaderValue::as_str),
            Some("id-1")
        );
        assert_eq!(nats.headers.get("X-A").map(HeaderValue::as_str), Some("1"));
        assert!(nats.jetstream);
    }
}
