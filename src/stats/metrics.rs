//! Every metric of the service, declared once, named `prism_<what>_<unit>[_total]`, with
//! bounded labels only (route, stream, endpoint, method, status, outcome).
//!
//! The same counters feed `/metrics` and the `message_stats` / `statistics` blocks of the
//! status endpoints, so the two never disagree.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot register metric: {0}")]
    Register(#[from] prometheus::Error),
}

/// The registry and its metrics; shared as `Arc<Metrics>`.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Messages the broker published (REST publish and router outputs), by source
    /// (`api`, `router`).
    pub messages_published: IntCounterVec,
    /// Messages the broker consumed from NATS (router inputs).
    pub messages_consumed: IntCounter,
    /// Publish and routing failures, by source.
    pub message_errors: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let messages_published = IntCounterVec::new(
            Opts::new(
                "prism_messages_published_total",
                "Messages published by the broker, by source (api, router)",
            ),
            &["source"],
        )?;
        let messages_consumed = IntCounter::new(
            "prism_messages_consumed_total",
            "Messages the broker consumed from NATS",
        )?;
        let message_errors = IntCounterVec::new(
            Opts::new(
                "prism_message_errors_total",
                "Publish and routing failures, by source (api, router)",
            ),
            &["source"],
        )?;
        registry.register(Box::new(messages_published.clone()))?;
        registry.register(Box::new(messages_consumed.clone()))?;
        registry.register(Box::new(message_errors.clone()))?;
        for source in ["api", "router"] {
            messages_published.with_label_values(&[source]);
            message_errors.with_label_values(&[source]);
        }
        Ok(Metrics {
            registry,
            messages_published,
            messages_consumed,
            message_errors,
        })
    }

    /// `message_stats` of the status endpoints: published, consumed, errors.
    pub fn message_totals(&self) -> (u64, u64, u64) {
        let sum = |vec: &IntCounterVec| {
            ["api", "router"]
                .iter()
                .map(|s| vec.with_label_values(&[*s]).get())
                .sum::<u64>()
        };
        (
            sum(&self.messages_published),
            self.messages_consumed.get(),
            sum(&self.message_errors),
        )
    }
}
