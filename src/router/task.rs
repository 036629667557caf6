//! One task per route: it consumes the route's source ([`super::core`] or
//! [`super::jetstream`]), runs every message through the compiled route and publishes the
//! outputs ([`super::process`]), with no actor mailbox on the way.
//!
//! The task is supervised: if it ends unexpectedly (a panic in a dependency, a bug), it is
//! restarted after a short pause and counted (`prism_route_task_restarts_total`), and the
//! route reports itself not live meanwhile; one route's failure never stops another.
//!
//! A reload that keeps a route's source swaps the compiled route in place (the task reads
//! it through a watch channel) and keeps the subscription or consumer. One that changes it
//! starts a new task: for a core source the new task subscribes before the old one stops
//! (make before break), for a JetStream source the old one stops first and hands where it
//! stood in the stream to the new one, so nothing stored is skipped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::process::Processor;
pub use super::process::TaskDeps;
use super::{core, jetstream};
use crate::rules::{CompiledRoute, RouteSource};

/// Pause before a route task that ended unexpectedly is started again.
const RESTART_PAUSE: Duration = Duration::from_millis(500);

/// Ids of route tasks, growing, so an older task of a route never overrides a newer one.
static TASK_IDS: AtomicU64 = AtomicU64::new(1);

/// What identifies a route's subscription or consumer: while it stays the same across a
/// reload, the task (and so the subscription or consumer) is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceKey {
    filter: String,
    source: RouteSource,
    partitioned: bool,
}

impl SourceKey {
    pub fn of(route: &CompiledRoute) -> SourceKey {
        SourceKey {
            filter: route.subscription().to_string(),
            source: route.source.clone(),
            partitioned: route.partition_by.is_some(),
        }
    }

    /// True for a JetStream source (replaced stop-first, handing over its position).
    pub fn is_jetstream(&self) -> bool {
        matches!(self.source, RouteSource::JetStream { .. })
    }

    /// The input stream of a JetStream source.
    pub fn stream(&self) -> Option<&str> {
        match &self.source {
            RouteSource::JetStream { stream, .. } => Some(stream),
            RouteSource::Core { .. } => None,
        }
    }
}

/// Where a JetStream route stood in its input stream: the stream's creation time (a stream
/// created anew restarts its sequences) and the first sequence not known to be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub stream_created: time::OffsetDateTime,
    pub next: u64,
}

/// A route task's identity and controls, shared by its supervisor and its source loop.
#[derive(Clone)]
pub struct TaskControl {
    pub id: u64,
    pub stop: watch::Receiver<bool>,
    /// Set by the actor when the task's successor is live (a reload replaced its source):
    /// what it still handles may be handled twice.
    pub retiring: watch::Receiver<bool>,
}

/// A running route task.
pub struct RouteTask {
    pub key: SourceKey,
    pub id: u64,
    route: watch::Sender<Arc<CompiledRoute>>,
    stop: watch::Sender<bool>,
    retiring: watch::Sender<bool>,
    handle: JoinHandle<Option<Resume>>,
}

impl RouteTask {
    /// Starts the task on `runtime` (the router's own runtime, where its connection lives).
    /// `resume` is where a replaced JetStream task of the route stood.
    pub fn start(
        route: Arc<CompiledRoute>,
        deps: TaskDeps,
        runtime: &tokio::runtime::Handle,
        resume: Option<Resume>,
    ) -> RouteTask {
        let key = SourceKey::of(&route);
        let id = TASK_IDS.fetch_add(1, Ordering::Relaxed);
        let (route_tx, route_rx) = watch::channel(route.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (retiring_tx, retiring_rx) = watch::channel(false);
        let processor = Processor::new(route, route_rx, deps);
        let control = TaskControl {
            id,
            stop: stop_rx,
            retiring: retiring_rx,
        };
        let handle = runtime.spawn(supervise(processor, control, resume));
        RouteTask {
            key,
            id,
            route: route_tx,
            stop: stop_tx,
            retiring: retiring_tx,
            handle,
        }
    }

    /// Swaps in a new version of the route; the subscription or consumer stays.
    pub fn update(&self, route: Arc<CompiledRoute>) {
        let _ = self.route.send(route);
    }

    /// Its successor is live: from now on what it handles may be a duplicate.
    pub fn retire(&self) {
        let _ = self.retiring.send(true);
    }

    /// Stops reading, lets in-flight publishes finish (JetStream messages still held are
    /// nak'ed), and waits (bounded) for the end. Returns where a JetStream task stood.
    pub async fn stop(self) -> Option<Resume> {
        let _ = self.stop.send(true);
        let mut handle = self.handle;
        match tokio::time::timeout(Duration::from_secs(10), &mut handle).await {
            Ok(Ok(resume)) => resume,
            Ok(Err(_)) => None,
            Err(_) => {
                warn!("route task did not stop in time; aborting it");
                handle.abort();
                None
            }
        }
    }
}

/// Runs the route's source loop in a task of its own and starts it again if it ends for
/// any reason other than a stop (a panic included).
async fn supervise(
    processor: Processor,
    control: TaskControl,
    mut resume: Option<Resume>,
) -> Option<Resume> {
    let name = processor.route.name.clone();
    let state = processor.deps.state.clone();
    let mut stop = control.stop.clone();
    loop {
        let run = tokio::spawn(source_loop(processor.clone(), control.clone(), resume));
        let ended = run.await;
        state.set_not_live(&name, control.id);
        match ended {
            Ok(end) if *stop.borrow() => return end,
            Ok(end) => {
                error!(route = %name, "route task ended by itself; starting it again");
                resume = end;
            }
            Err(e) => {
                let what = if e.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                error!(route = %name, error = %e, "route task {what}; starting it again");
            }
        }
        processor.deps.metrics.task_restarted();
        tokio::select! {
            _ = stop.changed() => return resume,
            _ = tokio::time::sleep(RESTART_PAUSE) => {}
        }
    }
}

async fn source_loop(
    processor: Processor,
    control: TaskControl,
    resume: Option<Resume>,
) -> Option<Resume> {
    let name = processor.route.name.clone();
    let end = match processor.route.source.clone() {
        RouteSource::Core { queue_group } => {
            core::run(processor, control, queue_group).await;
            None
        }
        RouteSource::JetStream {
            stream,
            durable,
            ack_wait,
            max_ack_pending,
            max_deliver,
        } => {
            let spec = jetstream::ConsumerSpec {
                stream,
                durable,
                ack_wait,
                max_ack_pending,
                max_deliver,
            };
            jetstream::run(processor, control, spec, resume).await
        }
    };
    info!(route = %name, "route task stopped");
    end
}

/// The queue a route subscribes in: the configured group plus the route name, so that
/// brokers share each route's traffic while every route still sees every message (two
/// routes on one subject in one plain group would split the messages between them).
pub fn queue_name(group: &str, route: &str) -> String {
    format!("{group}.{route}")
}
