//! What every handler can reach: config, the NATS client and state, the stream actor and
//! state, the durable consumers' health, the collectors heard from, the status snapshot,
//! metrics, start time; plus the checks readiness and health share and the snapshot read
//! the status endpoints share.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::{Addr, MailboxError};

use super::envelope::{ApiError, ErrorCode};
use crate::collectors::CollectorsState;
use crate::config::BrokerConfig;
use crate::nats::NatsState;
use crate::router::{RouterActor, RouterState};
use crate::stats::snapshot::{Figures, SnapshotCell, SnapshotMeta, StatusSnapshot};
use crate::stats::Metrics;
use crate::streams::{ConsumersState, StreamActor, StreamError, StreamsState};

/// Shared by all actix-web workers through `web::Data<AppState>`.
pub struct AppState {
    pub config: Arc<BrokerConfig>,
    pub nats: Arc<NatsState>,
    pub client: async_nats::Client,
    pub streams: Arc<StreamsState>,
    pub stream_actor: Addr<StreamActor>,
    /// Health of the configured durable consumers (`consumers:`).
    pub consumers: Arc<ConsumersState>,
    /// The data collectors heard from (`health.collector.>`), kept by their own task.
    pub collectors: Arc<CollectorsState>,
    pub router: Arc<RouterState>,
    pub router_actor: Addr<RouterActor>,
    pub metrics: Arc<Metrics>,
    /// Figures that need a NATS round trip, kept fresh by the `StatsActor`.
    pub snapshot: Arc<SnapshotCell>,
    pub started: Instant,
    /// Graceful shutdown: refuses new requests while in-flight ones finish.
    pub drain: super::drain::Drain,
    /// The HTTP workers' publishing connections.
    pub publishers: Arc<super::publish::Publishers>,
}

/// Longest a request waits for the refresh a stream change triggered: two refreshes (one
/// may be running when the change comes), each bounded by the refresh timeout.
pub const SNAPSHOT_CATCH_UP: Duration =
    Duration::from_secs(2 * crate::stats::actor::REFRESH_TIMEOUT.as_secs());

/// A snapshot as one request shows it.
pub struct SnapshotView {
    pub snapshot: Arc<StatusSnapshot>,
    /// Why its figures are not current; `None` when they are.
    pub stale: Option<String>,
    /// `data.snapshot` of the answer.
    pub meta: SnapshotMeta,
}

impl SnapshotView {
    /// The figures, when they may be shown as current.
    pub fn current(&self) -> Option<&Figures> {
        self.stale.is_none().then_some(&*self.snapshot.figures)
    }

    /// The figures even when stale (the server info and JetStream usage last read; the
    /// answer's `snapshot` dates them).
    pub fn latest(&self) -> &Figures {
        &self.snapshot.figures
    }
}

impl AppState {
    pub fn uptime_seconds(&self) -> f64 {
        (self.started.elapsed().as_millis() as f64) / 1000.0
    }

    pub fn request_timeout(&self) -> Duration {
        self.config.service.request_timeout.duration()
    }

