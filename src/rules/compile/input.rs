//! Layer 4 (compile): what compilation takes — the rule files as text ([`SourceFile`],
//! parsed into line-annotated YAML) and what it needs from `broker.yaml`
//! ([`TableSettings`]). Imports the config types, the YAML layer and `problem.rs`.

use super::problem::RuleProblem;
use crate::config::{BrokerConfig, ConsumerDefaults, StreamSpec};
use crate::rules::yaml::{self, Node};

/// A rule file's name (as it should appear in problems) and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

impl SourceFile {
    /// Parses the file; a YAML error becomes a problem at its line.
    pub(super) fn parse(&self, problems: &mut Vec<RuleProblem>) -> Option<Node> {
        match yaml::parse(&self.text) {
            Ok(root) => Some(root),
            Err(e) => {
                problems.push(RuleProblem {
                    file: self.name.clone(),
                    line: e.line(),
                    context: None,
                    message: e.to_string(),
                });
                None
            }
        }
    }
}

/// What the table needs from `broker.yaml`.
#[derive(Debug, Clone)]
pub struct TableSettings {
    /// Streams as ensured on the server, for JetStream lint (`jetstream: true` outputs and
    /// `source.jetstream.stream`).
    pub streams: Vec<StreamSpec>,
    pub dead_letter_prefix: String,
    pub queue_group: String,
    pub consumer: ConsumerDefaults,
    /// `(stream, durable name)` of the configured durable consumers (`consumers:`): a
    /// route may not take one over.
    pub configured_durables: Vec<(String, String)>,
}

impl TableSettings {
    pub fn from_config(config: &BrokerConfig) -> Self {
        TableSettings {
            streams: config.effective_streams(),
            dead_letter_prefix: config.router.dead_letter_prefix.clone(),
            queue_group: config.router.queue_group.clone(),
            consumer: config.router.consumer.clone(),
            configured_durables: config
                .durable_consumers()
                .into_iter()
                .map(|d| (d.stream, d.name))
                .collect(),
        }
    }
}

impl Default for TableSettings {
    fn default() -> Self {
        TableSettings::from_config(&BrokerConfig::default())
    }
}
