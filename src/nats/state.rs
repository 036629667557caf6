//! What the rest of the service may know about NATS without asking an actor: whether the
//! supervised server is up, its pid, the ports it really listens on, its restarts and
//! crashes (recent ones, crash loop, hang restarts), whether its JetStream answers the
//! supervisor's probe, a duplicate server name its cluster reported, client reconnects, and
//! the latest monitoring snapshots (`/jsz` from the supervisor's probe, `/varz` and
//! `/routez` from the status refresher). Written by `NatsProcessActor`, the `StatsActor`
//! and the client's event callback, read lock-free (or with a short read lock) by handlers
//! and metrics.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::sync::watch;

/// Ports of the supervised server (zero when external, or while a configured `0` has not
/// been picked by nats-server yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerPorts {
    pub client: u16,
    pub http: u16,
    pub cluster: Option<u16>,
}

#[derive(Debug)]
pub struct NatsState {
    /// True when we supervise the server process ourselves.
    pub supervised: bool,
    /// The configured ports until the child is up, then the ports it really listens on
    /// (a configured `0` is picked by nats-server and kept for its restarts).
    ports: RwLock<ServerPorts>,
    server_up: AtomicBool,
    pid: AtomicU32,
    restarts: AtomicU64,
    client_reconnects: AtomicU64,
    client_connected: AtomicBool,
    client_ever_connected: AtomicBool,
    varz: RwLock<Option<Snapshot>>,
    jsz: RwLock<Option<Snapshot>>,
    routez: RwLock<Option<Snapshot>>,
    last_error: RwLock<Option<String>>,
    /// When the child crashed (exited unexpectedly or was killed as hung), oldest first;
    /// only those within the crash window are kept.
    crashes: Mutex<VecDeque<Instant>>,
    crash_policy: CrashPolicy,
    hang_restarts: AtomicU64,
    jetstream: RwLock<JetStreamProbe>,
    duplicate_name: RwLock<Option<(String, Instant)>>,
    /// Bumped at every (re)connection of the client; actors watch it to re-ensure state.
    connections: watch::Sender<u64>,
}

impl Default for NatsState {
    fn default() -> Self {
        NatsState {
            supervised: false,
            ports: RwLock::new(ServerPorts::default()),
            server_up: AtomicBool::new(false),
            pid: AtomicU32::new(0),
            restarts: AtomicU64::new(0),
            client_reconnects: AtomicU64::new(0),
            client_connected: AtomicBool::new(false),
            client_ever_connected: AtomicBool::new(false),
            varz: RwLock::new(None),
            jsz: RwLock::new(None),
            routez: RwLock::new(None),
            last_error: RwLock::new(None),
            crashes: Mutex::new(VecDeque::new()),
            crash_policy: CrashPolicy::default(),
            hang_restarts: AtomicU64::new(0),
            jetstream: RwLock::new(JetStreamProbe::default()),
            duplicate_name: RwLock::new(None),
            connections: watch::channel(0).0,
        }
    }
}

/// When crashes count as recent, and how many make a crash loop
/// (`nats.restart.crash_window`, `nats.restart.crash_loop_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashPolicy {
    pub window: Duration,
    pub loop_after: u32,
}

impl Default for CrashPolicy {
    fn default() -> Self {
        CrashPolicy {
            window: Duration::from_secs(300),
            loop_after: 3,
        }
    }
}

/// How long a duplicate server name reported by the cluster stays in the reports after it
/// was last seen (nats-server reports it at every route attempt, about every second).
pub const DUPLICATE_NAME_MEMORY: Duration = Duration::from_secs(30);

/// The supervisor's view of the child's JetStream (its `/jsz` probe).
#[derive(Debug, Clone, Default)]
pub struct JetStreamProbe {
    /// The latest probe of the current child got an answer with JetStream enabled.
    pub answering: bool,
    /// When JetStream last answered (the current child's start counts as an answer: it
    /// passed `/healthz?js-enabled-only=true`).
    pub last_answer: Option<SystemTime>,
    last_answer_at: Option<Instant>,
    /// Why the latest probe failed.
    pub error: Option<String>,
}

impl JetStreamProbe {
    /// How long JetStream has not answered, and why; `None` while it answers.
    pub fn silence(&self) -> Option<(Duration, String)> {
        if self.answering {
            return None;
        }
        let silent = self
            .last_answer_at
            .map(|at| at.elapsed())
            .unwrap_or_default();
        Some((
            silent,
            self.error.clone().unwrap_or_else(|| "no answer yet".into()),
        ))
    }
}

/// A monitoring endpoint response and when it was taken.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub taken_at: SystemTime,
    pub body: Value,
}

