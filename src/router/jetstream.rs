//! JetStream sources: a durable pull consumer. A message is acknowledged only after every
//! output was published and, for JetStream outputs, acked by its stream (or its dead letter
//! was stored). An output that fails transiently is sent again in place, with a growing
//! pause and `+WPI` progress acks, so the attempt never spends the route's `max_deliver`;
//! only messages that can never succeed are dead-lettered, and terminated once their dead
//! letter is acked.
//!
//! The task remembers where it stands in the input stream ([`Resume`]: the first sequence
//! not known to be handled, and the stream's creation time). A consumer that disappears (a
//! nats-server restart with a memory stream, someone deleting it) is re-created from there,
//! or from the stream's first message if the stream itself was created anew, so nothing the
//! stream holds is skipped; duplicates are possible (at-least-once). After every
//! reconnection the consumer is checked before the route counts as live again.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::context::Context as JetStream;
use async_nats::jetstream::AckKind;
use futures::future::Either;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::held::{self, Finished, Held};
use super::output;
use super::process::{self, Pending, Processor, Settled, TaskDeps};
use super::task::{Resume, TaskControl};
use super::timers;

/// Longest wait between attempts to (re)create a consumer.
const MAX_RETRY: Duration = Duration::from_secs(5);
/// Messages held at most per task (also bounded by the consumer's `max_ack_pending`).
const WINDOW: usize = 4096;
/// Idle heartbeat of the pull requests: two missed ones mean the consumer is gone.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// The durable consumer of a JetStream-sourced route.
pub struct ConsumerSpec {
    pub stream: String,
    pub durable: String,
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
    pub max_deliver: i64,
}

/// Where the task stands in its input stream.
#[derive(Debug, Default)]
struct Position {
    resume: Option<Resume>,
    /// Stream sequences received and not yet acknowledged or terminated.
    outstanding: BTreeSet<u64>,
    /// The highest stream sequence handled.
    handled_max: u64,
    /// The state that held inputs was dropped: the consumer is re-created from the first
    /// message not handled, so they come back in stream order. Naked, they would be
    /// redelivered in the order of the naks, and the first of them into the pull request
    /// the old loop left open, reaching the new one only after `ack_wait`, behind newer
    /// messages (late for a window).
    recreate: bool,
}

impl Position {
    /// Bound to the consumer of the stream created at `created`; `next` is where that
    /// consumer stands when nothing better is known.
    fn bind(&mut self, created: time::OffsetDateTime, next: u64) {
        match self.resume {
            Some(r) if r.stream_created == created => {}
            _ => {
                self.outstanding.clear();
                self.handled_max = 0;
                self.resume = Some(Resume {
                    stream_created: created,
                    next,
                });
            }
        }
    }

    fn received(&mut self, seq: u64) {
        self.outstanding.insert(seq);
    }

    fn handled(&mut self, seq: u64) {
        self.outstanding.remove(&seq);
        self.handled_max = self.handled_max.max(seq);
        if let Some(resume) = &mut self.resume {
            resume.next = match self.outstanding.first() {
                Some(first) => *first,
                None => resume.next.max(self.handled_max + 1),
            };
        }
    }
}

