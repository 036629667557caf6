//! Start-up and shutdown of the whole service, as `main.rs` and the tests run it:
//! supervise (or find) NATS, connect the shared client, serve HTTP on an already-bound
//! listener until `shutdown` resolves, then stop HTTP, the client and the child in order.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Addr, Supervisor};
use actix_web::{web, App, HttpServer};
use tracing::{info, warn};

use crate::api::{self, publish::Publisher, AppState};
use crate::config::BrokerConfig;
use crate::nats::{
    self, server_conf, NatsProcessActor, NatsProcessError, NatsState, ServerPorts, StartServer,
    StopServer,
};
use crate::router::{ReloadRoutes, RouterActor, RouterRuntime, RouterState, StopRoutes};
use crate::routing::{RouteTable, RuleProblem};
use crate::stats::snapshot::SnapshotCell;
use crate::stats::{metrics::MetricsError, Metrics, RequestMetrics, StatsActor, StatsConfig};
use crate::streams::{StreamActor, StreamsState};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Nats(#[from] NatsProcessError),
    #[error(transparent)]
    Client(#[from] nats::client::ClientError),
    #[error("nats process actor is gone: {0}")]
    Mailbox(#[from] actix::MailboxError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("{} problem(s) in the route rules", .0.len())]
    Routes(Vec<RuleProblem>),
    #[error("http server failed: {0}")]
    Http(#[from] std::io::Error),
}

/// Runs the service until `shutdown` resolves. Must be called inside an actix `System`.
pub async fn run(
    config: BrokerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let config = Arc::new(config);
    // Rules first: a service that would start without its routes is refused (exit 2).
    let table = RouteTable::load_for(&config).map_err(|e| ServiceError::Routes(e.problems()))?;
    let metrics = Arc::new(Metrics::new()?);
    let nats_cfg = &config.nats;
    let mut credentials = None;
    let mut process: Option<Addr<NatsProcessActor>> = None;

    let nats_state = if nats_cfg.auto_start {
        let binary = nats::find_binary(&nats_cfg.binary)?;
        credentials = server_conf::broker_credentials(nats_cfg);
        let state = Arc::new(NatsState::supervised(ServerPorts {
            client: nats_cfg.port,
            http: nats_cfg.http_port,
            cluster: nats_cfg
                .cluster
                .name
                .as_ref()
                .map(|_| nats_cfg.cluster.port),
        }));
        let actor_cfg = nats_cfg.clone();
        let actor_state = state.clone();
        let actor_credentials = credentials.clone();
        let addr = Supervisor::start(move |_| {
            NatsProcessActor::new(actor_cfg, binary, actor_credentials, actor_state)
        });
        let pid = addr.send(StartServer).await??;
        info!(pid, port = nats_cfg.port, "supervised nats-server is ready");
        process = Some(addr);
        state
    } else {
        info!(urls = ?nats_cfg.client_urls(), "using external nats");
        Arc::new(NatsState::external())
    };

    let client = nats::connect(
        nats_cfg,
        credentials.as_ref(),
        config.service.request_timeout.duration(),
        nats_state.clone(),
        metrics.clone(),
    )
    .await?;

    let streams = Arc::new(StreamsState::default());
    let snapshot = Arc::new(SnapshotCell::default());
    let stats = StatsActor::start_supervised(
        metrics.clone(),
        nats_state.clone(),
        client.clone(),
        streams.clone(),
        snapshot.clone(),
        StatsConfig {
            varz_url: nats_cfg.auto_start.then(|| nats_cfg.monitor_url("/varz")),
            ..StatsConfig::default()
        },
    );
    let request_timeout = config.service.request_timeout.duration();
    let stream_actor = {
        let (client, nats, specs, streams) = (
            client.clone(),
            nats_state.clone(),
            config.effective_streams(),
            streams.clone(),
        );
        Supervisor::start(move |_| StreamActor::new(client, nats, specs, streams, request_timeout))
    };
    let router = Arc::new(RouterState::new(table));
    // The start-up table is version 1; it is not counted as a reload.
    metrics.routes_version.set(1);
    metrics
        .routes_loaded
        .set(i64::try_from(router.table().routes().len()).unwrap_or(i64::MAX));
    let router_runtime = RouterRuntime::start(config.router.threads)?;
    let router_actor = {
        let (runtime, config, credentials, router, metrics) = (
            router_runtime.handle().clone(),
            config.clone(),
            credentials.clone(),
            router.clone(),
            metrics.clone(),
        );
        Supervisor::start(move |_| RouterActor::new(runtime, config, credentials, router, metrics))
    };
    let reload_on_hangup = reload_on_sighup(router_actor.clone())?;
    let app_state = web::Data::new(AppState {
        config: config.clone(),
        nats: nats_state,
        client: client.clone(),
        streams,
        stream_actor,
        router,
        router_actor: router_actor.clone(),
        metrics: metrics.clone(),
        snapshot,
        started: Instant::now(),
    });
    let publisher_cfg = (config.nats.clone(), credentials.clone());
    let mut server = HttpServer::new(move || {
        let (nats, credentials) = publisher_cfg.clone();
        App::new()
            .wrap(RequestMetrics::new(metrics.clone()))
            .data_factory(move || {
                let (nats, credentials) = (nats.clone(), credentials.clone());
                async move {
                    let client = nats::client::connect_publisher(
                        &nats,
                        credentials.as_ref(),
                        request_timeout,
                    )
                    .await?;
                    Ok::<_, nats::client::ClientError>(Publisher::new(client, request_timeout))
                }
            })
            .app_data(app_state.clone())
            .configure(api::configure)
    })
    .disable_signals()
    .shutdown_timeout(config.service.shutdown_timeout.duration().as_secs().max(1));
    if config.service.workers > 0 {
        server = server.workers(config.service.workers);
    }
    let addr = listener.local_addr()?;
    let server = server.listen(listener)?.run();
    let handle = server.handle();
    info!(%addr, "http api listening");

    let server_task = actix_rt::spawn(server);
    shutdown.await;
    info!("shutting down");
    handle.stop(true).await;
    let _ = server_task.await;
    reload_on_hangup.abort();
    if tokio::time::timeout(Duration::from_secs(10), router_actor.send(StopRoutes))
        .await
        .is_err()
    {
        warn!("route tasks did not stop in time");
    }
    drop(router_runtime);
    if tokio::time::timeout(Duration::from_secs(1), client.flush())
        .await
        .is_err()
    {
        warn!("nats client flush timed out during shutdown");
    }
    drop(stats);
    drop(client);
    if let Some(process) = process {
        process.send(StopServer).await?;
    }
    info!("shutdown complete");
    Ok(())
}

/// Reloads the routes at every SIGHUP until the returned task is aborted.
fn reload_on_sighup(
    router: Addr<RouterActor>,
) -> Result<tokio::task::JoinHandle<()>, std::io::Error> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(actix_rt::spawn(async move {
        while hangups.recv().await.is_some() {
            info!("SIGHUP: reloading routes");
            router.do_send(ReloadRoutes {
                reason: "SIGHUP".into(),
            });
        }
    }))
}