    pub fn nats_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// 503 `NATS_CONNECTION_ERROR` unless the client is connected.
    /// Also when the supervised server is known to be down (its exit is seen at once, while
    /// a connection may take a moment to notice).
    pub fn require_nats(&self) -> Result<(), ApiError> {
        if self.nats.supervised && !self.nats.server_up() {
            return Err(ApiError::new(
                ErrorCode::NatsConnectionError,
                "nats-server is not running (it is being restarted); retry when /ready answers 200",
            ));
        }
        if self.nats_connected() {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::NatsConnectionError,
                "not connected to nats; retry when /ready answers 200",
            ))
        }
    }

    /// Sends to the stream actor with a deadline; maps its errors to API errors.
    pub async fn ask_streams<T>(
        &self,
        request: impl Future<Output = Result<Result<T, StreamError>, MailboxError>>,
    ) -> Result<T, ApiError> {
        self.require_nats()?;
        let deadline = self.request_timeout() + Duration::from_secs(1);
        match tokio::time::timeout(deadline, request).await {
            Ok(Ok(result)) => result.map_err(ApiError::from),
            Ok(Err(e)) => Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!("stream actor unavailable: {e}"),
            )),
            Err(_) => Err(ApiError::new(
                ErrorCode::NatsConnectionError,
                format!("jetstream did not answer within {deadline:?}"),
            )),
        }
    }

    /// The status snapshot, judged against the live connection state. Never asks an actor
    /// or NATS: right after a stream change made through this service it waits (at most
    /// [`SNAPSHOT_CATCH_UP`]) for the refresh that change triggered, so a stream created
    /// through the API is listed by the next request.
    pub async fn snapshot_view(&self) -> SnapshotView {
        let mut snapshot = self.snapshot.load();
        let changes = self.streams.changes();
        if self.nats.client_connected() && snapshot.attempted_version < changes {
            snapshot = self.snapshot.attempted(changes, SNAPSHOT_CATCH_UP).await;
        }
        // The connection facts the refresher records (set by the client's event callback
        // together), read after the snapshot.
        let connection = self.nats.client_reconnects();
        let stale = snapshot.stale_reason(
            self.nats.client_connected() && self.nats_connected(),
            connection,
            changes,
        );
        let meta = snapshot.meta(stale.clone(), SystemTime::now());
        SnapshotView {
            snapshot,
            stale,
            meta,
        }
    }

    /// The configured streams were ensured on the current connection.
    pub fn streams_ensured(&self) -> bool {
        self.streams.ensured_for(self.nats.connection_generation())
    }

    /// Components that keep the service from being ready, with the reason.
    pub fn not_ready(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.drain.is_draining() {
            problems.push(("service".into(), "shutting down".into()));
        }
        if self.nats.supervised && !self.nats.server_up() {
            let reason = self
                .nats
                .last_error()
                .unwrap_or_else(|| "nats-server is not running".into());
            problems.push(("nats_server".into(), reason));
        }
        if let Some((silent, why)) = self.nats.jetstream_silence() {
            problems.push((
                "jetstream".into(),
                format!(
                    "jetstream of the supervised nats-server has not answered for {:.1}s: {why}",
                    silent.as_secs_f64()
                ),
            ));
        }
        let (publishers_up, workers) = self.publishers.connected();
        if !self.nats_connected() {
            problems.push(("nats_client".into(), "not connected to nats".into()));
        } else if publishers_up < workers {
            problems.push((
                "nats_client".into(),
                format!("{publishers_up} of {workers} http workers' publishing connections are up"),
            ));
        } else if !self.streams_ensured() {
            problems.push((
                "streams".into(),
                "configured streams not ensured yet".into(),
            ));
        }
        for (name, reason) in self.streams.failures() {
            problems.push((format!("stream:{name}"), reason));
        }
        for (name, reason) in self.consumers.failures() {
            problems.push((format!("consumer:{name}"), reason));
        }
        for route in self.router.not_live() {
            problems.push((
                format!("route:{route}"),
                "not subscribed or consuming yet".into(),
            ));
        }
        problems
    }
}

impl From<StreamError> for ApiError {
    fn from(e: StreamError) -> Self {
        let code = match &e {
            StreamError::NotFound(_) => ErrorCode::StreamNotFound,
            StreamError::Conflict(_) => ErrorCode::StreamCreationError,
            StreamError::Protected(_) => ErrorCode::InvalidParameters,
            StreamError::Invalid(_) => ErrorCode::InvalidStreamData,
            StreamError::Unavailable(_) => ErrorCode::NatsConnectionError,
            StreamError::JetStream(_) => ErrorCode::JetstreamError,
        };
        let error = ApiError::new(code, e.to_string());
        match e {
            StreamError::Protected(_) => error.with_status(actix_web::http::StatusCode::CONFLICT),
            _ => error,
        }
    }
}
