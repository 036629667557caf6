//! One task per route: it consumes the route's source, runs every message through the
//! compiled route and publishes the outputs, with no actor mailbox on the way.
//!
//! - Core sources: a queue subscription (so several brokers share the traffic). Messages
//!   are handled in arrival order; JetStream outputs are sent in order and their acks
//!   awaited in a bounded window, so a slow ack does not stall the subscription. An output
//!   that cannot be published sends the original to the route's dead-letter subject.
//! - JetStream sources: a durable pull consumer. A message is acknowledged only after
//!   every output was published (and acked by its stream); otherwise it is nak'ed with a
//!   growing delay, and at its last allowed delivery dead-lettered and terminated.
//! - `partition_by`: a dispatcher hashes the key onto a fixed set of workers, each
//!   handling its messages in order, so one key keeps its order while keys run in parallel.
//!   With one worker (the router on one thread) the task handles every message in order
//!   itself: total order keeps each key's order, and no hand-off is paid.
//!
//! A reload that keeps a route's source swaps the compiled route in place (the task reads
//! it through a watch channel) and keeps the subscription or consumer.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::Context as JetStream;
use async_nats::jetstream::AckKind;
use bytes::Bytes;
use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::output::{self, Sent};
use super::state::RouterState;
use crate::rules::{CompiledRoute, FailureAction, Headers, RouteError, RouteOutcome, RouteSource};
use crate::stats::metrics::RouteMetrics;

/// Sends awaiting their acks per task before the task stops reading new messages.
const ACK_WINDOW: usize = 4096;
/// Capacity of each partition worker's queue.
const PARTITION_QUEUE: usize = 1024;
/// Longest wait between attempts to (re)create a subscription or consumer.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// What a route task needs besides its route.
#[derive(Clone)]
pub struct TaskDeps {
    pub client: async_nats::Client,
    pub js: JetStream,
    pub metrics: RouteMetrics,
    /// Workers of a route with `partition_by`; with 1 the task handles every message in
    /// arrival order itself.
    pub partitions: usize,
    /// Where the task says whether it is subscribed / consuming.
    pub state: Arc<RouterState>,
}

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
}

