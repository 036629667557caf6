//! What handlers may know about the router without asking the actor: the active route
//! table and its version, and how the last reload went.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

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
    /// Routes whose task is subscribed or consuming right now.
    live: Mutex<HashSet<String>>,
}

impl RouterState {
    /// The state with the table loaded at start-up as version 1.
    pub fn new(table: RouteTable) -> Self {
        RouterState {
            table: RwLock::new(Arc::new(table)),
            version: AtomicU64::new(1),
            last_reload: RwLock::new(None),
            live: Mutex::new(HashSet::new()),
        }
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

    /// True while the route's task is subscribed (core) or consuming (JetStream).
    pub fn is_live(&self, route: &str) -> bool {
        self.live.lock().map(|l| l.contains(route)).unwrap_or(false)
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

    pub(crate) fn set_live(&self, route: &str, live: bool) {
        if let Ok(mut set) = self.live.lock() {
            if live {
                set.insert(route.to_string());
            } else {
                set.remove(route);
            }
        }
    }

    pub(crate) fn record(&self, status: ReloadStatus) {
        if let Ok(mut slot) = self.last_reload.write() {
            *slot = Some(status);
        }
    }
}
