//! What every handler can reach: config, the NATS client and state, start time.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::config::BrokerConfig;
use crate::nats::NatsState;
use crate::stats::Metrics;

/// Shared by all actix-web workers through `web::Data<AppState>`.
pub struct AppState {
    pub config: Arc<BrokerConfig>,
    pub nats: Arc<NatsState>,
    pub client: async_nats::Client,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    pub started_at: SystemTime,
}

impl AppState {
    pub fn new(
        config: Arc<BrokerConfig>,
        nats: Arc<NatsState>,
        client: async_nats::Client,
        metrics: Arc<Metrics>,
    ) -> Self {
        AppState {
            config,
            nats,
            client,
            metrics,
            started: Instant::now(),
            started_at: SystemTime::now(),
        }
    }

    pub fn uptime_seconds(&self) -> f64 {
        (self.started.elapsed().as_millis() as f64) / 1000.0
    }

    pub fn nats_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Components that keep the service from being ready, with the reason.
    pub fn not_ready(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.nats.supervised && !self.nats.server_up() {
            let reason = self
                .nats
                .last_error()
                .unwrap_or_else(|| "nats-server is not running".into());
            problems.push(("nats_server", reason));
        }
        if !self.nats_connected() {
            problems.push(("nats_client", "not connected to nats".into()));
        }
        problems
    }
}
