//! Metrics: [`metrics::Metrics`] declares every Prometheus metric of the service once, in
//! one registry; the `StatsActor` (issue 6) refreshes the derived gauges on a timer.

pub mod metrics;

pub use metrics::Metrics;
