//! What the rest of the service may know about NATS without asking an actor: whether the
//! supervised server is up, its pid, the ports it really listens on, its restart count,
//! client reconnects, and the latest monitoring snapshots. Written by `NatsProcessActor` and the client's event callback,
//! read lock-free (or with a short read lock) by handlers and metrics.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::SystemTime;

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
    last_error: RwLock<Option<String>>,
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
            last_error: RwLock::new(None),
            connections: watch::channel(0).0,
        }
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

    pub fn jsz(&self) -> Option<Snapshot> {
        self.jsz.read().ok().and_then(|v| v.clone())
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
