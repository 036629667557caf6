//! Tapping a route: what it receives and what it publishes, dead-letters, drops, filters or
//! emits from state, as events for `GET /api/v1/routes/{name}/tap` and `prism-broker tap`.
//!
//! It costs nothing while no one taps: a route's task holds its [`RouteTap`] and checks one
//! atomic counter per message. While someone taps, events are built at most at the highest
//! rate a session asked for (a token bucket); the rest are counted as skipped, never
//! waited for. Events go out on a bounded broadcast channel: a session that reads too
//! slowly loses events (counted as skipped too), the route never waits for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::rules::{FailureAction, OutputMessage, RouteOutcome};

/// Events waiting for the slowest session, per route.
const CHANNEL: usize = 256;
/// The most payload text an event shows, in bytes.
const MAX_PAYLOAD: usize = 4096;

/// One thing a route did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TapEvent {
    /// received, published, emitted, dead_lettered, dropped, filtered, passed_through
    pub kind: &'static str,
    pub at_ms: i64,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every route's tap, by route name; created on first use and kept (they are small).
#[derive(Debug, Default)]
pub struct Taps {
    routes: Mutex<HashMap<String, Arc<RouteTap>>>,
}

impl Taps {
    /// The tap of `route`.
    pub fn route(&self, route: &str) -> Arc<RouteTap> {
        match self.routes.lock() {
            Ok(mut routes) => routes
                .entry(route.to_string())
                .or_insert_with(|| Arc::new(RouteTap::new()))
                .clone(),
            Err(_) => Arc::new(RouteTap::new()),
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` saved.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Bucket {
        Bucket {
            tokens: f64::from(rate),
            at: Instant::now(),
        }
    }

    fn take(&mut self, rate: u32) -> bool {
        let now = Instant::now();
        let rate = f64::from(rate.max(1));
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One route's tap.
#[derive(Debug)]
pub struct RouteTap {
    sessions: AtomicUsize,
    events: broadcast::Sender<Arc<TapEvent>>,
    /// The rate limits of the open sessions; the route builds events at the highest.
    limits: Mutex<Vec<u32>>,
    bucket: Mutex<Bucket>,
    /// Events not built because of the rate.
    skipped: AtomicU64,
}

impl RouteTap {
    fn new() -> RouteTap {
        RouteTap {
            sessions: AtomicUsize::new(0),
            events: broadcast::channel(CHANNEL).0,
            limits: Mutex::new(Vec::new()),
            bucket: Mutex::new(Bucket::new(1)),
            skipped: AtomicU64::new(0),
        }
    }

    /// True while someone taps: the one check the route pays per message otherwise.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.sessions.load(Ordering::Relaxed) > 0
    }

    /// Events not built because of the rate, so far.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    fn rate(&self) -> u32 {
        self.limits
            .lock()
            .map(|l| l.iter().copied().max().unwrap_or(1))
            .unwrap_or(1)
    }

    /// Builds and sends the event `make` gives, if the rate allows; otherwise counts it.
    pub fn offer(&self, make: impl FnOnce() -> TapEvent) {
        if !self.is_on() {
            return;
        }
        let rate = self.rate();
        let allowed = self
            .bucket
            .lock()
            .map(|mut b| b.take(rate))
            .unwrap_or(false);
        if !allowed {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // no receiver left between the check and now: nothing to do
        let _ = self.events.send(Arc::new(make()));
    }

    /// Opens a session at `limit` events a second.
    pub fn open(self: &Arc<Self>, limit: u32) -> TapSession {
        if let Ok(mut limits) = self.limits.lock() {
            limits.push(limit);
        }
        // a new session starts with a full second's worth of events
        if let Ok(mut bucket) = self.bucket.lock() {
            *bucket = Bucket::new(self.rate());
        }
        let events = self.events.subscribe();
        self.sessions.fetch_add(1, Ordering::Relaxed);
        TapSession {
            tap: self.clone(),
            events,
            limit,
            bucket: Bucket::new(limit),
            skipped_at_open: self.skipped(),
            dropped: 0,
        }
    }

    /// What a route did with one message (`received` is the input, then its outcome).
    pub fn note_outcome(&self, outcome: &RouteOutcome, emitted: bool, now_ms: i64) {
        if !self.is_on() {
            return;
        }
        match outcome {
            RouteOutcome::NoMatch => {}
            RouteOutcome::Filtered => self.offer(|| TapEvent {
                kind: "filtered",
                at_ms: now_ms,
                subject: String::new(),
                payload: None,
                error: None,
            }),
            RouteOutcome::Outputs { messages, .. } => {
                let kind = if emitted { "emitted" } else { "published" };
                for m in messages {
                    self.offer(|| output_event(kind, m, None, now_ms));
                }
            }
            RouteOutcome::Failed { error, action } => match action {
                FailureAction::DeadLetter(letter) => self.offer(|| {
                    output_event("dead_lettered", letter, Some(error.to_string()), now_ms)
                }),
                FailureAction::Drop => self.offer(|| TapEvent {
                    kind: "dropped",
                    at_ms: now_ms,
                    subject: String::new(),
                    payload: None,
                    error: Some(error.to_string()),
                }),
                FailureAction::PassThrough(messages) => {
                    for m in messages {
                        self.offer(|| {
                            output_event("passed_through", m, Some(error.to_string()), now_ms)
                        });
                    }
                }
            },
        }
    }

    /// A message the route received.
    pub fn note_received(&self, subject: &str, payload: &Bytes, now_ms: i64) {
        if !self.is_on() {
            return;
        }
        self.offer(|| TapEvent {
            kind: "received",
            at_ms: now_ms,
            subject: subject.to_string(),
            payload: Some(preview(payload)),
            error: None,
        });
    }
}

fn output_event(
    kind: &'static str,
    m: &OutputMessage,
    error: Option<String>,
    now_ms: i64,
) -> TapEvent {
    TapEvent {
        kind,
        at_ms: now_ms,
        subject: m.subject.clone(),
        payload: Some(preview(&m.payload)),
        error,
    }
}

/// A payload as text, cut after [`MAX_PAYLOAD`] bytes (at a character boundary).
fn preview(payload: &Bytes) -> String {
    let text = String::from_utf8_lossy(payload);
    if text.len() <= MAX_PAYLOAD {
        return text.into_owned();
    }
    let mut end = MAX_PAYLOAD;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// One open tap: its events at its own rate. Closing it (drop) stops the route building
/// events when it was the last.
pub struct TapSession {
    tap: Arc<RouteTap>,
    events: broadcast::Receiver<Arc<TapEvent>>,
    limit: u32,
    bucket: Bucket,
    skipped_at_open: u64,
    /// Events this session did not show (its own rate, or it read too slowly).
    dropped: u64,
}

impl TapSession {
    /// The next event at this session's rate; `None` when the route's tap is gone.
    pub async fn next(&mut self) -> Option<Arc<TapEvent>> {
        loop {
            match self.events.recv().await {
                Ok(event) => {
                    if self.bucket.take(self.limit) {
                        return Some(event);
                    }
                    self.dropped += 1;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => self.dropped += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Events skipped since the session opened: not built for the rate, not shown.
    pub fn skipped(&self) -> u64 {
        self.tap.skipped().saturating_sub(self.skipped_at_open) + self.dropped
    }
}

impl Drop for TapSession {
    fn drop(&mut self) {
        if let Ok(mut limits) = self.tap.limits.lock() {
            if let Some(i) = limits.iter().position(|l| *l == self.limit) {
                limits.swap_remove(i);
            }
        }
        self.tap.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn costs_nothing_when_off_and_keeps_to_the_rate_when_on() {
        let taps = Taps::default();
        let tap = taps.route("r");
        let mut built = 0;
        tap.offer(|| {
            built += 1;
            TapEvent {
                kind: "received",
                at_ms: 0,
                subject: "a".into(),
                payload: None,
                error: None,
            }
        });
        assert_eq!(built, 0, "no session: nothing is built");
        assert_eq!(tap.skipped(), 0);
        let mut session = taps.route("r").open(5);
        assert!(tap.is_on());
        for i in 0..100 {
            tap.note_received("a.b", &Bytes::from(format!("{{\"i\":{i}}}")), i);
        }
        let mut got = Vec::new();
        while let Ok(Some(e)) =
            tokio::time::timeout(Duration::from_millis(50), session.next()).await
        {
            got.push(e);
        }
        assert!(!got.is_empty() && got.len() <= 6, "{}", got.len());
        assert_eq!(got[0].kind, "received");
        assert_eq!(got[0].payload.as_deref(), Some("{\"i\":0}"));
        assert_eq!(session.skipped() + got.len() as u64, 100);
        drop(session);
        assert!(!tap.is_on());
    }

    #[test]
    fn previews_are_cut_at_a_character() {
        let long = Bytes::from("é".repeat(5000));
        let p = preview(&long);
        assert!(p.len() <= MAX_PAYLOAD + '…'.len_utf8());
        assert!(p.ends_with('…'));
    }
}
