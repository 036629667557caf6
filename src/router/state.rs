//! What handlers may know about the router without asking the actor: the active route
//! table and its version, how the last reload went, and which routes really consume.
//!
//! A route is live while its task says it is subscribed (core) or consuming (JetStream)
//! *on the current connection*: every reconnection of the router's connection starts a new
//! epoch, and a route counts as live again only once its task confirmed it for that epoch
//! (a core subscription flushed, a durable consumer checked or re-created).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::rules::{RouteTable, RuleProblem};

/// How the latest reload attempt ended.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub at: SystemTime,
    pub reason: String,
    pub ok: bool,
    pub problems: Vec<RuleProblem>,
}

#[derive(Debug)]
pub struct RouterState {
    table: RwLock<Arc<RouteTable>>,
    version: AtomicU64,
    last_reload: RwLock<Option<ReloadStatus>>,
    /// Routes whose task is subscribed or consuming: the task's id and the connection epoch
    /// it said so in. During a reload two tasks of one route may overlap; the newest wins.
    live: Mutex<HashMap<String, (u64, u64)>>,
    /// The router's connection is up.
    connected: AtomicBool,
    /// Bumped at every (re)connection of the router's connection.
    epoch: watch::Sender<u64>,
    /// What route taps (`GET /api/v1/routes/{name}/tap`) listen to.
    pub taps: super::tap::Taps,
}

impl RouterState {
    /// The state with the table loaded at start-up as version 1.
    pub fn new(table: RouteTable) -> Self {
        RouterState {
            table: RwLock::new(Arc::new(table)),
            version: AtomicU64::new(1),
            last_reload: RwLock::new(None),
            live: Mutex::new(HashMap::new()),
            connected: AtomicBool::new(false),
            epoch: watch::channel(0).0,
            taps: super::tap::Taps::default(),
        }
    }

    /// The router's connection went up (a new epoch) or down.
    pub(crate) fn set_connected(&self, connected: bool) {
        let was = self.connected.swap(connected, Ordering::AcqRel);
        if connected && !was {
            self.epoch.send_modify(|e| *e += 1);
        }
    }

    /// Changes at every (re)connection of the router's connection.
    pub(crate) fn watch_epoch(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// The current connection epoch (0 before the first connection).
    pub(crate) fn epoch(&self) -> u64 {
        *self.epoch.borrow()
    }

    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().map(|t| t.clone()).unwrap_or_default()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn last_reload(&self) -> Option<ReloadStatus> {
        self.last_reload.read().ok().and_then(|r| r.clone())
    }

    /// Installs a new table; returns its version.
    pub(crate) fn install(&self, table: Arc<RouteTable>) -> u64 {
        if let Ok(mut slot) = self.table.write() {
            *slot = table;
        }
        self.version.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// True while the route's task is subscribed (core) or consuming (JetStream) on the
    /// current connection.
    pub fn is_live(&self, route: &str) -> bool {
        if !self.connected.load(Ordering::Acquire) {
            return false;
        }
        let epoch = self.epoch();
        self.live
            .lock()
            .map(|l| l.get(route).is_some_and(|(_, e)| *e == epoch))
            .unwrap_or(false)
    }

    /// True while task `task` of `route` (not an older one being replaced) consumes on the
    /// current connection.
    pub(crate) fn is_live_task(&self, route: &str, task: u64) -> bool {
        if !self.connected.load(Ordering::Acquire) {
            return false;
        }
        let epoch = self.epoch();
        self.live
            .lock()
            .map(|l| l.get(route) == Some(&(task, epoch)))
            .unwrap_or(false)
    }

    /// Routes of the active table whose task is not subscribed or consuming.
    pub fn not_live(&self) -> Vec<String> {
        let table = self.table();
        table
            .routes()
            .iter()
            .filter(|r| !self.is_live(&r.name))
            .map(|r| r.name.clone())
            .collect()
    }

    /// Task `task` of `route` confirmed it consumes on the connection of `epoch`. An older
    /// task of the same route (ids grow) does not take over from a newer one.
    pub(crate) fn set_live(&self, route: &str, task: u64, epoch: u64) {
        if let Ok(mut live) = self.live.lock() {
            let entry = live.entry(route.to_string()).or_insert((task, epoch));
            if entry.0 <= task {
                *entry = (task, epoch);
            }
        }
    }

    /// Task `task` of `route` stopped consuming (a newer task's word stays).
    pub(crate) fn set_not_live(&self, route: &str, task: u64) {
        if let Ok(mut live) = self.live.lock() {
            if live.get(route).is_some_and(|(t, _)| *t == task) {
                live.remove(route);
            }
        }
    }

    pub(crate) fn record(&self, status: ReloadStatus) {
        if let Ok(mut slot) = self.last_reload.write() {
            *slot = Some(status);
        }
    }
}
