//! The live router: the `RouterActor` owns the active route table and one task per route
//! ([`task`]); tasks consume core subscriptions or JetStream durables, run messages through
//! the compiled rules and publish the outputs ([`output`]); the table reloads on file
//! change ([`watch`]), SIGHUP and the API, atomically and only when valid ([`state`]).

pub mod actor;
pub mod output;
pub mod state;
pub mod task;
pub mod watch;

pub use actor::{ReloadReport, ReloadRoutes, RouterActor, RouterRuntime, StopRoutes};
pub use state::{ReloadStatus, RouterState};
