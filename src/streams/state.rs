//! What handlers and route tasks may know about streams without asking the actor: whether
//! the configured streams were ensured since the last connection, which are unhealthy and
//! why, which refuse writes for lack of room, and the catalog of the streams meant to capture
//! each subject, which decides JetStream or core NATS for a publish.
//!
//! It also counts the stream changes this service made (ensure, create, update, delete), which
//! the status snapshot follows.
//!
//! The catalog only grows from what the server shows: a configured stream is in it from the
//! start, a stream seen in a listing stays until it is deleted through our API. A listing that comes back
//! partial (a cluster in a leader election) never removes anything, so a publish to a subject
//! a stream captures is never quietly answered from core NATS.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use tokio::sync::Notify;

use crate::config::StreamSpec;
use crate::subject;

/// Subjects whose stream lookup is cached; past this the cache starts over.
const SUBJECT_CACHE_CAP: usize = 16_384;

/// One stream of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub name: Arc<str>,
    pub filters: Vec<String>,
    /// Defined in the config file: never leaves the catalog.
    pub configured: bool,
}

/// Why a stream refuses writes for lack of room: set by a publish the server refused, or by
/// the stream actor's check; cleared by an acked publish or a check that sees room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct StreamsState {
    /// The connection generation the configured streams were last ensured for (0: none).
    ensured: AtomicU64,
    health: RwLock<BTreeMap<String, Result<(), String>>>,
    /// Configured streams that a check found missing or not answering.
    unavailable: RwLock<BTreeMap<String, String>>,
    catalog: RwLock<Arc<Vec<CatalogEntry>>>,
    /// Subject → stream, for the catalog generation it was computed in.
    subjects: DashMap<String, (u64, Option<Arc<str>>)>,
    generation: AtomicU64,
    /// Streams that refused writes for lack of room; `any_refusing` keeps the happy path
    /// off the lock.
    refusing: RwLock<BTreeMap<String, Refusal>>,
    any_refusing: AtomicBool,
    /// Unconfigured streams of the catalog that the server reports missing.
    missing: RwLock<std::collections::BTreeSet<String>>,
    /// Streams a publish found unanswered (no responders): the actor checks them at once.
    suspects: std::sync::Mutex<Vec<String>>,
    wake: Notify,
    /// Stream changes this service made, and their waiter (the status snapshot).
    changes: AtomicU64,
    changed: Notify,
}

impl StreamsState {
    /// The state with the configured streams already in the catalog.
    pub fn new(configured: &[StreamSpec]) -> StreamsState {
        let state = StreamsState::default();
        state.replace_catalog(
            configured
                .iter()
                .map(|spec| CatalogEntry {
                    name: Arc::from(spec.name.as_str()),
                    filters: spec.subjects.clone(),
                    configured: true,
                })
                .collect(),
        );
        state
    }

    /// True once every configured stream was ensured (created, updated or found equal)
    /// or definitively refused, on the connection of `generation` (see
    /// [`crate::nats::NatsState::connection_generation`]): after a reconnection it is false
    /// until they were ensured again.
    pub fn ensured_for(&self, generation: u64) -> bool {
        generation > 0 && self.ensured.load(Ordering::Acquire) == generation
    }

    /// Ensured on the connection of `generation`, or (`None`) not ensured.
    pub(crate) fn set_ensured(&self, generation: Option<u64>) {
        self.ensured
            .store(generation.unwrap_or(0), Ordering::Release);
    }

