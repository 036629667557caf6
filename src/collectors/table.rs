//! The collector table, pure (no I/O, no clock of its own): takes in heartbeat payloads
//! with the time they arrived, keeps one entry per collector instance, refuses new ones
//! past `max_instances`, forgets the silent ones after `ttl`, and hands out an immutable,
//! sorted [`CollectorsView`] that requests read without a lock.
//!
//! A heartbeat is a JSON object as the MarketPrism collectors publish it
//! (`{"service", "instance", "hostname", "pid", "ts", "uptime_sec", "active_managers",
//! "exchanges", "rss"}`; unknown fields are ignored). The instance is `instance`, or the
//! last token of the subject when it is missing or empty. Anything else — not JSON, not an
//! object, larger than [`MAX_HEARTBEAT_BYTES`], a known field of the wrong type, an
//! instance name that is empty, too long or has control characters — is malformed: it
//! changes nothing and is reported once per instance.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Largest heartbeat taken in; a collector's is a few hundred bytes.
pub const MAX_HEARTBEAT_BYTES: usize = 16 * 1024;

/// Longest instance name (it becomes a metric label value).
pub const MAX_INSTANCE_LEN: usize = 256;

/// Longest hostname kept.
const MAX_HOSTNAME_LEN: usize = 255;

/// The table's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub stale_after: Duration,
    pub ttl: Duration,
    pub max_instances: usize,
}

/// What one collector last reported, and when it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub name: Box<str>,
    /// When the latest heartbeat arrived (monotonic: ages never jump with the wall clock).
    pub received: Instant,
    /// The same moment in Unix seconds (`last_ts`).
    pub received_unix: u64,
    pub hostname: Option<Box<str>>,
    pub pid: Option<i64>,
    /// As the collector sent it (an integer from the MarketPrism collectors).
    pub uptime_sec: Option<serde_json::Number>,
    pub active_managers: Option<i64>,
    pub exchanges: Option<Vec<Box<str>>>,
}

impl Instance {
    /// Time since the latest heartbeat, as of `now`.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.received)
    }
}

/// The tracked collectors, sorted by instance name. Immutable once built.
#[derive(Debug, Clone, Default)]
pub struct CollectorsView {
    pub instances: Vec<Arc<Instance>>,
}

/// What taking in one heartbeat did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded; `new` for an instance not tracked before.
    Accepted { instance: String, new: bool },
    /// Not usable; `first` when this instance's malformed heartbeats were not reported
    /// before (log it), false afterwards (count it only).
    Malformed {
        instance: String,
        reason: String,
        first: bool,
    },
    /// A new instance while `max_instances` are tracked; `first` for the first refusal
    /// since the table last had room.
    Rejected { instance: String, first: bool },
}

/// The fields of a heartbeat that are shown; everything else is ignored.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default, borrow)]
    instance: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    pid: Option<i64>,
    #[serde(default)]
    uptime_sec: Option<serde_json::Number>,
    #[serde(default)]
    active_managers: Option<i64>,
    #[serde(default)]
    exchanges: Option<Vec<String>>,
}

/// The collectors heard from, by instance.
#[derive(Debug)]
pub struct CollectorTable {
    settings: Settings,
    entries: BTreeMap<Box<str>, Arc<Instance>>,
    /// Instances whose malformed heartbeats were reported (at most `max_instances`).
    reported_malformed: HashSet<Box<str>>,
    /// A refusal for lack of room was reported and the table has had no room since.
    reported_full: bool,
}

