//! Metrics: [`metrics::Metrics`] declares every Prometheus metric of the service once, in
//! one registry; [`actor::StatsActor`] refreshes the derived NATS and stream gauges on a
//! timer; [`http`] counts REST requests and serves `GET /metrics`. The router counts
//! through [`metrics::RouteMetrics`] handles, resolved once per route.

pub mod actor;
pub mod http;
pub mod metrics;

pub use actor::{RefreshStats, StatsActor, StatsConfig};
pub use http::{render_metrics, RequestMetrics};
pub use metrics::{Metrics, RouteCounts, RouteMetrics};
