//! Start-up and shutdown of the whole service, as `main.rs` and the tests run it:
//! supervise (or find) NATS, connect the shared client, serve HTTP on an already-bound
//! listener until `shutdown` resolves, then stop HTTP, the client and the child in order.
//!
//! Ports configured as `0` are picked at start (the API port by the OS when `main.rs`
//! binds, the NATS ports by nats-server); the config shared with the rest of the service
//! carries the real ports from then on. Once everything listens they are logged
//! (`prism-broker listening`) and, with `service.ports_file`, written to a JSON file.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Addr, Supervisor};
use actix_web::{web, App, HttpServer};
use serde_json::json;
use tracing::{error, info, warn};

use crate::api::{self, publish::Publisher, publish::Publishers, AppState};
use crate::collectors::{self, CollectorsState};
use crate::config::BrokerConfig;
use crate::nats::{
    self, server_conf, CrashPolicy, NatsProcessActor, NatsProcessError, NatsState, ServerPorts,
    StartServer, StopServer,
};
use crate::router::{ReloadRoutes, RouterActor, RouterRuntime, RouterState, StopRoutes};
use crate::rules::{RouteTable, RuleProblem};
use crate::stats::actor::{CLUSTER_REFRESH_TIMEOUT, REFRESH_TIMEOUT};
use crate::stats::snapshot::SnapshotCell;
use crate::stats::{metrics::MetricsError, Metrics, RequestMetrics, StatsActor, StatsConfig};
use crate::streams::{ConsumersState, StoreWatch, StreamActor, StreamsState};

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
    #[error("cannot write the ports file {path} (service.ports_file): {source}")]
    PortsFile {
        path: String,
        source: std::io::Error,
    },
}

