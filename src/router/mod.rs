//! The live router: the `RouterActor` owns the active route table and one supervised task
//! per route ([`task`]); tasks consume core subscriptions ([`core`]) or JetStream durables
//! ([`jetstream`]), run messages through the compiled rules and publish the outputs, retrying
//! transient failures and dead-lettering what can never succeed ([`process`], [`output`]);
//! stateful routes wake up when their steps have something to emit ([`timers`]); a route
//! can be watched at work ([`tap`]);
//! the table reloads on file change ([`watch`]), SIGHUP and the API, atomically and only when
//! valid ([`state`]).

pub mod actor;
mod core;
mod held;
mod jetstream;
pub mod output;
mod process;
pub mod state;
pub mod tap;
pub mod task;
mod timers;
pub mod watch;

pub use actor::{ReloadRoutes, RouterActor, RouterRuntime, StopRoutes};
pub use state::RouterState;