    /// Configured streams that are unhealthy (refused, missing, not answering) or refuse
    /// writes for lack of room, with the reason.
    pub fn failures(&self) -> Vec<(String, String)> {
        let mut failures: Vec<(String, String)> = self
            .health
            .read()
            .map(|h| {
                h.iter()
                    .filter_map(|(name, r)| r.as_ref().err().map(|e| (name.clone(), e.clone())))
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(unavailable) = self.unavailable.read() {
            for (name, reason) in unavailable.iter() {
                if !failures.iter().any(|(n, _)| n == name) {
                    failures.push((name.clone(), reason.clone()));
                }
            }
        }
        for (name, refusal) in self.refusing() {
            if !failures.iter().any(|(n, _)| *n == name) {
                failures.push((name, refusal.reason));
            }
        }
        failures
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

    /// Records that a check found a configured stream missing or not answering (`None`:
    /// it answers again).
    pub(crate) fn set_unavailable(&self, name: &str, reason: Option<String>) {
        if let Ok(mut u) = self.unavailable.write() {
            match reason {
                Some(reason) => {
                    u.insert(name.to_string(), reason);
                }
                None => {
                    u.remove(name);
                }
            }
        }
    }

    pub(crate) fn remove_health(&self, name: &str) {
        if let Ok(mut h) = self.health.write() {
            h.remove(name);
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

    /// The streams meant to capture subjects.
    pub fn catalog(&self) -> Arc<Vec<CatalogEntry>> {
        self.catalog.read().map(|c| c.clone()).unwrap_or_default()
    }

    fn replace_catalog(&self, catalog: Vec<CatalogEntry>) {
        if let Ok(mut c) = self.catalog.write() {
            if **c == catalog {
                return;
            }
            *c = Arc::new(catalog);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Takes in a listing of `(name, subjects)`: listed streams are added or get their
    /// current subjects (a configured one keeps its configured subjects too); streams the
    /// listing lacks are kept, because a listing may be partial.
    pub(crate) fn merge_listing<'a>(
        &self,
        listed: impl IntoIterator<Item = (&'a str, &'a [String])>,
    ) {
        let mut catalog: Vec<CatalogEntry> = self.catalog().as_ref().clone();
        let configured_filters: BTreeMap<Arc<str>, Vec<String>> = catalog
            .iter()
            .filter(|e| e.configured)
            .map(|e| (e.name.clone(), e.filters.clone()))
            .collect();
        for (name, subjects) in listed {
            let mut filters = configured_filters.get(name).cloned().unwrap_or_default();
            for s in subjects {
                if !filters.contains(s) {
                    filters.push(s.clone());
                }
            }
            match catalog.iter_mut().find(|e| &*e.name == name) {
                Some(entry) => entry.filters = filters,
                None => catalog.push(CatalogEntry {
                    name: Arc::from(name),
                    filters,
                    configured: false,
                }),
            }
        }
        self.replace_catalog(catalog);
    }

    /// Removes a stream that is not in the config, deleted through our API (never because a
    /// listing lacked it). Configured streams stay.
    pub(crate) fn forget(&self, name: &str) {
        let catalog: Vec<CatalogEntry> = self
            .catalog()
            .iter()
            .filter(|e| e.configured || &*e.name != name)
            .cloned()
            .collect();
        self.replace_catalog(catalog);
        self.clear_refusing(name);
        self.set_missing(name, false);
    }

    /// True for a stream in the catalog.
    pub fn is_known(&self, name: &str) -> bool {
        self.catalog().iter().any(|e| &*e.name == name)
    }

    /// True for an unconfigured stream the server reported missing.
    pub fn is_missing(&self, name: &str) -> bool {
        self.missing.read().is_ok_and(|m| m.contains(name))
    }

    /// Unconfigured streams the server reported missing.
    pub fn missing(&self) -> Vec<String> {
        self.missing
            .read()
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn set_missing(&self, name: &str, missing: bool) {
        if let Ok(mut m) = self.missing.write() {
            if missing {
                m.insert(name.to_string());
            } else {
                m.remove(name);
            }
        }
    }

    /// True for a stream of the config file.
    pub fn is_configured(&self, name: &str) -> bool {
        self.catalog()
            .iter()
            .any(|e| e.configured && &*e.name == name)
    }

    /// The stream meant to capture `subject`, if any.
    pub fn stream_for(&self, subject_name: &str) -> Option<Arc<str>> {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(hit) = self.subjects.get(subject_name) {
            if hit.0 == generation {
                return hit.1.clone();
            }
        }
        let found = self
            .catalog()
            .iter()
            .find(|e| e.filters.iter().any(|f| subject::matches(f, subject_name)))
            .map(|e| e.name.clone());
        if self.subjects.len() >= SUBJECT_CACHE_CAP {
            self.subjects.clear();
        }
        self.subjects
            .insert(subject_name.to_string(), (generation, found.clone()));
        found
    }

    /// Streams refusing writes for lack of room.
    pub fn refusing(&self) -> BTreeMap<String, Refusal> {
        if !self.any_refusing.load(Ordering::Acquire) {
            return BTreeMap::new();
        }
        self.refusing.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Why `stream` refuses writes, if it does.
    pub fn refusal(&self, stream: &str) -> Option<Refusal> {
        if !self.any_refusing.load(Ordering::Acquire) {
            return None;
        }
        self.refusing.read().ok()?.get(stream).cloned()
    }

    pub(crate) fn mark_refusing(&self, stream: &str, refusal: Refusal) {
        if let Ok(mut r) = self.refusing.write() {
            r.insert(stream.to_string(), refusal);
            self.any_refusing.store(true, Ordering::Release);
        }
    }

    /// A write to `stream` succeeded, or the actor saw room again.
    pub(crate) fn clear_refusing(&self, stream: &str) {
        if !self.any_refusing.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut r) = self.refusing.write() {
            r.remove(stream);
            self.any_refusing.store(!r.is_empty(), Ordering::Release);
        }
    }

    /// A publish to `stream` met no responders: asks the actor to check it now.
    pub(crate) fn suspect(&self, stream: &str) {
        if let Ok(mut s) = self.suspects.lock() {
            if !s.iter().any(|n| n == stream) {
                s.push(stream.to_string());
            }
        }
        self.wake.notify_one();
    }

    /// Waits until some publish suspects a stream; returns (and forgets) the suspects.
    pub(crate) async fn suspected(&self) -> Vec<String> {
        loop {
            let taken = self
                .suspects
                .lock()
                .map(|mut s| std::mem::take(&mut *s))
                .unwrap_or_default();
            if !taken.is_empty() {
                return taken;
            }
            self.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_streams;

    fn listing(entries: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        entries
            .iter()
            .map(|(n, s)| (n.to_string(), s.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn merge(state: &StreamsState, entries: &[(&str, &[&str])]) {
        let listed = listing(entries);
        state.merge_listing(listed.iter().map(|(n, s)| (n.as_str(), s.as_slice())));
    }

    #[test]
    fn configured_streams_capture_before_any_listing() {
        let state = StreamsState::new(&default_streams());
        assert_eq!(
            state.stream_for("trade.binance.spot.BTC-USDT").as_deref(),
            Some("MARKET_DATA")
        );
        assert_eq!(state.stream_for("other.subject"), None);
    }

    #[test]
    fn a_partial_listing_never_removes_a_stream() {
        let state = StreamsState::new(&default_streams());
        merge(&state, &[("CUSTOM", &["custom.>"])]);
        assert_eq!(state.stream_for("custom.a").as_deref(), Some("CUSTOM"));
        // A later listing lacks both CUSTOM and the configured streams.
        merge(&state, &[]);
        assert_eq!(state.stream_for("custom.a").as_deref(), Some("CUSTOM"));
        assert_eq!(
            state.stream_for("system.x").as_deref(),
            Some("SYSTEM_EVENTS")
        );
    }

    #[test]
    fn a_listing_updates_subjects_and_forget_removes_only_unconfigured() {
        let state = StreamsState::new(&default_streams());
        merge(&state, &[("CUSTOM", &["custom.>"])]);
        merge(&state, &[("CUSTOM", &["other.>"])]);
        assert_eq!(
            state.stream_for("custom.a"),
            None,
            "cache follows the catalog"
        );
        assert_eq!(state.stream_for("other.a").as_deref(), Some("CUSTOM"));
        state.forget("CUSTOM");
        assert_eq!(state.stream_for("other.a"), None);
        state.forget("MARKET_DATA");
        assert!(state.is_configured("MARKET_DATA"));
        assert_eq!(state.stream_for("trade.x").as_deref(), Some("MARKET_DATA"));
        // A configured stream listed with an extra subject captures both.
        merge(&state, &[("SYSTEM_EVENTS", &["sysextra.>"])]);
        assert_eq!(
            state.stream_for("system.x").as_deref(),
            Some("SYSTEM_EVENTS")
        );
        assert_eq!(
            state.stream_for("sysextra.x").as_deref(),
            Some("SYSTEM_EVENTS")
        );
    }

    #[test]
    fn refusals_show_as_failures_until_cleared() {
        let state = StreamsState::new(&default_streams());
        assert!(state.refusal("MARKET_DATA").is_none());
        state.mark_refusing(
            "MARKET_DATA",
            Refusal {
                reason: "full".into(),
            },
        );
        assert_eq!(
            state.failures(),
            vec![("MARKET_DATA".into(), "full".into())]
        );
        state.clear_refusing("MARKET_DATA");
        assert!(state.failures().is_empty());
        assert!(state.refusing().is_empty());
    }
}