/// Runs the service until `shutdown` resolves. Must be called inside an actix `System`.
pub async fn run(
    mut config: BrokerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    // Rules first: a service that would start without its routes is refused (exit 2).
    let table = RouteTable::load_for(&config).map_err(|e| ServiceError::Routes(e.problems()))?;
    let metrics = Arc::new(Metrics::new()?);
    let api_addr = listener.local_addr()?;
    config.service.port = api_addr.port();
    let mut credentials = None;
    let mut process: Option<Addr<NatsProcessActor>> = None;

    let nats_state = if config.nats.auto_start {
        let nats_cfg = &config.nats;
        let binary = nats::find_binary(&nats_cfg.binary)?;
        credentials = server_conf::broker_credentials(nats_cfg);
        let state = Arc::new(
            NatsState::supervised(ServerPorts {
                client: nats_cfg.port,
                http: nats_cfg.http_port,
                cluster: nats_cfg
                    .cluster
                    .name
                    .as_ref()
                    .map(|_| nats_cfg.cluster.port),
            })
            .with_crash_policy(CrashPolicy {
                window: nats_cfg.restart.crash_window.duration(),
                loop_after: nats_cfg.restart.crash_loop_after,
            }),
        );
        let actor_cfg = nats_cfg.clone();
        let actor_state = state.clone();
        let actor_credentials = credentials.clone();
        let addr = Supervisor::start(move |_| {
            NatsProcessActor::new(actor_cfg, binary, actor_credentials, actor_state)
        });
        let (pid, ports) = addr.send(StartServer).await??;
        // From here on the config names the real ports (the client connects to them).
        nats::process::pin_ports(&mut config.nats, ports);
        info!(
            pid,
            port = ports.client,
            http_port = ports.http,
            cluster_port = ports.cluster,
            "supervised nats-server is ready"
        );
        process = Some(addr);
        state
    } else {
        info!(urls = ?config.nats.client_urls(), "using external nats");
        Arc::new(NatsState::external())
    };
    let config = Arc::new(config);
    let nats_cfg = &config.nats;

    let client = nats::connect(
        nats_cfg,
        credentials.as_ref(),
        config.service.request_timeout.duration(),
        nats_state.clone(),
        metrics.clone(),
    )
    .await?;
    metrics.bind_client(client.clone());

    let specs = config.effective_streams();
    let streams = Arc::new(StreamsState::new(&specs));
    let snapshot = Arc::new(SnapshotCell::default());
    let stats = StatsActor::start_supervised(
        metrics.clone(),
        nats_state.clone(),
        client.clone(),
        streams.clone(),
        snapshot.clone(),
        StatsConfig {
            varz_url: nats_cfg.auto_start.then(|| nats_cfg.monitor_url("/varz")),
            routez_url: nats_cfg
                .clustered()
                .then(|| nats_cfg.monitor_url("/routez")),
            timeout: if nats_cfg.clustered() {
                CLUSTER_REFRESH_TIMEOUT
            } else {
                REFRESH_TIMEOUT
            },
            ..StatsConfig::default()
        },
    );
    let request_timeout = config.service.request_timeout.duration();
    let store = StoreWatch {
        dir: nats_cfg
            .auto_start
            .then(|| server_conf::ServerPaths::under(&nats_cfg.data_dir).store_dir),
        max_payload: nats_cfg.limits.max_payload.bytes(),
    };
    let consumers = Arc::new(ConsumersState::default());
    let stream_actor = {
        let (client, nats, streams) = (client.clone(), nats_state.clone(), streams.clone());
        let (durables, consumers) = (config.durable_consumers(), consumers.clone());
        Supervisor::start(move |_| {
            StreamActor::new(client, nats, specs, streams, request_timeout, store)
                .with_consumers(durables, consumers)
        })
    };
    let collectors = Arc::new(CollectorsState::new(&config.collectors));
    metrics.bind_collectors(collectors.clone());
    let heartbeats = collectors::start(
        collectors.clone(),
        client.clone(),
        nats_state.clone(),
        metrics.clone(),
    );
    let workers = match config.service.workers {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    };
    let publishers = Arc::new(Publishers::new(workers));
    let router = Arc::new(RouterState::new(table));
    // The start-up table is version 1; it is not counted as a reload.
    metrics.routes_version.set(1);
    metrics
        .routes_loaded
        .set(i64::try_from(router.table().routes().len()).unwrap_or(i64::MAX));
    let router_runtime = RouterRuntime::start(config.router.threads)?;
    let router_actor = {
        let (runtime, config, credentials, router, metrics, streams) = (
            router_runtime.handle().clone(),
            config.clone(),
            credentials.clone(),
            router.clone(),
            metrics.clone(),
            streams.clone(),
        );
        Supervisor::start(move |_| {
            RouterActor::new(runtime, config, credentials, router, metrics, streams)
        })
    };
    let reload_on_hangup = reload_on_sighup(router_actor.clone())?;
    let app_state = web::Data::new(AppState {
        config: config.clone(),
        nats: nats_state.clone(),
        client: client.clone(),
        streams,
        stream_actor,
        consumers,
        collectors,
        router,
        router_actor: router_actor.clone(),
        metrics: metrics.clone(),
        snapshot,
        started: Instant::now(),
        drain: Default::default(),
        publishers: publishers.clone(),
    });
    let drain_state = app_state.clone();
    let publisher_cfg = (config.nats.clone(), credentials.clone(), publishers);
    let server = HttpServer::new(move || {
        let (nats, credentials, publishers) = publisher_cfg.clone();
        App::new()
            .wrap(RequestMetrics::new(metrics.clone()))
            .data_factory(move || {
                let (nats, credentials, publishers) =
                    (nats.clone(), credentials.clone(), publishers.clone());
                async move {
                    let client = nats::client::connect_publisher(
                        &nats,
                        credentials.as_ref(),
                        request_timeout,
                    )
                    .await?;
                    publishers.register(&client);
                    Ok::<_, nats::client::ClientError>(Publisher::new(client, request_timeout))
                }
            })
            .app_data(app_state.clone())
            .configure(api::configure)
    })
    .disable_signals()
    .shutdown_timeout(config.service.shutdown_timeout.duration().as_secs().max(1))
    .workers(workers);
    let server = server.listen(listener)?.run();
    let handle = server.handle();
    let server_task = actix_rt::spawn(server);
    let ports = nats_state.ports();
    info!(
        api = %api_addr,
        nats_port = ports.client,
        nats_http_port = ports.http,
        nats_cluster_port = ports.cluster,
        "prism-broker listening"
    );

    let ports_file = config.service.ports_file.as_deref();
    let failed = match ports_file {
        Some(path) => write_ports_file(path, &listen_info(&config, api_addr, &nats_state)).err(),
        None => None,
    };
    match &failed {
        Some(e) => {
            error!(error = %e, "stopping: the ports file was asked for but cannot be written")
        }
        None => shutdown.await,
    }
    info!("shutting down: answering new requests with 503 while in-flight ones finish");
    let left = drain_state
        .drain
        .drain(config.service.shutdown_timeout.duration())
        .await;
    if left > 0 {
        warn!(
            requests = left,
            "requests still in flight at the shutdown timeout"
        );
    }
    handle.stop(true).await;
    let _ = server_task.await;
    reload_on_hangup.abort();
    heartbeats.abort();
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
    if let Some(path) = ports_file {
        // Nothing listens there any more.
        let _ = std::fs::remove_file(path);
    }
    if let Some(e) = failed {
        return Err(e);
    }
    info!("shutdown complete");
    Ok(())
}

/// What `service.ports_file` holds: the broker's pid and the addresses it listens on.
fn listen_info(config: &BrokerConfig, api: SocketAddr, nats: &NatsState) -> serde_json::Value {
    let api_host = match api.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        ip if ip.is_ipv6() => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let ports = nats.ports();
    let nonzero = |port: u16| (nats.supervised && port != 0).then_some(port);
    json!({
        "pid": std::process::id(),
        "api": {
            "host": api.ip().to_string(),
            "port": api.port(),
            "url": format!("http://{api_host}:{}", api.port()),
        },
        "nats": {
            "supervised": nats.supervised,
            "port": nonzero(ports.client),
            "http_port": nonzero(ports.http),
            "cluster_port": ports.cluster.filter(|_| nats.supervised),
            "urls": config.nats.client_urls(),
        },
    })
}

/// Writes `info` to `path` atomically (a temp file in the same dir, renamed over it).
fn write_ports_file(path: &Path, info: &serde_json::Value) -> Result<(), ServiceError> {
    let failed = |source| ServiceError::PortsFile {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let mut tmp = PathBuf::from(path);
    tmp.set_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, format!("{info}\n")).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        failed(e)
    })?;
    info!(path = %path.display(), "ports file written");
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
