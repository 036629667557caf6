//! Stream entries of `broker.yaml` (`streams:`), the default streams from the seeds, and the
//! merge of the two into resolved [`StreamSpec`]s that the `StreamActor` ensures.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::{ByteSize, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    Limits,
    Interest,
    Workqueue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    File,
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    Old,
    New,
}

/// One `streams:` entry. Every field is optional: an entry named like a default stream
/// changes only the fields it gives; a new stream needs at least `subjects`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    pub subjects: Option<Vec<String>>,
    pub description: Option<String>,
    pub retention: Option<Retention>,
    pub storage: Option<StorageKind>,
    /// Seconds or `1h` / `7d`; 0 keeps messages forever.
    pub max_age: Option<Span>,
    /// 0 means unlimited.
    pub max_msgs: Option<u64>,
    /// Bytes or `10GB`; 0 means unlimited.
    pub max_bytes: Option<ByteSize>,
    /// Largest single message; 0 means the server's max_payload.
    pub max_msg_size: Option<ByteSize>,
    pub discard: Option<Discard>,
    /// Window for `Nats-Msg-Id` de-duplication.
    pub duplicate_window: Option<Span>,
    pub replicas: Option<usize>,
}

/// A stream as the service wants it on the server, every value resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamSpec {
    pub name: String,
    pub subjects: Vec<String>,
    pub description: Option<String>,
    pub retention: Retention,
    pub storage: StorageKind,
    /// Zero is unlimited.
    pub max_age: Duration,
    /// Zero is unlimited.
    pub max_msgs: u64,
    /// Zero is unlimited.
    pub max_bytes: u64,
    /// Zero is the server's max payload.
    pub max_msg_size: u64,
    pub discard: Discard,
    pub duplicate_window: Duration,
    pub replicas: usize,
}

impl StreamSpec {
    fn base(name: &str) -> StreamSpec {
        StreamSpec {
            name: name.to_string(),
            subjects: Vec::new(),
            description: None,
            retention: Retention::Limits,
            storage: StorageKind::File,
            max_age: Duration::ZERO,
            max_msgs: 0,
            max_bytes: 0,
            max_msg_size: 0,
            discard: Discard::Old,
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
        }
    }

    /// `self` with every field `config` gives replaced.
    pub fn merged(mut self, config: &StreamConfig) -> StreamSpec {
        if let Some(subjects) = &config.subjects {
            self.subjects = subjects.clone();
        }
        if let Some(description) = &config.description {
            self.description = Some(description.clone());
        }
        self.retention = config.retention.unwrap_or(self.retention);
        self.storage = config.storage.unwrap_or(self.storage);
        self.max_age = config.max_age.map_or(self.max_age, Span::duration);
        self.max_msgs = config.max_msgs.unwrap_or(self.max_msgs);
        self.max_bytes = config.max_bytes.map_or(self.max_bytes, ByteSize::bytes);
        self.max_msg_size = config
            .max_msg_size
            .map_or(self.max_msg_size, ByteSize::bytes);
        self.discard = config.discard.unwrap_or(self.discard);
        self.duplicate_window = config
            .duplicate_window
            .map_or(self.duplicate_window, Span::duration);
        self.replicas = config.replicas.unwrap_or(self.replicas);
        self
    }

    /// A spec built from one config entry alone (a stream that is not a default).
    pub fn from_config(name: &str, config: &StreamConfig) -> StreamSpec {
        StreamSpec::base(name).merged(config)
    }
}

/// The collector families published by the MarketPrism collectors today.
pub const MARKET_DATA_SUBJECTS: [&str; 9] = [
    "market.>",
    "trade.>",
    "orderbook.>",
    "funding_rate.>",
    "open_interest.>",
    "liquidation.>",
    "lsr_top_position.>",
    "lsr_all_account.>",
    "volatility_index.>",
];

/// `MARKET_DATA` (1 h, 1,000,000 msgs), `SYSTEM_EVENTS` (24 h, 100,000),
/// `SERVICE_LOGS` (7 d, 500,000); all limits retention on file storage.
pub fn default_streams() -> Vec<StreamSpec> {
    let make = |name: &str, subjects: &[&str], age_secs: u64, max_msgs: u64| StreamSpec {
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        max_age: Duration::from_secs(age_secs),
        max_msgs,
        ..StreamSpec::base(name)
    };
    vec![
        make("MARKET_DATA", &MARKET_DATA_SUBJECTS, 3600, 1_000_000),
        make("SYSTEM_EVENTS", &["system.>"], 86_400, 100_000),
        make("SERVICE_LOGS", &["service.>"], 604_800, 500_000),
    ]
}

/// Name of the default stream that stores dead letters.
pub const DEAD_LETTERS: &str = "DEAD_LETTERS";

/// `DEAD_LETTERS`: captures `<dead_letter_prefix>.>` (7 d, 1,000,000 messages, file), so a
/// dead letter is stored and acked before the router lets go of a message. No `max_bytes`:
/// JetStream reserves a stream's `max_bytes` in the server's storage up front.
pub fn dead_letter_stream(prefix: &str) -> StreamSpec {
    StreamSpec {
        subjects: vec![format!("{prefix}.>")],
        description: Some(
            "messages the router could not route, with the reason in Prism-Error".into(),
        ),
        max_age: Duration::from_secs(7 * 86_400),
        max_msgs: 1_000_000,
        ..StreamSpec::base(DEAD_LETTERS)
    }
}

/// Name of the default stream that stores candles (`kline.>`, the shipped candle routes).
pub const KLINES: &str = "KLINES";

/// `KLINES`: captures `kline.>` (7 d, 1,000,000 messages, file), with a 1 h duplicate
/// window so a candle published again (a replay, a redelivery) within it is stored once.
pub fn kline_stream() -> StreamSpec {
    StreamSpec {
        subjects: vec!["kline.>".into()],
        description: Some("candles built by the router's window routes".into()),
        max_age: Duration::from_secs(7 * 86_400),
        max_msgs: 1_000_000,
        duplicate_window: Duration::from_secs(3600),
        ..StreamSpec::base(KLINES)
    }
}

/// Defaults (with the dead-letter stream for `dead_letter_prefix` and `KLINES`) and the
/// configured entries merged over them, defaults first; every stream whose entry does not
/// set `replicas` gets `default_replicas`.
pub fn merge(
    configured: &BTreeMap<String, StreamConfig>,
    dead_letter_prefix: &str,
    default_replicas: usize,
) -> Vec<StreamSpec> {
    let mut specs = default_streams();
    specs.push(dead_letter_stream(dead_letter_prefix));
    specs.push(kline_stream());
    for spec in &mut specs {
        spec.replicas = default_replicas;
        if let Some(config) = configured.get(&spec.name) {
            *spec = spec.clone().merged(config);
        }
    }
    for (name, config) in configured {
        if !specs.iter().any(|s| &s.name == name) {
            let mut spec = StreamSpec::base(name);
            spec.replicas = default_replicas;
            specs.push(spec.merged(config));
        }
    }
    specs
}

/// JetStream stream names: non-empty, at most 255 bytes, no white space, `.`, `*`, `>`,
/// path separators or control characters.
pub fn validate_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("stream name is empty".into());
    }
    if name.len() > 255 {
        return Err(format!("stream name {name:?} is longer than 255 bytes"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!(
            "stream name {name:?} contains {c:?} (no spaces, dots, wildcards or slashes)"
        ));
    }
    Ok(())
}
