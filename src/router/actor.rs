//! `RouterActor`: owns the active route table and one task per route. The tasks and the
//! router's own NATS connection run on a dedicated single-threaded runtime
//! ([`RouterRuntime`]), so a message, its processing, its publishes and the connection's
//! I/O share one thread and never hop, and nothing else (HTTP, actors) runs in between. It reloads the table on file change
//! (when `router.watch` is on), on SIGHUP and on `POST /api/v1/routes/reload`: the new
//! table is compiled and validated in full; if anything is wrong the old one keeps
//! running, otherwise it replaces the old one, and routes whose source did not change keep
//! their subscription or consumer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use async_nats::jetstream;
use serde::Serialize;
use tracing::{error, info, warn};

use super::state::{ReloadStatus, RouterState};
use super::task::{Resume, RouteTask, SourceKey, TaskDeps};
use super::watch::fingerprint;
use crate::config::BrokerConfig;
use crate::nats::client::{connect_router, ClientError};
use crate::nats::server_conf::BrokerCredentials;
use crate::rules::{RouteTable, RuleProblem, TableSettings};
use crate::stats::Metrics;
use crate::streams::StreamsState;

/// How often the rule directories are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How long a core-sourced message's transient output failures are retried before it is
/// dead-lettered.
const CORE_RETRY_FOR: Duration = Duration::from_secs(30);
/// How long a reload waits for a replacement task to be live before it stops the old one
/// anyway.
const SWITCH_DEADLINE: Duration = Duration::from_secs(10);

/// What a successful reload changed.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    pub version: u64,
    pub routes: usize,
    /// Routes whose task kept its subscription or consumer (maybe with new rules).
    pub kept: Vec<String>,
    /// Routes that got a new task (new, or their source changed).
    pub started: Vec<String>,
    /// Routes that are gone.
    pub stopped: Vec<String>,
}

