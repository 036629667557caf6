//! The `collectors:` section of `broker.yaml`: where the MarketPrism data collectors'
//! heartbeats arrive, when a silent collector counts as stale and when it is forgotten
//! (`COLLECTOR_TTL_SEC`, the Python service's variable, overrides `ttl`), and how many
//! collectors are tracked at most. Checked by [`validate`]; used by `crate::collectors`.

use serde::{Deserialize, Serialize};

use super::units::Span;
use super::ConfigProblem;
use crate::subject;

/// Heartbeats of the data collectors.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorsConfig {
    /// Subject filter the collectors publish their heartbeats on
    /// (`health.collector.{host}-{pid}`); subscribed at start and kept across reconnections.
    pub subject: String,
    /// A collector whose latest heartbeat is older than this is `stale`: shown so in the
    /// status endpoints and a degraded `/api/v1/broker/health`, not counted as active.
    pub stale_after: Span,
    /// A collector silent this long is forgotten (`COLLECTOR_TTL_SEC`, in seconds).
    pub ttl: Span,
    /// At most this many collectors are tracked; heartbeats of further ones are refused
    /// (and counted) until some are forgotten. Also bounds the `instance` metric label.
    pub max_instances: usize,
}

/// The default heartbeat subject of the MarketPrism collectors.
pub const HEARTBEAT_SUBJECT: &str = "health.collector.>";

/// Largest `collectors.max_instances`.
pub const MAX_TRACKED_COLLECTORS: usize = 100_000;

impl Default for CollectorsConfig {
    fn default() -> Self {
        CollectorsConfig {
            subject: HEARTBEAT_SUBJECT.into(),
            stale_after: Span::secs(30),
            ttl: Span::secs(600),
            max_instances: 1024,
        }
    }
}

/// Every problem of the section, with its field path.
pub fn validate(config: &CollectorsConfig) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    if let Err(e) = subject::validate_filter(&config.subject) {
        problems.push(ConfigProblem::new("collectors.subject", e));
    }
    if config.stale_after.duration().is_zero() {
        problems.push(ConfigProblem::new(
            "collectors.stale_after",
            "must be greater than 0",
        ));
    }
    if config.ttl.duration().is_zero() {
        problems.push(ConfigProblem::new(
            "collectors.ttl",
            "must be greater than 0",
        ));
    }
    if !(1..=MAX_TRACKED_COLLECTORS).contains(&config.max_instances) {
        problems.push(ConfigProblem::new(
            "collectors.max_instances",
            format!("must be between 1 and {MAX_TRACKED_COLLECTORS}"),
        ));
    }
    problems
}