/// The last token of `subject` (the whole subject when it has no dot).
fn last_token(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or(subject)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the instance name is empty".into());
    }
    if name.len() > MAX_INSTANCE_LEN {
        return Err(format!(
            "the instance name is longer than {MAX_INSTANCE_LEN} bytes"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("the instance name has control characters".into());
    }
    Ok(())
}

impl CollectorTable {
    pub fn new(settings: Settings) -> CollectorTable {
        CollectorTable {
            settings,
            entries: BTreeMap::new(),
            reported_malformed: HashSet::new(),
            reported_full: false,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Takes in the heartbeat `payload` that arrived on `subject` at `now` (`now_unix` in
    /// Unix seconds).
    pub fn accept(
        &mut self,
        subject: &str,
        payload: &[u8],
        now: Instant,
        now_unix: u64,
    ) -> Outcome {
        let (name, parsed) = match parse(subject, payload) {
            Ok(ok) => ok,
            Err((name, reason)) => return self.malformed(name, reason),
        };
        let instance = Instance {
            name: name.clone().into_boxed_str(),
            received: now,
            received_unix: now_unix,
            hostname: parsed.hostname.map(String::into_boxed_str),
            pid: parsed.pid,
            uptime_sec: parsed.uptime_sec,
            active_managers: parsed.active_managers,
            exchanges: parsed
                .exchanges
                .map(|list| list.into_iter().map(String::into_boxed_str).collect()),
        };
        let known = self.entries.contains_key(name.as_str());
        if !known && self.entries.len() >= self.settings.max_instances {
            self.expire(now);
        }
        if !known && self.entries.len() >= self.settings.max_instances {
            let first = !self.reported_full;
            self.reported_full = true;
            return Outcome::Rejected {
                instance: name,
                first,
            };
        }
        self.entries
            .insert(instance.name.clone(), Arc::new(instance));
        Outcome::Accepted {
            instance: name,
            new: !known,
        }
    }

    fn malformed(&mut self, name: String, reason: String) -> Outcome {
        let first = !self.reported_malformed.contains(name.as_str())
            && self.reported_malformed.len() < self.settings.max_instances;
        if first {
            self.reported_malformed
                .insert(name.clone().into_boxed_str());
        }
        Outcome::Malformed {
            instance: name,
            reason,
            first,
        }
    }

    /// Forgets every collector silent for longer than `ttl` as of `now`; returns their
    /// names.
    pub fn expire(&mut self, now: Instant) -> Vec<Box<str>> {
        let ttl = self.settings.ttl;
        let gone: Vec<Box<str>> = self
            .entries
            .values()
            .filter(|i| i.age(now) > ttl)
            .map(|i| i.name.clone())
            .collect();
        for name in &gone {
            self.entries.remove(name);
        }
        if self.entries.len() < self.settings.max_instances {
            self.reported_full = false;
        }
        gone
    }

    /// The tracked collectors now, sorted by name.
    pub fn view(&self) -> CollectorsView {
        CollectorsView {
            instances: self.entries.values().cloned().collect(),
        }
    }
}

/// The instance name and the shown fields of a heartbeat, or the name to report it under
/// and why it is malformed.
fn parse<'a>(subject: &'a str, payload: &'a [u8]) -> Result<(String, Wire<'a>), (String, String)> {
    let fallback = || last_token(subject).to_string();
    if payload.len() > MAX_HEARTBEAT_BYTES {
        return Err((
            fallback(),
            format!(
                "{} bytes is more than a heartbeat may have ({MAX_HEARTBEAT_BYTES})",
                payload.len()
            ),
        ));
    }
    let mut json = serde_json::Deserializer::from_slice(payload);
    let wire: Wire<'a> = match serde_path_to_error::deserialize(&mut json) {
        Ok(wire) => wire,
        Err(e) => {
            let reason = if payload.first().is_some_and(|b| *b != b'{') {
                "not a JSON object".to_string()
            } else if e.path().to_string() == "." {
                format!("invalid heartbeat: {}", e.inner())
            } else {
                format!("{}: {}", e.path(), e.inner())
            };
            return Err((fallback(), reason));
        }
    };
    let name = match wire.instance.as_deref() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => fallback(),
    };
    if let Err(reason) = check_name(&name) {
        return Err((name, reason));
    }
    if wire
        .hostname
        .as_ref()
        .is_some_and(|h| h.len() > MAX_HOSTNAME_LEN)
    {
        return Err((
            name,
            format!("hostname is longer than {MAX_HOSTNAME_LEN} bytes"),
        ));
    }
    Ok((name, wire))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn settings(max: usize) -> Settings {
        Settings {
            stale_after: Duration::from_secs(30),
            ttl: Duration::from_secs(600),
            max_instances: max,
        }
    }

    const BEAT: &str = r#"{"service":"collector","instance":"host-a-42","hostname":"host-a","pid":42,"ts":1795290133,"uptime_sec":120,"active_managers":5,"exchanges":["binance_spot","okx_derivatives"],"rss":1234}"#;

    #[test]
    fn a_heartbeat_is_recorded_with_the_shown_fields() {
        let mut table = CollectorTable::new(settings(8));
        let now = Instant::now();
        let outcome = table.accept(
            "health.collector.host-a-42",
            BEAT.as_bytes(),
            now,
            1_795_290_134,
        );
        assert_eq!(
            outcome,
            Outcome::Accepted {
                instance: "host-a-42".into(),
                new: true
            }
        );
        let view = table.view();
        let i = &view.instances[0];
        assert_eq!(&*i.name, "host-a-42");
        assert_eq!(i.hostname.as_deref(), Some("host-a"));
        assert_eq!(i.pid, Some(42));
        assert_eq!(i.uptime_sec.as_ref().unwrap().as_u64(), Some(120));
        assert_eq!(i.active_managers, Some(5));
        assert_eq!(i.exchanges.as_ref().unwrap().len(), 2);
        assert_eq!(i.received_unix, 1_795_290_134);
        // A second one from the same instance is not new and replaces the first.
        let later = now + Duration::from_secs(10);
        assert_eq!(
            table.accept("health.collector.host-a-42", BEAT.as_bytes(), later, 1),
            Outcome::Accepted {
                instance: "host-a-42".into(),
                new: false
            }
        );
        assert_eq!(table.len(), 1);
        assert_eq!(table.view().instances[0].received, later);
    }

    #[test]
    fn the_instance_falls_back_to_the_last_subject_token() {
        let mut table = CollectorTable::new(settings(8));
        let now = Instant::now();
        for payload in [
            r#"{"pid":1}"#,
            r#"{"instance":"","pid":1}"#,
            r#"{"instance":null}"#,
        ] {
            let outcome = table.accept("health.collector.box-7", payload.as_bytes(), now, 0);
            assert!(
                matches!(&outcome, Outcome::Accepted { instance, .. } if instance == "box-7"),
                "{payload}: {outcome:?}"
            );
        }
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn malformed_heartbeats_change_nothing_and_are_reported_once_per_instance() {
        let mut table = CollectorTable::new(settings(8));
        let now = Instant::now();
        table.accept("health.collector.a", BEAT.as_bytes(), now, 0);
        let before = table.view();
        let bad = [
            ("health.collector.x", "not json".to_string(), "x"),
            ("health.collector.x", "[1,2]".to_string(), "x"),
            ("health.collector.y", r#"{"instance": 5}"#.to_string(), "y"),
            ("health.collector.y", r#"{"pid": "many"}"#.to_string(), "y"),
            (
                "health.collector.z",
                r#"{"exchanges": "binance"}"#.to_string(),
                "z",
            ),
            (
                "health.collector.z",
                "x".repeat(MAX_HEARTBEAT_BYTES + 1),
                "z",
            ),
            (
                "health.collector.q",
                format!(r#"{{"instance": "{}"}}"#, "n".repeat(MAX_INSTANCE_LEN + 1)),
                "",
            ),
            (
                "health.collector.w",
                "{\"instance\": \"a\\u0001b\"}".to_string(),
                "a\u{1}b",
            ),
        ];
        let mut firsts = Vec::new();
        for (subject, payload, name) in &bad {
            match table.accept(subject, payload.as_bytes(), now, 0) {
                Outcome::Malformed {
                    instance,
                    reason,
                    first,
                } => {
                    if !name.is_empty() {
                        assert_eq!(&instance, name, "{payload}");
                    }
                    assert!(!reason.is_empty());
                    if first {
                        firsts.push(instance);
                    }
                }
                other => panic!("{payload}: {other:?}"),
            }
        }
        assert_eq!(firsts.len(), 5, "one report per instance: {firsts:?}");
        assert_eq!(table.view().instances, before.instances);
    }

    #[test]
    fn past_the_bound_new_instances_are_refused_until_one_is_forgotten() {
        let mut table = CollectorTable::new(settings(2));
        let t0 = Instant::now();
        table.accept("health.collector.a", b"{}", t0, 0);
        table.accept(
            "health.collector.b",
            b"{}",
            t0 + Duration::from_secs(300),
            0,
        );
        let t1 = t0 + Duration::from_secs(400);
        assert_eq!(
            table.accept("health.collector.c", b"{}", t1, 0),
            Outcome::Rejected {
                instance: "c".into(),
                first: true
            }
        );
        assert_eq!(
            table.accept("health.collector.d", b"{}", t1, 0),
            Outcome::Rejected {
                instance: "d".into(),
                first: false
            }
        );
        // Known instances still get through.
        assert!(matches!(
            table.accept("health.collector.a", b"{}", t1, 0),
            Outcome::Accepted { new: false, .. }
        ));
        // b goes silent past the ttl: c gets its place, and the next refusal is new again.
        let t2 = t0 + Duration::from_secs(300 + 601);
        assert!(matches!(
            table.accept("health.collector.c", b"{}", t2, 0),
            Outcome::Accepted { new: true, .. }
        ));
        let names: Vec<_> = table
            .view()
            .instances
            .iter()
            .map(|i| i.name.clone())
            .collect();
        assert_eq!(names, [Box::from("a"), Box::from("c")]);
        assert_eq!(
            table.accept("health.collector.e", b"{}", t2, 0),
            Outcome::Rejected {
                instance: "e".into(),
                first: true
            }
        );
    }

    #[test]
    fn silent_collectors_are_forgotten_after_the_ttl() {
        let mut table = CollectorTable::new(settings(8));
        let t0 = Instant::now();
        table.accept("health.collector.old", b"{}", t0, 0);
        table.accept(
            "health.collector.new",
            b"{}",
            t0 + Duration::from_secs(100),
            0,
        );
        assert!(table.expire(t0 + Duration::from_secs(600)).is_empty());
        let gone = table.expire(t0 + Duration::from_secs(601));
        assert_eq!(gone, vec![Box::from("old")]);
        assert_eq!(table.len(), 1);
        assert_eq!(&*table.view().instances[0].name, "new");
    }
}
