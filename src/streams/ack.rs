//! What a failed JetStream publish means, for the REST API and the router alike: whether the
//! message may be retried unchanged (no responders, no ack in time, lost connection), whether
//! the stream has no room (answered as storage full, and marked in [`StreamsState`]), or
//! whether it can never succeed (too large). Pure classification; no I/O.

use async_nats::jetstream::context::{PublishError, PublishErrorKind};

/// JetStream error codes that mean "no room" on a publish.
/// 10077: the store refused ("maximum messages exceeded", "maximum bytes exceeded" on a
/// `discard: new` stream); 10023: the server's storage limit is reached; 10047 / 10028: no
/// storage / memory resources.
const NO_ROOM_CODES: [u64; 4] = [10077, 10023, 10047, 10028];
/// "message size exceeds maximum allowed" (the stream's `max_msg_size`).
const TOO_LARGE_CODE: u64 = 10054;

/// Why a JetStream publish did not end with an ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckFailure {
    /// Nobody answered for the stream's subjects: the stream has no leader (election, lost
    /// quorum) or does not exist right now. Nothing was stored; retry.
    NoResponders,
    /// No ack within the deadline: the message may or may not be stored; retry with the
    /// same `Nats-Msg-Id` to stay exactly-once within the duplicate window.
    TimedOut,
    /// The connection broke before the ack arrived.
    Disconnected,
    /// The stream or the server's store has no room.
    NoRoom(String),
    /// Larger than the server's `max_payload` or the stream's `max_msg_size`.
    TooLarge(String),
    /// Anything else the server refused.
    Rejected(String),
}

impl AckFailure {
    /// Classifies an async-nats publish error (from the send or from the ack).
    pub fn of(error: &PublishError) -> AckFailure {
        match error.kind() {
            PublishErrorKind::StreamNotFound => AckFailure::NoResponders,
            PublishErrorKind::TimedOut => AckFailure::TimedOut,
            PublishErrorKind::BrokenPipe => AckFailure::Disconnected,
            PublishErrorKind::MaxPayloadExceeded => AckFailure::TooLarge(error.to_string()),
            _ => {
                let api = std::error::Error::source(error)
                    .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>());
                match api {
                    Some(api) => {
                        // Display is "description (code N, error code M)".
                        let text = api.to_string();
                        let description = text.split(" (code ").next().unwrap_or(&text);
                        Self::of_code(api.error_code().0, description)
                    }
                    None => AckFailure::Rejected(error.to_string()),
                }
            }
        }
    }

    /// Classifies a JetStream API error by its `err_code` and description.
    pub fn of_code(code: u64, description: &str) -> AckFailure {
        if NO_ROOM_CODES.contains(&code) {
            AckFailure::NoRoom(description.to_string())
        } else if code == TOO_LARGE_CODE {
            AckFailure::TooLarge(description.to_string())
        } else {
            AckFailure::Rejected(format!("{description} (jetstream error {code})"))
        }
    }

    /// True when the same publish may succeed later: the router keeps such messages (and
    /// does not count the attempt against `max_deliver`), the API answers 503.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AckFailure::NoResponders
                | AckFailure::TimedOut
                | AckFailure::Disconnected
                | AckFailure::NoRoom(_)
        )
    }

    /// A short lowercase description (for router errors and headers).
    pub fn summary(&self) -> String {
        match self {
            AckFailure::NoResponders => {
                "no responders (the stream has no leader or is missing)".into()
            }
            AckFailure::TimedOut => "no acknowledgement in time".into(),
            AckFailure::Disconnected => "connection lost before the acknowledgement".into(),
            AckFailure::NoRoom(reason) => format!("no room: {reason}"),
            AckFailure::TooLarge(reason) => format!("too large: {reason}"),
            AckFailure::Rejected(reason) => format!("refused: {reason}"),
        }
    }

    /// A lowercase description naming the stream.
    pub fn describe(&self, stream: &str) -> String {
        match self {
            AckFailure::NoResponders => format!(
                "stream {stream} did not answer (no responders: it has no leader right now or is being re-created); the message was not stored"
            ),
            AckFailure::TimedOut => format!(
                "stream {stream} did not acknowledge in time; the message may or may not be stored (retry with the same msg_id to avoid a duplicate)"
            ),
            AckFailure::Disconnected => format!(
                "the connection to nats broke before stream {stream} acknowledged; the message may or may not be stored"
            ),
            AckFailure::NoRoom(reason) => format!("stream {stream} has no room: {reason}"),
            AckFailure::TooLarge(reason) => format!("message too large for stream {stream}: {reason}"),
            AckFailure::Rejected(reason) => format!("stream {stream} refused the message: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_codes_seen_on_nats_server_2_9() {
        // Answers of a real nats-server 2.9.10 to publishes into full streams.
        assert_eq!(
            AckFailure::of_code(10077, "maximum messages exceeded"),
            AckFailure::NoRoom("maximum messages exceeded".into())
        );
        assert_eq!(
            AckFailure::of_code(10023, "insufficient resources"),
            AckFailure::NoRoom("insufficient resources".into())
        );
        assert!(matches!(
            AckFailure::of_code(10054, "message size exceeds maximum allowed"),
            AckFailure::TooLarge(_)
        ));
        assert!(matches!(
            AckFailure::of_code(10071, "wrong last sequence"),
            AckFailure::Rejected(_)
        ));
    }

    #[test]
    fn transient_failures_are_the_retryable_ones() {
        assert!(AckFailure::NoResponders.is_transient());
        assert!(AckFailure::TimedOut.is_transient());
        assert!(AckFailure::NoRoom(String::new()).is_transient());
        assert!(!AckFailure::TooLarge(String::new()).is_transient());
        assert!(!AckFailure::Rejected(String::new()).is_transient());
        assert!(AckFailure::NoResponders
            .describe("MARKET_DATA")
            .contains("MARKET_DATA"));
    }
}