/// The thread and single-threaded tokio runtime the route tasks run on. Dropping it ends
/// the thread (after the tasks were stopped).
pub struct RouterRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RouterRuntime {
    /// One thread: a current-thread runtime; more: a multi-thread runtime of that size.
    pub fn start(threads: usize) -> std::io::Result<RouterRuntime> {
        let runtime = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("prism-router")
                .build()?
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .thread_name("prism-router")
                .build()?
        };
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("prism-router".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(RouterRuntime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for RouterRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub struct RouterActor {
    runtime: tokio::runtime::Handle,
    config: Arc<BrokerConfig>,
    credentials: Option<BrokerCredentials>,
    state: Arc<RouterState>,
    metrics: Arc<Metrics>,
    streams: Arc<StreamsState>,
    client: Option<(async_nats::Client, jetstream::Context)>,
    tasks: HashMap<String, RouteTask>,
    /// Last fingerprint seen, and whether it changed since the last reload.
    watched: Option<(u64, bool)>,
}

impl RouterActor {
    pub fn new(
        runtime: tokio::runtime::Handle,
        config: Arc<BrokerConfig>,
        credentials: Option<BrokerCredentials>,
        state: Arc<RouterState>,
        metrics: Arc<Metrics>,
        streams: Arc<StreamsState>,
    ) -> Self {
        // The files as they were when the table was loaded, so an edit made between the
        // load and the first check is seen.
        let watched = Some((rule_fingerprint(&config), false));
        RouterActor {
            runtime,
            config,
            credentials,
            state,
            metrics,
            streams,
            client: None,
            tasks: HashMap::new(),
            watched,
        }
    }

    fn deps(&self, route: &str) -> Option<TaskDeps> {
        let (client, js) = self.client.as_ref()?;
        Some(TaskDeps {
            client: client.clone(),
            js: js.clone(),
            metrics: self.metrics.route(route),
            // On one thread the workers could not run in parallel: the route's task then
            // handles the messages itself, in arrival order, which keeps every key's order
            // and saves the hand-off to a worker.
            partitions: if self.config.router.threads <= 1 {
                1
            } else {
                self.config.router.partition_workers
            },
            state: self.state.clone(),
            streams: self.streams.clone(),
            core_retry_for: CORE_RETRY_FOR,
        })
    }

    /// Starts a task for every route of the current table that has none; a route in
    /// `resume` continues where its replaced JetStream task stood.
    fn start_missing(&mut self, mut resume: HashMap<String, Resume>) -> Vec<String> {
        let table = self.state.table();
        let mut started = Vec::new();
        for route in table.routes() {
            if self.tasks.contains_key(&route.name) {
                continue;
            }
            if let Some(deps) = self.deps(&route.name) {
                let from = resume.remove(&route.name);
                let task = RouteTask::start(route.clone(), deps, &self.runtime, from);
                self.tasks.insert(route.name.clone(), task);
                started.push(route.name.clone());
            }
        }
        started
    }

    fn check_files(&mut self, ctx: &mut Context<Self>) {
        let now = rule_fingerprint(&self.config);
        match self.watched {
            None => self.watched = Some((now, false)),
            Some((last, _)) if last != now => self.watched = Some((now, true)),
            // Unchanged since the previous tick after a change: the edit is complete.
            Some((last, true)) if last == now => {
                self.watched = Some((now, false));
                ctx.notify(ReloadRoutes {
                    reason: "file change".into(),
                });
            }
            Some(_) => {}
        }
    }
}

fn rule_fingerprint(config: &BrokerConfig) -> u64 {
    fingerprint(&[&config.router.routes_dir, &config.router.transforms_dir])
}

impl Actor for RouterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let nats = self.config.nats.clone();
        let credentials = self.credentials.clone();
        let timeout = self.config.service.request_timeout.duration();
        let metrics = self.metrics.clone();
        let state = self.state.clone();
        // Connect from the router's runtime: async-nats spawns the connection's I/O task
        // where it is connected, so the route tasks and their connection share the router's
        // thread and a message crosses no thread on its way through.
        let connecting = self.runtime.spawn(async move {
            let on_connection = move |up| state.set_connected(up);
            connect_router(&nats, credentials.as_ref(), timeout, metrics, on_connection).await
        });
        ctx.wait(
            async move {
                connecting
                    .await
                    .map_err(|e| ClientError::Task(e.to_string()))
                    .and_then(|result| result)
            }
            .into_actor(self)
            .map(
                |result: Result<async_nats::Client, ClientError>, act, _ctx| match result {
                    Ok(client) => {
                        let mut js = jetstream::new(client.clone());
                        js.set_timeout(act.config.service.request_timeout.duration());
                        act.client = Some((client, js));
                        let started = act.start_missing(HashMap::new());
                        info!(routes = started.len(), "router started");
                    }
                    Err(e) => error!(error = %e, "router cannot connect to nats"),
                },
            ),
        );
        if self.config.router.watch {
            ctx.run_interval(WATCH_INTERVAL, |act, ctx| act.check_files(ctx));
        }
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) -> Running {
        for (_, task) in self.tasks.drain() {
            actix::spawn(async move {
                task.stop().await;
            });
        }
        Running::Stop
    }
}

impl Supervised for RouterActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        warn!("router actor restarting");
    }
}

/// Compiles the rule files again and swaps the table in if it is valid.
#[derive(Message)]
#[rtype(result = "Result<ReloadReport, Vec<RuleProblem>>")]
pub struct ReloadRoutes {
    pub reason: String,
}

impl Handler<ReloadRoutes> for RouterActor {
    type Result = AtomicResponse<Self, Result<ReloadReport, Vec<RuleProblem>>>;

