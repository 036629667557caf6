//! What handlers may know about streams without asking the actor: whether the configured
//! streams were ensured since the last connection, which failed and why, and the catalog
//! of every stream's subjects that the publish path uses to pick JetStream or core NATS;
//! and a count of the stream changes this service made, which the status snapshot follows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use crate::subject;

/// `(stream name, subject filters)` of every stream on the server.
pub type Catalog = Vec<(String, Vec<String>)>;

#[derive(Debug, Default)]
pub struct StreamsState {
    ensured: AtomicBool,
    health: RwLock<BTreeMap<String, Result<(), String>>>,
    catalog: RwLock<Arc<Catalog>>,
    changes: AtomicU64,
    changed: Notify,
}

impl StreamsState {
    /// True once every configured stream was ensured (created, updated or found equal)
    /// or definitively refused, since the latest connection.
    pub fn ensured(&self) -> bool {
        self.ensured.load(Ordering::Acquire)
    }

    pub(crate) fn set_ensured(&self, ensured: bool) {
        self.ensured.store(ensured, Ordering::Release);
    }

    /// Configured streams the server refused, with the reason.
    pub fn failures(&self) -> Vec<(String, String)> {
        self.health
            .read()
            .map(|h| {
                h.iter()
                    .filter_map(|(name, r)| r.as_ref().err().map(|e| (name.clone(), e.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every configured stream with its health.
    pub fn health(&self) -> BTreeMap<String, Result<(), String>> {
        self.health.read().map(|h| h.clone()).unwrap_or_default()
    }

    pub(crate) fn set_health(&self, name: &str, result: Result<(), String>) {
        if let Ok(mut h) = self.health.write() {
            h.insert(name.to_string(), result);
        }
    }

    pub(crate) fn remove_health(&self, name: &str) {
        if let Ok(mut h) = self.health.write() {
            h.remove(name);
        }
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().map(|c| c.clone()).unwrap_or_default()
    }

    pub(crate) fn set_catalog(&self, catalog: Catalog) {
        if let Ok(mut c) = self.catalog.write() {
            *c = Arc::new(catalog);
        }
    }

    /// How many times this service changed the server's streams (ensure, create, update,
    /// delete).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Counts a change and wakes the [`changed`](Self::changed) waiter.
    pub(crate) fn notify_changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// Resolves at the next change (one made while nobody waited is kept for the next
    /// call). Meant for one waiter, the status snapshot's refresher.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// The stream that captures `subject`, if the catalog knows one.
    pub fn stream_for(&self, subject_name: &str) -> Option<String> {
        let catalog = self.catalog();
        catalog
            .iter()
            .find(|(_, filters)| filters.iter().any(|f| subject::matches(f, subject_name)))
            .map(|(name, _)| name.clone())
    }
}
