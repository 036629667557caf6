//! Mapping between our [`StreamSpec`] and async-nats' stream `Config`, the comparison that
//! decides whether a stream on the server matches what we want, and the JSON view of a
//! stream that the API answers with. Pure.

use std::time::Duration;

use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use serde_json::{json, Value};

use crate::config::{Discard, Retention, StorageKind, StreamSpec};

/// JetStream's "unlimited" for counts and sizes.
const UNLIMITED: i64 = -1;

fn limit(value: u64) -> i64 {
    if value == 0 {
        UNLIMITED
    } else {
        i64::try_from(value).unwrap_or(i64::MAX)
    }
}

fn unlimit(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The server config for a spec. Zero limits become JetStream's -1 (unlimited).
pub fn to_nats(spec: &StreamSpec) -> stream::Config {
    stream::Config {
        name: spec.name.clone(),
        subjects: spec.subjects.clone(),
        description: spec.description.clone(),
        retention: match spec.retention {
            Retention::Limits => RetentionPolicy::Limits,
            Retention::Interest => RetentionPolicy::Interest,
            Retention::Workqueue => RetentionPolicy::WorkQueue,
        },
        storage: match spec.storage {
            StorageKind::File => StorageType::File,
            StorageKind::Memory => StorageType::Memory,
        },
        max_age: spec.max_age,
        max_messages: limit(spec.max_msgs),
        max_bytes: limit(spec.max_bytes),
        max_message_size: i32::try_from(limit(spec.max_msg_size)).unwrap_or(i32::MAX),
        discard: match spec.discard {
            Discard::Old => DiscardPolicy::Old,
            Discard::New => DiscardPolicy::New,
        },
        duplicate_window: effective_duplicate_window(spec.duplicate_window, spec.max_age),
        num_replicas: spec.replicas,
        max_consumers: -1,
        max_messages_per_subject: -1,
        ..Default::default()
    }
}

/// The server caps the duplicate window at `max_age`.
fn effective_duplicate_window(window: Duration, max_age: Duration) -> Duration {
    if !max_age.is_zero() && window > max_age {
        max_age
    } else {
        window
    }
}

/// Our spec read back from a server config.
pub fn from_nats(config: &stream::Config) -> StreamSpec {
    StreamSpec {
        name: config.name.clone(),
        subjects: config.subjects.clone(),
        description: config.description.clone(),
        retention: match config.retention {
            RetentionPolicy::Limits => Retention::Limits,
            RetentionPolicy::Interest => Retention::Interest,
            RetentionPolicy::WorkQueue => Retention::Workqueue,
        },
        storage: match config.storage {
            StorageType::File => StorageKind::File,
            StorageType::Memory => StorageKind::Memory,
        },
        max_age: config.max_age,
        max_msgs: unlimit(config.max_messages),
        max_bytes: unlimit(config.max_bytes),
        max_msg_size: unlimit(i64::from(config.max_message_size)),
        discard: match config.discard {
            DiscardPolicy::Old => Discard::Old,
            DiscardPolicy::New => Discard::New,
        },
        duplicate_window: config.duplicate_window,
        replicas: config.num_replicas.max(1),
    }
}

/// Fields where the server's stream differs from `want`, as `field: have → want` lines.
pub fn differences(want: &StreamSpec, have: &stream::Config) -> Vec<String> {
    let have = from_nats(have);
    let want_dup = effective_duplicate_window(want.duplicate_window, want.max_age);
    let mut diffs = Vec::new();
    let (mut hs, mut ws) = (have.subjects.clone(), want.subjects.clone());
    hs.sort();
    ws.sort();
    differs(&mut diffs, "subjects", &hs, &ws);
    differs(&mut diffs, "retention", &have.retention, &want.retention);
    differs(&mut diffs, "storage", &have.storage, &want.storage);
    differs(&mut diffs, "max_age", &have.max_age, &want.max_age);
    differs(&mut diffs, "max_msgs", &have.max_msgs, &want.max_msgs);
    differs(&mut diffs, "max_bytes", &have.max_bytes, &want.max_bytes);
    differs(
        &mut diffs,
        "max_msg_size",
        &have.max_msg_size,
        &want.max_msg_size,
    );
    differs(&mut diffs, "discard", &have.discard, &want.discard);
    differs(
        &mut diffs,
        "duplicate_window",
        &have.duplicate_window,
        &want_dup,
    );
    differs(&mut diffs, "replicas", &have.replicas, &want.replicas);
    if want.description.is_some() {
        differs(
            &mut diffs,
            "description",
            &have.description,
            &want.description,
        );
    }
    diffs
}

/// Adds `field: have -> want` to `diffs` when the two differ.
fn differs<T: PartialEq + std::fmt::Debug>(
    diffs: &mut Vec<String>,
    field: &str,
    have: &T,
    want: &T,
) {
    if have != want {
        diffs.push(format!("{field}: {have:?} -> {want:?}"));
    }
}

/// The config part of the API view, in our units (seconds, 0 = unlimited).
pub fn config_view(spec: &StreamSpec) -> Value {
    json!({
        "name": spec.name,
        "subjects": spec.subjects,
        "description": spec.description,
        "retention": spec.retention,
        "storage": spec.storage,
        "max_age": spec.max_age.as_secs_f64(),
        "max_msgs": spec.max_msgs,
        "max_bytes": spec.max_bytes,
        "max_msg_size": spec.max_msg_size,
        "discard": spec.discard,
        "duplicate_window": spec.duplicate_window.as_secs_f64(),
        "replicas": spec.replicas,
    })
}

/// A stream as the API shows it: config plus live state (the seed's fields).
pub fn info_view(info: &stream::Info) -> Value {
    let spec = from_nats(&info.config);
    let mut view = config_view(&spec);
    if let Some(map) = view.as_object_mut() {
        let state = &info.state;
        map.insert("messages".into(), json!(state.messages));
        map.insert("bytes".into(), json!(state.bytes));
        map.insert("first_seq".into(), json!(state.first_sequence));
        map.insert("last_seq".into(), json!(state.last_sequence));
        map.insert("consumer_count".into(), json!(state.consumer_count));
        map.insert(
            "created".into(),
            json!(info
                .created
                .format(&time::format_description::well_known::Rfc3339)
                .ok()),
        );
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{default_streams, StreamConfig};

    #[test]
    fn spec_round_trips_through_the_server_config() {
        for spec in default_streams() {
            let config = to_nats(&spec);
            assert_eq!(
                config.max_age, spec.max_age,
                "ages stay durations (nanos on the wire)"
            );
            assert_eq!(from_nats(&config), spec);
            assert!(differences(&spec, &config).is_empty());
        }
    }

    #[test]
    fn zero_limits_are_unlimited() {
        let spec = StreamSpec::from_config(
            "S",
            &StreamConfig {
                subjects: Some(vec!["s.>".into()]),
                ..Default::default()
            },
        );
        let config = to_nats(&spec);
        assert_eq!(config.max_messages, -1);
        assert_eq!(config.max_bytes, -1);
        assert_eq!(config.max_message_size, -1);
    }

    #[test]
    fn max_age_is_sent_in_nanoseconds() {
        let spec = &default_streams()[0];
        let wire = serde_json::to_value(to_nats(spec)).unwrap();
        assert_eq!(wire["max_age"], 3_600_000_000_000u64);
    }

    #[test]
    fn differences_name_the_fields() {
        let spec = &default_streams()[0];
        let mut config = to_nats(spec);
        config.max_messages = 5;
        config.subjects.pop();
        let diffs = differences(spec, &config);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(diffs
            .iter()
            .any(|d| d.starts_with("max_msgs: 5 -> 1000000")));
        assert!(diffs.iter().any(|d| d.starts_with("subjects")));
    }

    #[test]
    fn duplicate_window_is_capped_by_max_age() {
        let spec = StreamSpec::from_config(
            "S",
            &StreamConfig {
                subjects: Some(vec!["s.>".into()]),
                max_age: Some(crate::config::Span::secs(30)),
                ..Default::default()
            },
        );
        let config = to_nats(&spec);
        assert_eq!(config.duplicate_window, Duration::from_secs(30));
        assert!(differences(&spec, &config).is_empty());
    }
}
