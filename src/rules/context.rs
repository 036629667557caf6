//! Layer 1 (primitive): what templates, conditions and steps may read about the message
//! being routed. Imports nothing but [`Headers`](super::headers::Headers).

use super::headers::Headers;

/// The message being routed, as templates, conditions and steps see it.
#[derive(Debug, Clone, Copy)]
pub struct MessageContext<'a> {
    /// The subject the message arrived on.
    pub subject: &'a str,
    /// Captured values by capture index of the route's `from`.
    pub captures: &'a [&'a str],
    /// Headers of the incoming message.
    pub headers: &'a Headers,
    /// The routing time, epoch milliseconds (`{@now_ms}`).
    pub now_ms: i64,
}
