//! NATS: the supervised `nats-server` child (`NatsProcessActor`), generation of its config
//! file, and the shared async-nats client connection the other actors use.

/// The user the broker adds to the child's config for its own connection when
/// `nats.users` is set.
pub const BROKER_USER: &str = "prism-broker";