pub async fn run(
    mut processor: Processor,
    control: TaskControl,
    spec: ConsumerSpec,
    resume: Option<Resume>,
) -> Option<Resume> {
    let name = processor.route.name.clone();
    let mut stop = control.stop.clone();
    let mut position = Position {
        resume,
        ..Default::default()
    };
    let mut retry = Duration::from_millis(250);
    loop {
        let result = consume(&mut processor, &control, &spec, &mut position).await;
        processor.deps.state.set_not_live(&name, control.id);
        match result {
            Ok(()) => break,
            Err(e) => {
                // the held inputs were offered again and will be delivered again: the state
                // is rebuilt from them, not counted twice (held.rs)
                if processor.route.holds_inputs() {
                    processor.reset_state();
                    position.recreate = true;
                }
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
    position.resume
}

/// Gets or creates the durable consumer (following its stream's replicas), re-creating it
/// from where the route stood when its settings changed or it is gone.
async fn ensure_consumer(
    js: &JetStream,
    filter: &str,
    spec: &ConsumerSpec,
    position: &mut Position,
) -> Result<Consumer<pull::Config>, String> {
    let stream = js
        .get_stream(&spec.stream)
        .await
        .map_err(|e| e.to_string())?;
    let info = stream.cached_info();
    let (created, replicas, last) = (
        info.created,
        info.config.num_replicas,
        info.state.last_sequence,
    );
    let mut config = pull::Config {
        durable_name: Some(spec.durable.clone()),
        filter_subject: filter.to_string(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_ack_pending: spec.max_ack_pending,
        max_deliver: spec.max_deliver,
        num_replicas: replicas,
        deliver_policy: DeliverPolicy::New,
        ..Default::default()
    };
    if let Ok(existing) = stream.get_consumer::<pull::Config>(&spec.durable).await {
        let have = &existing.cached_info().config;
        let same = have.filter_subject == config.filter_subject
            && have.ack_wait == config.ack_wait
            && have.max_ack_pending == config.max_ack_pending
            && have.max_deliver == config.max_deliver
            && (have.num_replicas == replicas || have.num_replicas == 0);
        position.bind(
            created,
            existing.cached_info().ack_floor.stream_sequence + 1,
        );
        if same && !position.recreate {
            return Ok(existing);
        }
        if same {
            info!(durable = %spec.durable, "state dropped; re-creating the consumer where the route stood");
        } else {
            info!(durable = %spec.durable, "consumer settings changed; re-creating it where it stood");
        }
        stream
            .delete_consumer(&spec.durable)
            .await
            .map_err(|e| e.to_string())?;
    }
    let (policy, next) = match position.resume {
        // Same stream: from the first message not known to be handled.
        Some(r) if r.stream_created == created => {
            let start = r.next.max(1);
            (
                DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                start,
            )
        }
        // The stream was created anew (its sequences restarted): all it holds is new.
        Some(_) => (DeliverPolicy::All, 1),
        // A route's first consumer starts with what arrives from now on.
        None => (DeliverPolicy::New, last + 1),
    };
    if position.resume.is_some() {
        info!(durable = %spec.durable, ?policy, "creating the route's consumer where the route stood");
    }
    position.bind(created, next);
    config.deliver_policy = policy;
    let consumer = stream
        .create_consumer(config)
        .await
        .map_err(|e| e.to_string())?;
    position.recreate = false;
    Ok(consumer)
}

/// Finishes one message: ack when done, nak (or dead-letter on its last delivery) when the
/// route stops while its outputs still fail. Returns its stream sequence, and whether its
/// outputs were all published.
pub(super) async fn finish(
    deps: TaskDeps,
    mut pending: Pending,
    msg: async_nats::jetstream::Message,
    max_deliver: i64,
    mut stop: watch::Receiver<bool>,
) -> (u64, bool) {
    let (seq, delivered) = msg
        .info()
        .map(|i| (i.stream_sequence, i.delivered))
        .unwrap_or((0, 1));
    let last_delivery = max_deliver > 0 && delivered >= max_deliver;
    let progress = || async {
        // Extends the ack deadline while the outputs are retried.
        let _ = msg.ack_with(AckKind::Progress).await;
    };
    let settled = process::settle(&deps, &mut pending, None, &mut stop, progress).await;
    let route = process::route_name(&pending).to_string();
    let done = settled == Settled::Done;
    let acked = match settled {
        Settled::Done => msg.ack().await,
        Settled::Interrupted if last_delivery => {
            if process::dead_letter_interrupted(
                &deps,
                &mut pending,
                "route stopped while its outputs were failing on the last allowed delivery",
            )
            .await
            {
                msg.ack_with(AckKind::Term).await
            } else {
                msg.ack_with(AckKind::Nak(None)).await
            }
        }
        // Offered again at once, to this or another broker.
        Settled::Interrupted => msg.ack_with(AckKind::Nak(None)).await,
        Settled::Lost(error) => {
            warn!(route = %route, delivered, %error, "message left in its stream: neither its outputs nor its dead letter could be published");
            msg.ack_with(AckKind::Nak(Some(Duration::from_secs(10))))
                .await
        }
    };
    if let Err(e) = acked {
        warn!(route = %route, error = %e, "cannot acknowledge; the message will be redelivered");
    }
    (seq, done)
}

/// Takes in one finished message of the window: what it handled, the held inputs it let
/// go of (acked, or naked when its outputs did not go out), and the input it parked.
async fn settle(done: Finished, position: &mut Position, held: &mut Held, route: &str) {
    for seq in done.handled {
        position.handled(seq);
    }
    for seq in held::let_go(done.release, done.published, route).await {
        position.handled(seq);
    }
    if let Some(parked) = done.park {
        held.park(parked);
    }
}

/// Consumes until `stop` flips (Ok) or the consumer fails (Err, retried by the caller).
async fn consume(
    processor: &mut Processor,
    control: &TaskControl,
    spec: &ConsumerSpec,
    position: &mut Position,
) -> Result<(), String> {
    let filter = processor.route.subscription().to_string();
    let state = processor.deps.state.clone();
    let mut epochs = state.watch_epoch();
    let epoch = *epochs.borrow_and_update();
    let mut consumer = ensure_consumer(&processor.deps.js, &filter, spec, position).await?;
    let batch = usize::try_from(spec.max_ack_pending)
        .unwrap_or(WINDOW)
        .clamp(1, 512);
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batch)
        .heartbeat(HEARTBEAT)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    info!(route = %processor.route.name, stream = %spec.stream, durable = %spec.durable, "route consuming");
    state.set_live(&processor.route.name, control.id, epoch);
    let window_cap = usize::try_from(spec.max_ack_pending)
        .unwrap_or(WINDOW)
        .clamp(1, WINDOW);
    let mut stop = control.stop.clone();
    let retiring = control.retiring.clone();
    let mut window = FuturesOrdered::new();
    // inputs whose effect the route's state holds, and the state's clock (held.rs)
    let mut held = Held::new(spec.ack_wait);
    let mut generation = processor.generation();
    let mut timer = timers::Timer::new();
    let result = loop {
        timer.arm(processor.next_due());
        tokio::select! {
            biased;
            _ = stop.changed() => break Ok(()),
            Some(done) = window.next(), if !window.is_empty() => {
                // every earlier future is done too (the window yields in order): what this
                // one released is reflected in confirmed outputs
                let name = processor.route.name.clone();
                settle(done, position, &mut held, &name).await;
                if window.is_empty() {
                    // nothing in flight: every output so far is confirmed
                    let free = held.releasable(processor.holding_since());
                    for seq in held::let_go(free, true, &name).await {
                        position.handled(seq);
                    }
                }
            }
            () = timer.fired(), if timer.is_armed() && window.len() < window_cap => {
                let pendings = processor.tick().await;
                let released = held.releasable(processor.holding_since());
                if !pendings.is_empty() || !released.is_empty() {
                    window.push_back(Either::Right(Either::Right(held::finish_tick(
                        processor.deps.clone(),
                        pendings,
                        released,
                        control.stop.clone(),
                    ))));
                }
            }
            _ = tokio::time::sleep_until(held.progress_due()), if !held.is_empty() => {
                held.progress().await;
                if window.is_empty() {
                    let free = held.releasable(processor.holding_since());
                    for seq in held::let_go(free, true, &processor.route.name.clone()).await {
                        position.handled(seq);
                    }
                }
            }
            changed = epochs.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                // Reconnected: the consumer may be gone with a restarted server.
                let epoch = *epochs.borrow_and_update();
                match consumer.info().await {
                    Ok(_) => state.set_live(&processor.route.name, control.id, epoch),
                    Err(e) => break Err(format!("consumer not found after a reconnection: {e}")),
                }
            }
            next = messages.next(), if window.len() < window_cap => match next {
                None => break Err("consumer stream ended".to_string()),
                Some(Err(e)) => break Err(e.to_string()),
                Some(Ok(msg)) => {
                    if *retiring.borrow() {
                        processor.deps.metrics.switch_overlap();
                    }
                    if let Ok(info) = msg.info() {
                        position.received(info.stream_sequence);
                    }
                    // the route as it is now (a reload may have changed it)
                    processor.current();
                    if processor.generation() != generation {
                        generation = processor.generation();
                        if !held.is_empty() || !window.is_empty() {
                            // A reload dropped the state inputs were held for: consume again
                            // from the first of them, in stream order, into fresh state.
                            let _ = msg.ack_with(AckKind::Nak(None)).await;
                            break Err("a reload dropped the state of held inputs; consuming them again".to_string());
                        }
                    }
                    let headers = output::from_nats(msg.message.headers.as_ref());
                    let payload = msg.message.payload.clone();
                    let subject = msg.message.subject.to_string();
                    let pending = processor.run(&subject, headers, payload).await;
                    let holds = processor.route.holds_inputs() || !held.is_empty();
                    if holds {
                        let since = processor.holding_since();
                        let released = held.releasable(since);
                        window.push_back(Either::Right(Either::Left(held::finish_holding(
                            processor.deps.clone(),
                            pending,
                            msg,
                            processor.last_input(),
                            since.is_some(),
                            released,
                            spec.max_deliver,
                            control.stop.clone(),
                        ))));
                    } else {
                        window.push_back(Either::Left(
                            finish(
                                processor.deps.clone(),
                                pending,
                                msg,
                                spec.max_deliver,
                                control.stop.clone(),
                            )
                            .map(|(seq, _)| Finished::one(seq)),
                        ));
                    }
                }
            }
        }
    };
    while let Some(done) = window.next().await {
        settle(done, position, &mut held, &processor.route.name).await;
    }
    // The state goes with the task: what it held is offered again, and stays outstanding
    // in the position, so the next consumer rebuilds it.
    let parked = held.nak_all().await;
    if parked > 0 {
        debug!(route = %processor.route.name, parked, "released held inputs");
    }
    // Messages already pulled but not handled: offered again at once, not after ack_wait.
    let mut released = 0;
    while let Some(Some(Ok(msg))) = messages.next().now_or_never() {
        let _ = msg.ack_with(AckKind::Nak(None)).await;
        released += 1;
    }
    if released > 0 {
        debug!(route = %processor.route.name, released, "released pulled messages");
    }
    result
}