    fn handle(&mut self, msg: ReloadRoutes, _ctx: &mut Context<Self>) -> Self::Result {
        let router = &self.config.router;
        let loaded = RouteTable::load(
            &router.routes_dir,
            &router.transforms_dir,
            &TableSettings::from_config(&self.config),
        );
        let table = match loaded {
            Ok(table) => Arc::new(table),
            Err(e) => {
                let problems = e.problems();
                warn!(reason = %msg.reason, problems = problems.len(), "route reload rejected; the previous table keeps running");
                for p in &problems {
                    warn!(problem = %p, "route problem");
                }
                self.metrics.reload_failed();
                self.state.record(ReloadStatus {
                    at: SystemTime::now(),
                    reason: msg.reason,
                    ok: false,
                    problems: problems.clone(),
                });
                return AtomicResponse::new(Box::pin(fut::ready(Err(problems))));
            }
        };

        let mut kept = Vec::new();
        // Replaced core sources: the new task subscribes before the old one stops.
        let mut switch = Vec::new();
        // Replaced JetStream sources, and gone routes: stopped first.
        let mut stop_first = Vec::new();
        for route in table.routes() {
            match self.tasks.get(&route.name) {
                Some(task) if task.key == SourceKey::of(route) => {
                    task.update(route.clone());
                    kept.push(route.name.clone());
                }
                Some(task) if !task.key.is_jetstream() && !SourceKey::of(route).is_jetstream() => {
                    switch.push(route.name.clone())
                }
                Some(_) => stop_first.push((
                    route.name.clone(),
                    SourceKey::of(route).stream().map(String::from),
                )),
                None => {}
            }
        }
        let names: Vec<&str> = table.routes().iter().map(|r| r.name.as_str()).collect();
        let gone: Vec<String> = self
            .tasks
            .keys()
            .filter(|name| !names.contains(&name.as_str()))
            .cloned()
            .collect();
        let mut stopping = Vec::new();
        for name in &gone {
            if let Some(task) = self.tasks.remove(name) {
                stopping.push((name.clone(), None, task));
            }
        }
        for (name, stream) in stop_first {
            if let Some(task) = self.tasks.remove(&name) {
                // Its position is handed over only within the same stream.
                let same_stream = stream.is_some() && stream.as_deref() == task.key.stream();
                stopping.push((name, same_stream.then_some(()), task));
            }
        }
        let mut replaced = Vec::new();
        for name in &switch {
            if let Some(task) = self.tasks.remove(name) {
                replaced.push((name.clone(), task));
            }
        }
        let version = self.state.install(table.clone());
        self.metrics.retain_routes(names.iter().copied());
        self.metrics.reload_succeeded(version, table.routes().len());
        self.state.record(ReloadStatus {
            at: SystemTime::now(),
            reason: msg.reason.clone(),
            ok: true,
            problems: Vec::new(),
        });
        let routes = table.routes().len();
        let state = self.state.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let mut resume = HashMap::new();
                for (name, hand_over, task) in stopping {
                    let at = task.stop().await;
                    if let (Some(()), Some(at)) = (hand_over, at) {
                        resume.insert(name, at);
                    }
                }
                resume
            }
            .into_actor(self)
            .map(|resume, act, _ctx| {
                let started = act.start_missing(resume);
                let ids: Vec<(String, u64)> = replaced
                    .iter()
                    .filter_map(|(name, _)| act.tasks.get(name).map(|t| (name.clone(), t.id)))
                    .collect();
                (started, ids, replaced)
            })
            .then(move |(started, ids, replaced), act, _ctx| {
                async move {
                    // Make before break: the old subscription stays until the new one is live.
                    let deadline = tokio::time::Instant::now() + SWITCH_DEADLINE;
                    while ids.iter().any(|(name, id)| !state.is_live_task(name, *id))
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    for (name, task) in replaced {
                        let new_id = ids.iter().find(|(n, _)| *n == name).map(|(_, id)| *id);
                        if !new_id.is_some_and(|id| state.is_live_task(&name, id)) {
                            warn!(route = %name, "replacement task not live in time; stopping the old one anyway");
                        }
                        task.retire();
                        task.stop().await;
                    }
                    started
                }
                .into_actor(act)
            })
            .map(move |started, _act, _ctx| {
                info!(reason = %msg.reason, version, routes, kept = kept.len(), started = started.len(),
                    stopped = gone.len(), "routes reloaded");
                Ok(ReloadReport {
                    version,
                    routes,
                    kept,
                    started,
                    stopped: gone,
                })
            }),
        ))
    }
}

/// Stops every route task (shutdown), letting in-flight publishes finish.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopRoutes;

impl Handler<StopRoutes> for RouterActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: StopRoutes, _ctx: &mut Context<Self>) -> Self::Result {
        let tasks: Vec<RouteTask> = self.tasks.drain().map(|(_, t)| t).collect();
        let client = self.client.as_ref().map(|(c, _)| c.clone());
        Box::pin(
            async move {
                for task in tasks {
                    task.stop().await;
                }
                if let Some(client) = client {
                    let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
                }
            }
            .into_actor(self),
        )
    }
}