/// A running route task.
pub struct RouteTask {
    pub key: SourceKey,
    route: watch::Sender<Arc<CompiledRoute>>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl RouteTask {
    /// Starts the task on `runtime` (the router's own runtime, where its connection lives).
    pub fn start(
        route: Arc<CompiledRoute>,
        deps: TaskDeps,
        runtime: &tokio::runtime::Handle,
    ) -> RouteTask {
        let key = SourceKey::of(&route);
        let (route_tx, route_rx) = watch::channel(route.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let processor = Processor {
            route: route.clone(),
            updates: route_rx,
            deps: deps.clone(),
        };
        let handle = match route.source.clone() {
            RouteSource::Core { queue_group } => {
                runtime.spawn(core_source(processor, stop_rx, queue_group))
            }
            RouteSource::JetStream {
                stream,
                durable,
                ack_wait,
                max_ack_pending,
                max_deliver,
            } => runtime.spawn(jetstream_source(
                processor,
                stop_rx,
                ConsumerSpec {
                    stream,
                    durable,
                    ack_wait,
                    max_ack_pending,
                    max_deliver,
                },
            )),
        };
        RouteTask {
            key,
            route: route_tx,
            stop: stop_tx,
            handle,
        }
    }

    /// Swaps in a new version of the route; the subscription or consumer stays.
    pub fn update(&self, route: Arc<CompiledRoute>) {
        let _ = self.route.send(route);
    }

    /// Stops reading, lets in-flight publishes finish, and waits (bounded) for the end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut handle = self.handle;
        if tokio::time::timeout(Duration::from_secs(10), &mut handle)
            .await
            .is_err()
        {
            warn!("route task did not stop in time; aborting it");
            handle.abort();
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Which counter a confirmed send moves.
#[derive(Clone, Copy)]
enum Count {
    Published,
    DeadLettered,
    PassedThrough,
}

/// One message after its sends: the acks still to confirm and what a dead letter needs.
struct Pending {
    route: Arc<CompiledRoute>,
    subject: String,
    headers: Headers,
    payload: Bytes,
    acks: Vec<(Sent, Count)>,
    failed: Option<String>,
}

/// Runs messages through the route of its task; the send phase runs in arrival order.
struct Processor {
    route: Arc<CompiledRoute>,
    updates: watch::Receiver<Arc<CompiledRoute>>,
    deps: TaskDeps,
}

impl Clone for Processor {
    fn clone(&self) -> Self {
        Processor {
            route: self.route.clone(),
            updates: self.updates.clone(),
            deps: self.deps.clone(),
        }
    }
}

impl Processor {
    fn current(&mut self) -> &Arc<CompiledRoute> {
        if self.updates.has_changed().unwrap_or(false) {
            self.route = self.updates.borrow_and_update().clone();
        }
        &self.route
    }

    /// Evaluates the message and sends what it produced. The acks of JetStream sends are
    /// left in the returned [`Pending`] for [`Processor::settle`].
    async fn run(&mut self, subject: &str, headers: Headers, payload: Bytes) -> Pending {
        let started = Instant::now();
        let now = now_ms();
        let route = self.current().clone();
        let metrics = &self.deps.metrics;
        let outcome = route.process(subject, &headers, &payload, now);
        // The subject is copied only if the message turns out to need a dead letter later.
        let mut pending = Pending {
            route: route.clone(),
            subject: String::new(),
            headers,
            payload,
            acks: Vec::new(),
            failed: None,
        };
        let (messages, count) = match outcome {
            RouteOutcome::NoMatch => return pending,
            RouteOutcome::Filtered => {
                metrics.matched();
                metrics.filtered();
                return pending;
            }
            RouteOutcome::Outputs { messages, age_ms } => {
                metrics.matched();
                metrics.passed();
                if let Some(age) = age_ms {
                    metrics.observe_age_ms(now - age, now);
                }
                (messages, Count::Published)
            }
            RouteOutcome::Failed { error, action } => {
                metrics.matched();
                metrics.errored();
                debug!(route = %route.name, %error, "message failed in route");
                match action {
                    FailureAction::DeadLetter(letter) => (vec![letter], Count::DeadLettered),
                    FailureAction::PassThrough(messages) => (messages, Count::PassedThrough),
                    FailureAction::Drop => {
                        metrics.dropped();
                        return pending;
                    }
                }
            }
        };
        for message in messages {
            match output::send(&self.deps.client, &self.deps.js, message).await {
                Ok(Sent::Core) => bump(metrics, count),
                Ok(sent) => pending.acks.push((sent, count)),
                Err(e) => {
                    pending.failed.get_or_insert(e);
                }
            }
        }
        metrics.observe_processing(started.elapsed());
        if !pending.acks.is_empty() || pending.failed.is_some() {
            pending.subject = subject.to_string();
        }
        pending
    }

    /// Confirms the acks; the first failure, if any, is returned.
    async fn settle(metrics: &RouteMetrics, pending: &mut Pending) -> Result<(), String> {
        let mut first_error = pending.failed.take();
        for (sent, count) in pending.acks.drain(..) {
            match output::confirm(sent).await {
                Ok(()) => bump(metrics, count),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Publishes the original of a message whose outputs failed to the dead-letter
    /// subject; true when that worked.
    async fn dead_letter(deps: &TaskDeps, pending: &Pending, error: &str) -> bool {
        deps.metrics.errored();
        let letter = pending.route.dead_letter(
            &pending.subject,
            &pending.headers,
            &pending.payload,
            &RouteError::Publish(error.to_string()),
        );
        let sent = match output::send(&deps.client, &deps.js, letter).await {
            Ok(sent) => output::confirm(sent).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => {
                deps.metrics.dead_lettered();
                true
            }
            Err(e) => {
                error!(route = %pending.route.name, subject = %pending.subject, error = %e,
                    "dead letter could not be published either");
                false
            }
        }
    }
}

fn bump(metrics: &RouteMetrics, count: Count) {
    match count {
        Count::Published => metrics.published(),
        Count::DeadLettered => metrics.dead_lettered(),
        Count::PassedThrough => {
            metrics.passed_through();
            metrics.published();
        }
    }
}

/// After a core message's sends: confirm acks, dead-letter on failure.
async fn finish_core(deps: TaskDeps, mut pending: Pending) {
    if let Err(e) = Processor::settle(&deps.metrics, &mut pending).await {
        warn!(route = %pending.route.name, subject = %pending.subject, error = %e,
            "publishing outputs failed; dead-lettering the message");
        Processor::dead_letter(&deps, &pending, &e).await;
    }
}

type MessageStream = Pin<Box<dyn Stream<Item = async_nats::Message> + Send>>;

/// Handles core messages in order until the stream ends or `stop` flips.
async fn handle_core(
    mut processor: Processor,
    mut messages: MessageStream,
    mut stop: watch::Receiver<bool>,
) {
    let mut window = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(()) = window.next(), if !window.is_empty() => {}
            next = messages.next(), if window.len() < ACK_WINDOW => {
                let Some(msg) = next else { break };
                let headers = output::from_nats(msg.headers.as_ref());
                let pending = processor.run(msg.subject.as_str(), headers, msg.payload).await;
                if pending.acks.is_empty() && pending.failed.is_none() {
                    continue;
                }
                window.push(finish_core(processor.deps.clone(), pending));
            }
        }
    }
    while window.next().await.is_some() {}
}

/// The queue a route subscribes in: the configured group plus the route name, so that
/// brokers share each route's traffic while every route still sees every message (two
/// routes on one subject in one plain group would split the messages between them).
pub fn queue_name(group: &str, route: &str) -> String {
    format!("{group}.{route}")
}

async fn core_source(processor: Processor, stop: watch::Receiver<bool>, group: String) {
    let filter = processor.route.subscription().to_string();
    let name = processor.route.name.clone();
    let queue_group = queue_name(&group, &name);
    let client = processor.deps.client.clone();
    let mut retry = Duration::from_millis(100);
    let subscriber = loop {
        match client
            .queue_subscribe(filter.clone(), queue_group.clone())
            .await
        {
            Ok(subscriber) => break subscriber,
            Err(e) => {
                warn!(route = %name, error = %e, "cannot subscribe; retrying");
                let mut stop = stop.clone();
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    };
    info!(route = %name, subject = %filter, queue_group = %queue_group, "route subscribed");
    let state = processor.deps.state.clone();
    state.set_live(&name, true);
    let partitions = processor.deps.partitions.max(1);
    if processor.route.partition_by.is_none() || partitions == 1 {
        handle_core(processor, Box::pin(subscriber), stop).await;
    } else {
        partitioned(processor, subscriber, stop, partitions).await;
    }
    state.set_live(&name, false);
    info!(route = %name, "route task stopped");
}

/// Spreads messages over `n` ordered workers by the hash of the route's partition key.
async fn partitioned(
    mut processor: Processor,
    mut subscriber: async_nats::Subscriber,
    mut stop: watch::Receiver<bool>,
    n: usize,
) {
    let mut queues = Vec::with_capacity(n);
    let mut workers = Vec::with_capacity(n);
    // Workers end when their queue closes (after the dispatcher stops), never before:
    // this sender stays alive until they are joined.
    let (_workers_run, workers_stop) = watch::channel(false);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel::<async_nats::Message>(PARTITION_QUEUE);
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        workers.push(tokio::spawn(handle_core(
            processor.clone(),
            Box::pin(stream),
            workers_stop.clone(),
        )));
        queues.push(tx);
    }
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            next = subscriber.next() => {
                let Some(msg) = next else { break };
                let key = processor.current().partition_key(msg.subject.as_str()).unwrap_or_default();
                let mut hasher = DefaultHasher::new();
                key.hash(&mut hasher);
                let index = (hasher.finish() % n as u64) as usize;
                if queues[index].send(msg).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = subscriber.unsubscribe().await;
    drop(queues);
    for worker in workers {
        let _ = worker.await;
    }
}

/// The durable consumer of a JetStream-sourced route.
struct ConsumerSpec {
    stream: String,
    durable: String,
    ack_wait: Duration,
    max_ack_pending: i64,
    max_deliver: i64,
}

async fn jetstream_source(
    mut processor: Processor,
    mut stop: watch::Receiver<bool>,
    spec: ConsumerSpec,
) {
    let name = processor.route.name.clone();
    let state = processor.deps.state.clone();
    let mut retry = Duration::from_millis(250);
    loop {
        let result = consume(&mut processor, &mut stop, &spec).await;
        state.set_live(&name, false);
        match result {
            Ok(()) => break,
            Err(e) => {
                // The first attempts at start-up often race the stream actor: not a warning yet.
                if retry >= Duration::from_secs(1) {
                    warn!(route = %name, stream = %spec.stream, durable = %spec.durable, error = %e,
                        "jetstream source interrupted; retrying");
                } else {
                    info!(route = %name, stream = %spec.stream, error = %e, "jetstream source not ready; retrying");
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
    info!(route = %name, "route task stopped");
}

/// Gets or creates the durable consumer, re-creating it when its filter changed.
async fn ensure_consumer(
    js: &JetStream,
    filter: &str,
    spec: &ConsumerSpec,
) -> Result<async_nats::jetstream::consumer::Consumer<pull::Config>, String> {
    let stream = js
        .get_stream(&spec.stream)
        .await
        .map_err(|e| e.to_string())?;
    let config = pull::Config {
        durable_name: Some(spec.durable.clone()),
        filter_subject: filter.to_string(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_ack_pending: spec.max_ack_pending,
        max_deliver: spec.max_deliver,
        deliver_policy: DeliverPolicy::New,
        ..Default::default()
    };
    if let Ok(existing) = stream.get_consumer::<pull::Config>(&spec.durable).await {
        let have = &existing.cached_info().config;
        let same = have.filter_subject == config.filter_subject
            && have.ack_wait == config.ack_wait
            && have.max_ack_pending == config.max_ack_pending
            && have.max_deliver == config.max_deliver;
        if same {
            return Ok(existing);
        }
        info!(durable = %spec.durable, "consumer settings changed; re-creating it");
        stream
            .delete_consumer(&spec.durable)
            .await
            .map_err(|e| e.to_string())?;
    }
    stream
        .create_consumer(config)
        .await
        .map_err(|e| e.to_string())
}

/// Delay before a failed message is offered again: 250 ms doubling per delivery, 10 s at most.
fn redelivery_delay(delivered: i64) -> Duration {
    let exponent = u32::try_from(delivered.clamp(1, 8) - 1).unwrap_or(0);
    (Duration::from_millis(250) * 2u32.pow(exponent)).min(Duration::from_secs(10))
}

async fn finish_jetstream(
    deps: TaskDeps,
    mut pending: Pending,
    msg: async_nats::jetstream::Message,
    max_deliver: i64,
) {
    let outcome = Processor::settle(&deps.metrics, &mut pending).await;
    let ack = match outcome {
        Ok(()) => msg.ack().await,
        Err(e) => {
            let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
            if max_deliver > 0 && delivered >= max_deliver {
                warn!(route = %pending.route.name, subject = %pending.subject, delivered, error = %e,
                    "last delivery failed; dead-lettering the message");
                if Processor::dead_letter(&deps, &pending, &e).await {
                    msg.ack_with(AckKind::Term).await
                } else {
                    msg.ack_with(AckKind::Nak(Some(redelivery_delay(delivered))))
                        .await
                }
            } else {
                debug!(route = %pending.route.name, delivered, error = %e, "publishing failed; nak");
                deps.metrics.errored();
                msg.ack_with(AckKind::Nak(Some(redelivery_delay(delivered))))
                    .await
            }
        }
    };
    if let Err(e) = ack {
        warn!(route = %pending.route.name, error = %e, "cannot acknowledge; the message will be redelivered");
    }
}

/// Consumes until `stop` flips (Ok) or the consumer fails (Err, retried by the caller).
async fn consume(
    processor: &mut Processor,
    stop: &mut watch::Receiver<bool>,
    spec: &ConsumerSpec,
) -> Result<(), String> {
    let filter = processor.route.subscription().to_string();
    let consumer = ensure_consumer(&processor.deps.js, &filter, spec).await?;
    let batch = usize::try_from(spec.max_ack_pending)
        .unwrap_or(ACK_WINDOW)
        .clamp(1, 512);
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batch)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    info!(route = %processor.route.name, stream = %spec.stream, durable = %spec.durable, "route consuming");
    processor.deps.state.set_live(&processor.route.name, true);
    let window_cap = usize::try_from(spec.max_ack_pending)
        .unwrap_or(ACK_WINDOW)
        .clamp(1, ACK_WINDOW);
    let mut window = FuturesOrdered::new();
    let result = loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break Ok(()),
            Some(()) = window.next(), if !window.is_empty() => {}
            next = messages.next(), if window.len() < window_cap => match next {
                None => break Err("consumer stream ended".to_string()),
                Some(Err(e)) => break Err(e.to_string()),
                Some(Ok(msg)) => {
                    let headers = output::from_nats(msg.message.headers.as_ref());
                    let payload = msg.message.payload.clone();
                    let subject = msg.message.subject.to_string();
                    let pending = processor.run(&subject, headers, payload).await;
                    window.push_back(finish_jetstream(processor.deps.clone(), pending, msg, spec.max_deliver));
                }
            }
        }
    };
    while window.next().await.is_some() {}
    result
}
