//! prism-broker: the message broker service of the MarketPrism market-data platform.
//!
//! Crate map, one line per module and its job:
//!
//! - [`config`]: `broker.yaml` raw serde types, units (sizes, durations), env overrides and
//!   validation that collects every problem (no I/O beyond reading the file).
//! - [`nats`]: the supervised `nats-server` child (`NatsProcessActor`: restarts, crash
//!   record, JetStream probe and hang restarts), generation of its config file (cluster
//!   block included), and the shared async-nats client connection.
//! - [`streams`]: `StreamActor`, JetStream stream config mapping, default streams.
//! - [`rules`]: the rule language, pure (no actix, no network): primitives (subject
//!   patterns, templates, JSONPath, headers), conditions and transform steps, the compiled
//!   route and table, compilation with lint, loading, and the `check` / `test` commands.
//! - [`router`]: `RouterActor`, subscription/consumer tasks, publishing, dead letters, reload.
//! - [`stats`]: `StatsActor`, the status snapshot (with its cluster section) and every
//!   metric, declared once (with the Python service's metric names, copied from ours).
//! - [`collectors`]: heartbeats of the data collectors (`health.collector.>`), the table
//!   of collectors heard from, read by the status endpoints and metrics.
//! - [`subject`]: NATS subject and filter syntax, matching and overlap (pure).
//! - [`api`]: actix-web wiring (`api::configure`), handlers, the response envelope, `ApiError`.
//! - [`service`]: start-up and shutdown of the whole service, used by `main.rs` and tests.

pub mod api;
pub(crate) mod collectors;
pub mod config;
pub mod nats;
pub(crate) mod router;
pub mod rules;
pub mod service;
pub mod stats;
pub(crate) mod streams;
pub mod subject;
