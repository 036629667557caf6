//! NATS: the supervised `nats-server` child (`NatsProcessActor`), generation of its config
//! file, the shared async-nats client connection, and the state the rest of the service
//! reads about them.

pub(crate) mod client;
pub(crate) mod process;
pub mod server_conf;
pub(crate) mod state;

pub(crate) use client::connect;
pub(crate) use process::{
    find_binary, NatsProcessActor, NatsProcessError, StartServer, StopServer,
};
pub(crate) use state::{CrashPolicy, NatsState, ServerPorts};

/// The user the broker adds to the child's config for its own connection when
/// `nats.users` is set.
pub const BROKER_USER: &str = "prism-broker";
