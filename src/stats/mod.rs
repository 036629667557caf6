//! Metrics and the status snapshot: [`metrics::Metrics`] declares every Prometheus metric
//! of the service once, in one registry; [`actor::StatsActor`] is the one background
//! refresher of the figures that need a NATS round trip, feeding both the derived NATS and
//! stream gauges and the [`snapshot::StatusSnapshot`] the status endpoints answer from;
//! [`http`] counts REST requests and serves `GET /metrics`; [`cluster`] reads the NATS
//! cluster (meta group, routes, stream replicas) into the snapshot's cluster section. The
//! router counts through [`metrics::RouteMetrics`] handles, resolved once per route.

pub(crate) mod actor;
pub(crate) mod cluster;
pub(crate) mod http;
pub mod metrics;
pub(crate) mod snapshot;

pub(crate) use actor::{StatsActor, StatsConfig};
pub(crate) use http::{render_metrics, RequestMetrics};
pub(crate) use metrics::Metrics;
