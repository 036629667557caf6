//! Whether a stream has room for writes, judged from what the server shows: a `discard: new`
//! stream at its own limit, the server's JetStream store at its limit (`jsz`), or the disk of
//! the store nearly full. Pure: the actor gathers the figures and keeps the verdicts in
//! [`super::StreamsState`].

use async_nats::jetstream::stream::{DiscardPolicy, Info, StorageType};

/// The figures of the server's store, when known (supervised servers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreFigures {
    /// File storage used and its limit (`jsz` `storage` / `config.max_storage`).
    pub file_used: Option<(u64, u64)>,
    /// Memory storage used and its limit.
    pub memory_used: Option<(u64, u64)>,
    /// Bytes free on the disk of the store directory.
    pub disk_free: Option<u64>,
    /// Room a single message needs at most (the server's `max_payload`).
    pub max_payload: u64,
}

impl StoreFigures {
    /// Reads `storage`, `memory` and `config.max_storage` / `config.max_memory` of `/jsz`.
    pub fn from_jsz(jsz: &serde_json::Value, disk_free: Option<u64>, max_payload: u64) -> Self {
        let pair = |used: &str, limit: &str| {
            Some((
                jsz.get(used)?.as_u64()?,
                jsz.get("config")?.get(limit)?.as_u64()?,
            ))
            .filter(|(_, limit)| *limit > 0)
        };
        StoreFigures {
            file_used: pair("storage", "max_storage"),
            memory_used: pair("memory", "max_memory"),
            disk_free,
            max_payload,
        }
    }
}

/// The room below a limit that counts as full: one largest message, but at most 5 % of
/// the limit (a small store would otherwise always look full).
fn margin(max_payload: u64, limit: u64) -> u64 {
    max_payload.min(limit / 20)
}

/// Why `info`'s stream cannot take a message now, if it cannot.
pub fn no_room(info: &Info, store: &StoreFigures) -> Option<String> {
    let (config, state) = (&info.config, &info.state);
    if config.discard == DiscardPolicy::New {
        if config.max_messages > 0 && state.messages >= config.max_messages as u64 {
            return Some(format!(
                "it holds {} messages, its max_msgs limit (discard: new)",
                state.messages
            ));
        }
        let max_bytes = config.max_bytes.max(0) as u64;
        if max_bytes > 0 && state.bytes + margin(store.max_payload, max_bytes) >= max_bytes {
            return Some(format!(
                "it holds {} bytes of its max_bytes limit of {} (discard: new)",
                state.bytes, config.max_bytes
            ));
        }
    }
    let (used, kind) = match config.storage {
        StorageType::File => (store.file_used, "file"),
        StorageType::Memory => (store.memory_used, "memory"),
    };
    if let Some((used, limit)) = used {
        if used + margin(store.max_payload, limit) >= limit {
            return Some(format!(
                "the server's jetstream {kind} storage is full ({used} of {limit} bytes used)"
            ));
        }
    }
    if config.storage == StorageType::File {
        if let Some(free) = store.disk_free {
            if free < store.max_payload.max(1 << 20) * 2 {
                return Some(format!(
                    "the disk of the jetstream store has only {free} bytes free"
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::stream::{Config, State};

    fn info(config: Config, messages: u64, bytes: u64) -> Info {
        let mut value = serde_json::json!({
            "config": config,
            "created": "2026-12-01T00:00:00Z",
            "state": {
                "messages": messages, "bytes": bytes, "first_seq": 1, "first_ts": "2026-12-01T00:00:00Z",
                "last_seq": messages, "last_ts": "2026-12-01T00:00:00Z", "consumer_count": 0
            },
        });
        value["cluster"] = serde_json::Value::Null;
        let info: Info = serde_json::from_value(value).unwrap();
        let _: &State = &info.state;
        info
    }

    fn config(discard: DiscardPolicy, max_messages: i64, max_bytes: i64) -> Config {
        Config {
            name: "S".into(),
            subjects: vec!["s.>".into()],
            discard,
            max_messages,
            max_bytes,
            ..Default::default()
        }
    }

    #[test]
    fn discard_new_streams_at_their_limits_have_no_room() {
        let store = StoreFigures {
            max_payload: 1 << 20,
            ..Default::default()
        };
        let full = info(config(DiscardPolicy::New, 2, -1), 2, 10);
        assert!(no_room(&full, &store).unwrap().contains("max_msgs"));
        let bytes = info(config(DiscardPolicy::New, -1, 1000), 3, 999);
        assert!(no_room(&bytes, &store).unwrap().contains("max_bytes"));
        let old = info(config(DiscardPolicy::Old, 2, 1000), 2, 1000);
        assert_eq!(
            no_room(&old, &store),
            None,
            "discard: old makes room itself"
        );
    }

    #[test]
    fn the_servers_store_and_disk_count_for_file_streams() {
        let stream = info(config(DiscardPolicy::Old, -1, -1), 5, 500);
        let store = StoreFigures::from_jsz(
            &serde_json::json!({"storage": 990, "config": {"max_storage": 1000}}),
            None,
            64,
        );
        assert!(no_room(&stream, &store).unwrap().contains("990 of 1000"));
        let disk = StoreFigures {
            disk_free: Some(1000),
            max_payload: 1 << 20,
            ..Default::default()
        };
        assert!(no_room(&stream, &disk).unwrap().contains("disk"));
        let roomy = StoreFigures {
            disk_free: Some(1 << 40),
            max_payload: 1 << 20,
            ..Default::default()
        };
        assert_eq!(no_room(&stream, &roomy), None);
    }
}
