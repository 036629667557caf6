//! The shared async-nats connection: reconnects forever with a short capped delay (so a
//! restarted child is picked up quickly), logs connection events and keeps [`NatsState`]
//! informed. Every actor and handler clones this client.
//!
//! [`connect_publisher`] opens one more connection with the same options for each HTTP
//! worker thread, used only by the publish endpoints: its I/O task then runs on the
//! worker's own thread, so a REST publish and its JetStream ack never hop threads.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectOptions, Event};
use tracing::{debug, error, info, warn};

use super::server_conf::BrokerCredentials;
use super::state::NatsState;
use crate::config::NatsConfig;
use crate::stats::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to nats at {urls}: {source}")]
    Connect {
        urls: String,
        source: async_nats::ConnectError,
    },
    #[error("invalid nats url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("connection task failed: {0}")]
    Task(String),
}

/// Connects in the background: returns at once, `NatsState::client_connected` says when
/// the connection is up. Requests made through it time out after `request_timeout`.
pub async fn connect(
    nats: &NatsConfig,
    credentials: Option<&BrokerCredentials>,
    request_timeout: Duration,
    state: Arc<NatsState>,
    metrics: Arc<Metrics>,
) -> Result<async_nats::Client, ClientError> {
    let options = options(nats, credentials, request_timeout).event_callback(move |event| {
        let state = state.clone();
        let metrics = metrics.clone();
        async move {
            match event {
                Event::Connected => {
                    state.set_client_connected(true);
                    info!(
                        reconnects = state.client_reconnects(),
                        "nats client connected"
                    );
                }
                Event::Disconnected => {
                    state.set_client_connected(false);
                    warn!("nats client disconnected");
                }
                Event::Closed => {
                    state.set_client_connected(false);
                    info!("nats client closed");
                }
                Event::SlowConsumer(sid) => {
                    metrics.nats_slow_consumer();
                    warn!(sid, "nats slow consumer: messages were dropped")
                }
                Event::LameDuckMode => warn!("nats server entered lame duck mode"),
                Event::Draining => info!("nats client draining"),
                Event::ServerError(e) => warn!(error = %e, "nats server error"),
                Event::ClientError(e) => warn!(error = %e, "nats client error"),
            }
        }
    });
    open(options, &nats.client_urls()).await
}

/// A connection for one HTTP worker's publishes; its events are logged at debug only
/// (the shared connection reports the same outages).
pub async fn connect_publisher(
    nats: &NatsConfig,
    credentials: Option<&BrokerCredentials>,
    request_timeout: Duration,
) -> Result<async_nats::Client, ClientError> {
    let options = options(nats, credentials, request_timeout)
        .name("prism-broker-publisher")
        .event_callback(|event| async move { debug!(%event, "publisher connection event") });
    open(options, &nats.client_urls()).await
}

/// The router's own connection (opened on the router's thread). Slow-consumer events
/// there mean routed messages were dropped: they are counted and logged as errors.
/// `on_connection` hears every connection (true) and loss (false).
pub async fn connect_router(
    nats: &NatsConfig,
    credentials: Option<&BrokerCredentials>,
    request_timeout: Duration,
    metrics: Arc<Metrics>,
    on_connection: impl Fn(bool) + Send + Sync + 'static,
) -> Result<async_nats::Client, ClientError> {
    let on_connection = Arc::new(on_connection);
    let options = options(nats, credentials, request_timeout)
        .name("prism-broker-router")
        // Room for bursts: a route task that falls behind this far is a slow consumer.
        .subscription_capacity(ROUTER_SUBSCRIPTION_CAPACITY)
        .event_callback(move |event| {
            let metrics = metrics.clone();
            let on_connection = on_connection.clone();
            async move {
                match event {
                    Event::SlowConsumer(sid) => {
                        metrics.nats_slow_consumer();
                        error!(
                            sid,
                            "router is a slow consumer: nats dropped routed messages"
                        )
                    }
                    Event::Connected => {
                        on_connection(true);
                        info!("router connection up")
                    }
                    Event::Disconnected | Event::Closed => {
                        on_connection(false);
                        warn!("router connection lost")
                    }
                    other => debug!(event = %other, "router connection event"),
                }
            }
        });
    open(options, &nats.client_urls()).await
}

/// Messages a router subscription may buffer before NATS drops (slow consumer).
const ROUTER_SUBSCRIPTION_CAPACITY: usize = 256 * 1024;

async fn open(options: ConnectOptions, urls: &[String]) -> Result<async_nats::Client, ClientError> {
    let addrs = urls
        .iter()
        .map(|url| {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|e| ClientError::Url {
                    url: url.clone(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    options
        .connect(addrs)
        .await
        .map_err(|source| ClientError::Connect {
            urls: urls.join(","),
            source,
        })
}

fn options(
    nats: &NatsConfig,
    credentials: Option<&BrokerCredentials>,
    request_timeout: Duration,
) -> ConnectOptions {
    let mut options = ConnectOptions::new()
        .name("prism-broker")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(request_timeout))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((50 * attempts as u64).min(1000))
        });
    if let Some(credentials) = credentials {
        options = options.user_and_password(credentials.user.clone(), credentials.password.clone());
    }
    if let Some(tls) = &nats.tls {
        options = options.require_tls(true);
        if let Some(ca) = &tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
    }
    options
}

/// True once a message `client` sent to itself came back within `within`: every SUB it
/// sent before is then in effect on the server (`flush()` only empties the socket buffer).
pub async fn server_round_trip(client: &async_nats::Client, within: Duration) -> bool {
    let inbox = client.new_inbox();
    let Ok(mut echo) = client.subscribe(inbox.clone()).await else {
        return false;
    };
    if client.publish(inbox, bytes::Bytes::new()).await.is_err() {
        return false;
    }
    matches!(
        tokio::time::timeout(within, futures::StreamExt::next(&mut echo)).await,
        Ok(Some(_))
    )
}