impl NatsState {
    pub fn supervised(ports: ServerPorts) -> Self {
        NatsState {
            supervised: true,
            ports: RwLock::new(ports),
            ..Default::default()
        }
    }

    pub fn external() -> Self {
        NatsState::default()
    }

    /// This state with `policy` deciding which crashes are recent and what a crash loop is.
    pub fn with_crash_policy(mut self, policy: CrashPolicy) -> Self {
        self.crash_policy = policy;
        self
    }

    pub fn crash_policy(&self) -> CrashPolicy {
        self.crash_policy
    }

    /// Crashes of the child (unexpected exits, hang restarts) within the crash window.
    pub fn recent_crashes(&self) -> usize {
        let Ok(mut crashes) = self.crashes.lock() else {
            return 0;
        };
        Self::forget_old(&mut crashes, self.crash_policy.window);
        crashes.len()
    }

    /// At least `crash_loop_after` crashes within the crash window.
    pub fn crash_looping(&self) -> bool {
        self.recent_crashes() >= self.crash_policy.loop_after as usize
    }

    /// Restarts of a child whose JetStream stopped answering (`nats.hang_timeout`).
    pub fn hang_restarts(&self) -> u64 {
        self.hang_restarts.load(Ordering::Relaxed)
    }

    /// The supervisor's latest view of the child's JetStream.
    pub fn jetstream_probe(&self) -> JetStreamProbe {
        self.jetstream.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// A supervised, running child whose JetStream does not answer: for how long, and why.
    pub fn jetstream_silence(&self) -> Option<(Duration, String)> {
        if !self.supervised || !self.server_up() {
            return None;
        }
        self.jetstream_probe().silence()
    }

    /// A server name that the cluster reported as a duplicate of ours (or of a peer's)
    /// within [`DUPLICATE_NAME_MEMORY`], and how long ago it was last reported.
    pub fn duplicate_name(&self) -> Option<(String, Duration)> {
        let slot = self.duplicate_name.read().ok()?;
        let (name, at) = slot.as_ref()?;
        let ago = at.elapsed();
        (ago <= DUPLICATE_NAME_MEMORY).then(|| (name.clone(), ago))
    }

    fn forget_old(crashes: &mut VecDeque<Instant>, window: Duration) {
        while crashes.front().is_some_and(|at| at.elapsed() > window) {
            crashes.pop_front();
        }
    }

    pub fn server_up(&self) -> bool {
        self.server_up.load(Ordering::Acquire)
    }

    pub fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::Acquire) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// The ports the supervised server listens on; all zero when external.
    pub fn ports(&self) -> ServerPorts {
        self.ports.read().map(|p| *p).unwrap_or_default()
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub fn client_reconnects(&self) -> u64 {
        self.client_reconnects.load(Ordering::Relaxed)
    }

    pub fn client_connected(&self) -> bool {
        self.client_connected.load(Ordering::Acquire)
    }

    pub fn varz(&self) -> Option<Snapshot> {
        self.varz.read().ok().and_then(|v| v.clone())
    }

    /// The latest `/jsz` of the supervised server (the supervisor's probe, every second).
    pub fn jsz(&self) -> Option<Snapshot> {
        self.jsz.read().ok().and_then(|v| v.clone())
    }

    /// The latest `/routez` of a clustered supervised server (the status refresher).
    pub fn routez(&self) -> Option<Snapshot> {
        self.routez.read().ok().and_then(|v| v.clone())
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.read().ok().and_then(|v| v.clone())
    }

    pub(crate) fn mark_up(&self, pid: u32) {
        self.pid.store(pid, Ordering::Release);
        self.server_up.store(true, Ordering::Release);
        self.set_error(None);
    }

    pub(crate) fn set_ports(&self, ports: ServerPorts) {
        if let Ok(mut slot) = self.ports.write() {
            *slot = ports;
        }
    }

    pub(crate) fn mark_down(&self) {
        self.server_up.store(false, Ordering::Release);
        self.pid.store(0, Ordering::Release);
    }

    pub(crate) fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// The child crashed now (`hang`: it was killed because its JetStream stopped
    /// answering); returns the recent crashes including this one.
    pub(crate) fn count_crash(&self, hang: bool) -> usize {
        if hang {
            self.hang_restarts.fetch_add(1, Ordering::Relaxed);
        }
        let Ok(mut crashes) = self.crashes.lock() else {
            return 0;
        };
        crashes.push_back(Instant::now());
        Self::forget_old(&mut crashes, self.crash_policy.window);
        // Bounded whatever the window: a loop restarts at most every initial_backoff.
        while crashes.len() > 10_000 {
            crashes.pop_front();
        }
        crashes.len()
    }

    /// A new child passed its start-up probe: its JetStream answered just now.
    pub(crate) fn reset_probe(&self) {
        if let Ok(mut probe) = self.jetstream.write() {
            *probe = JetStreamProbe {
                answering: true,
                last_answer: Some(SystemTime::now()),
                last_answer_at: Some(Instant::now()),
                error: None,
            };
        }
    }

    /// The outcome of one `/jsz` probe: its body (JetStream answered), or why not.
    pub(crate) fn record_probe(&self, outcome: Result<Value, String>) {
        let answered = match outcome {
            Ok(body) => {
                self.set_jsz(body);
                None
            }
            Err(e) => Some(e),
        };
        if let Ok(mut probe) = self.jetstream.write() {
            match answered {
                None => {
                    probe.answering = true;
                    probe.last_answer = Some(SystemTime::now());
                    probe.last_answer_at = Some(Instant::now());
                    probe.error = None;
                }
                Some(e) => {
                    probe.answering = false;
                    probe.error = Some(e);
                }
            }
        }
    }

    pub(crate) fn record_duplicate_name(&self, name: String) {
        if let Ok(mut slot) = self.duplicate_name.write() {
            *slot = Some((name, Instant::now()));
        }
    }

    pub(crate) fn set_routez(&self, body: Value) {
        if let Ok(mut slot) = self.routez.write() {
            *slot = Some(Snapshot {
                taken_at: SystemTime::now(),
                body,
            });
        }
    }
    pub(crate) fn set_client_connected(&self, connected: bool) {
        let was = self.client_connected.swap(connected, Ordering::AcqRel);
        if connected && !was && self.client_ever_connected.swap(true, Ordering::AcqRel) {
            // The first connection is not a reconnect; every later one is.
            self.client_reconnects.fetch_add(1, Ordering::Relaxed);
        }
        if connected && !was {
            self.connections.send_modify(|n| *n += 1);
        }
    }

    /// How many times the shared client connected (0 before the first connection).
    pub fn connection_generation(&self) -> u64 {
        *self.connections.borrow()
    }

    /// Changes at every (re)connection of the shared client.
    pub fn watch_connections(&self) -> watch::Receiver<u64> {
        self.connections.subscribe()
    }

    pub(crate) fn set_varz(&self, body: Value) {
        if let Ok(mut slot) = self.varz.write() {
            *slot = Some(Snapshot {
                taken_at: SystemTime::now(),
                body,
            });
        }
    }

    pub(crate) fn set_jsz(&self, body: Value) {
        if let Ok(mut slot) = self.jsz.write() {
            *slot = Some(Snapshot {
                taken_at: SystemTime::now(),
                body,
            });
        }
    }

    pub(crate) fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.write() {
            *slot = error;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn crashes_are_counted_within_the_window_and_make_a_loop() {
        let state = NatsState::supervised(ServerPorts::default()).with_crash_policy(CrashPolicy {
            window: Duration::from_millis(200),
            loop_after: 2,
        });
        assert_eq!((state.recent_crashes(), state.crash_looping()), (0, false));
        assert_eq!(state.count_crash(false), 1);
        assert!(!state.crash_looping());
        assert_eq!(state.count_crash(true), 2);
        assert!(state.crash_looping());
        assert_eq!(state.hang_restarts(), 1);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(state.recent_crashes(), 0, "old crashes are forgotten");
        assert!(!state.crash_looping());
        assert_eq!(state.hang_restarts(), 1, "the total stays");
    }

    #[test]
    fn a_failed_probe_is_silence_until_jetstream_answers_again() {
        let state = NatsState::supervised(ServerPorts::default());
        state.mark_up(7);
        state.reset_probe();
        assert!(state.jetstream_silence().is_none());
        state.record_probe(Err("/jsz timed out after 2s".into()));
        let (silent, why) = state.jetstream_silence().unwrap();
        assert!(silent < Duration::from_secs(5));
        assert_eq!(why, "/jsz timed out after 2s");
        state.record_probe(Ok(serde_json::json!({ "memory": 0 })));
        assert!(state.jetstream_silence().is_none());
        assert!(state.jsz().is_some());
        state.record_probe(Err("refused".into()));
        state.mark_down();
        assert!(
            state.jetstream_silence().is_none(),
            "a child that is down is reported as down, not as silent"
        );
        assert!(NatsState::external().jetstream_silence().is_none());
    }

    #[test]
    fn a_duplicate_name_is_remembered_for_a_while() {
        let state = NatsState::supervised(ServerPorts::default());
        assert!(state.duplicate_name().is_none());
        state.record_duplicate_name("node1".into());
        let (name, ago) = state.duplicate_name().unwrap();
        assert_eq!(name, "node1");
        assert!(ago <= DUPLICATE_NAME_MEMORY);
    }
}
