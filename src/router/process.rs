//! What a route task does with one message, whatever its source: evaluate it through the
//! compiled route, send what that produced, confirm the JetStream acks, and when an output
//! fails: send it again while the failure is transient (no responders, no ack in time, no
//! connection, no room), or dead-letter the original when it can never succeed. Dead letters
//! are confirmed like any output (the `DEAD_LETTERS` stream stores them), so a message is let
//! go of only once it is published or its dead letter is stored.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;
use tracing::{debug, error, warn};

use super::output::{self, OutputFailure, Sent};
use super::state::RouterState;
use super::tap::RouteTap;
use crate::rules::{
    CompiledRoute, FailureAction, Headers, OutputMessage, RouteError, RouteOutcome, RouteState,
};
use crate::stats::metrics::RouteMetrics;
use crate::streams::state::Refusal;
use crate::streams::StreamsState;

/// First pause before a failed output is sent again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What a route task needs besides its route.
#[derive(Clone)]
pub struct TaskDeps {
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub metrics: RouteMetrics,
    /// Workers of a route with `partition_by`; with 1 the task handles every message in
    /// arrival order itself.
    pub partitions: usize,
    /// Where the task says whether it is subscribed / consuming.
    pub state: Arc<RouterState>,
    /// Streams refusing writes are marked (and unmarked) from the router's outputs too.
    pub streams: Arc<StreamsState>,
    /// How long a core-sourced message's transient output failures are retried before it
    /// is dead-lettered (a core message cannot be redelivered; a JetStream one is retried
    /// until it succeeds).
    pub core_retry_for: Duration,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Which counter a confirmed send moves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Count {
    Published,
    DeadLettered,
    PassedThrough,
}

/// One output on its way.
struct Sending {
    out: OutputMessage,
    count: Count,
    state: SendState,
}

enum SendState {
    Acking(Sent),
    Failed(OutputFailure),
    Done,
}

/// One message after its sends: the outputs still to confirm and what a dead letter needs.
pub struct Pending {
    route: Arc<CompiledRoute>,
    subject: String,
    headers: Headers,
    payload: Bytes,
    sends: Vec<Sending>,
}

impl Pending {
    /// True when nothing is left to confirm (no output, or only core ones that went out).
    pub fn settled(&self) -> bool {
        self.sends
            .iter()
            .all(|s| matches!(s.state, SendState::Done))
    }
}

/// How a message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Every output (or its dead letter) is published.
    Done,
    /// Stopped while an output was still failing transiently: the message is not done.
    Interrupted,
    /// Neither the outputs nor the dead letter could be published.
    Lost(String),
}

/// Runs messages through the route of its task; the send phase runs in arrival order.
/// The state of the route's stateful steps is the processor's own: a clone (a partition
/// worker, a task started again) starts with empty state, and a new version of the route
/// keeps the state of every stateful step whose config it left alone.
pub struct Processor {
    pub route: Arc<CompiledRoute>,
    pub updates: watch::Receiver<Arc<CompiledRoute>>,
    pub deps: TaskDeps,
    state: RouteState,
    /// Checked once per message: events are built only while someone taps the route.
    tap: Arc<RouteTap>,
    /// Bumped whenever state was dropped (a reload changed a stateful step, a reset):
    /// inputs parked for what it held must be delivered again.
    generation: u64,
}

impl Clone for Processor {
    fn clone(&self) -> Processor {
        Processor {
            route: self.route.clone(),
            updates: self.updates.clone(),
            deps: self.deps.clone(),
            state: self.route.new_state(),
            tap: self.tap.clone(),
            generation: 0,
        }
    }
}

impl Processor {
    pub fn new(
        route: Arc<CompiledRoute>,
        updates: watch::Receiver<Arc<CompiledRoute>>,
        deps: TaskDeps,
    ) -> Processor {
        let state = route.new_state();
        let tap = deps.state.taps.route(&route.name);
        Processor {
            route,
            updates,
            deps,
            state,
            tap,
            generation: 0,
        }
    }

    /// The route, switched to its newest version between two messages.
    pub fn current(&mut self) -> &Arc<CompiledRoute> {
        if self.updates.has_changed().unwrap_or(false) {
            self.route = self.updates.borrow_and_update().clone();
            let state = std::mem::take(&mut self.state);
            let (state, all) = state.carry_over_all(&self.route);
            self.state = state;
            if !all {
                self.generation += 1;
            }
        }
        &self.route
    }

    /// When the route's stateful steps next have something to emit (epoch ms).
    pub fn next_due(&self) -> Option<i64> {
        self.route.next_due(&self.state)
    }

    /// The number of the earliest input whose effect the route's state still holds.
    pub fn holding_since(&self) -> Option<u64> {
        self.route.holding_since(&self.state)
    }

    /// Drops the route's state (its JetStream inputs are about to be delivered again).
    pub fn reset_state(&mut self) {
        self.state = self.route.new_state();
        self.generation += 1;
    }

    /// Changes whenever state was dropped.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The number of the last input [`Processor::run`] ran through the route's state.
    pub fn last_input(&self) -> u64 {
        self.state.last_input()
    }

    /// Moves what the stateful steps did into the route's metrics.
    fn note_state(&mut self, route: &CompiledRoute) {
        let events = self.state.take_events();
        let m = &self.deps.metrics.state;
        m.deduplicated.inc_by(events.deduplicated);
        m.conflated.inc_by(events.conflated);
        m.late.inc_by(events.late);
        m.gaps.inc_by(events.gaps);
        m.evictions.inc_by(events.evictions);
        m.keys
            .set(i64::try_from(route.state_keys(&self.state)).unwrap_or(i64::MAX));
    }

    /// Sends what the stateful steps let go of now (a conflated message at the end of its
    /// interval, a closed window): one [`Pending`] per message let go of, settled like any.
    pub async fn tick(&mut self) -> Vec<Pending> {
        let started = Instant::now();
        let now = now_ms();
        let route = self.current().clone();
        let outcomes = route.tick(now, &mut self.state);
        self.note_state(&route);
        let mut pending = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            self.tap.note_outcome(&outcome, true, now);
            // what a dead letter of it carries: the first message it made
            let (subject, payload) = match &outcome {
                RouteOutcome::Outputs { messages, .. } => messages
                    .first()
                    .map(|m| (m.subject.clone(), m.payload.clone()))
                    .unwrap_or_default(),
                _ => Default::default(),
            };
            let p = self
                .dispatch(
                    &route,
                    outcome,
                    &subject,
                    Headers::new(),
                    payload,
                    now,
                    started,
                )
                .await;
            pending.push(p);
        }
        pending
    }

    /// Evaluates the message and sends what it produced. The acks of JetStream sends are
    /// left in the returned [`Pending`] for [`settle`].
    pub async fn run(&mut self, subject: &str, headers: Headers, payload: Bytes) -> Pending {
        #[cfg(debug_assertions)]
        fault::panic_on(subject);
        let started = Instant::now();
        let now = now_ms();
        let route = self.current().clone();
        let outcome = if route.is_stateful() {
            let outcome = route.process_with(subject, &headers, &payload, now, &mut self.state);
            self.note_state(&route);
            outcome
        } else {
            route.process(subject, &headers, &payload, now)
        };
        if self.tap.is_on() && !matches!(outcome, RouteOutcome::NoMatch) {
            self.tap.note_received(subject, &payload, now);
            self.tap.note_outcome(&outcome, false, now);
        }
        self.dispatch(&route, outcome, subject, headers, payload, now, started)
            .await
    }

    /// Counts an outcome and sends its messages.
    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &self,
        route: &Arc<CompiledRoute>,
        outcome: RouteOutcome,
        subject: &str,
        headers: Headers,
        payload: Bytes,
        now: i64,
        started: Instant,
    ) -> Pending {
        let metrics = &self.deps.metrics;
        // The subject is copied only if the message turns out to need it later.
        let mut pending = Pending {
            route: route.clone(),
            subject: String::new(),
            headers,
            payload,
            sends: Vec::new(),
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
        for out in messages {
            let state = match output::send(&self.deps.client, &self.deps.js, &out).await {
                Ok(Sent::Core) => {
                    bump(metrics, count);
                    SendState::Done
                }
                Ok(sent) => SendState::Acking(sent),
                Err(failure) => SendState::Failed(failure),
            };
            pending.sends.push(Sending { out, count, state });
        }
        metrics.observe_processing(started.elapsed());
        if !pending.settled() {
            pending.subject = subject.to_string();
        }
        pending
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

/// Keeps the stream of a JetStream output marked as refusing writes while it has no room,
/// and unmarks it once an output went through.
fn note_room(streams: &StreamsState, out: &OutputMessage, result: &Result<(), OutputFailure>) {
    if !out.jetstream {
        return;
    }
    match result {
        Ok(()) => {
            if let Some(stream) = streams.stream_for(&out.subject) {
                streams.clear_refusing(&stream);
            }
        }
        Err(failure) if failure.no_room => {
            if let Some(stream) = streams.stream_for(&out.subject) {
                if streams.refusal(&stream).is_none() {
                    streams.mark_refusing(
                        &stream,
                        Refusal {
                            reason: format!("refuses writes: {}", failure.error),
                        },
                    );
                }
            }
        }
        Err(_) => {}
    }
}

/// Awaits every ack; the outputs that failed stay `Failed`.
async fn confirm_all(deps: &TaskDeps, pending: &mut Pending) {
    for sending in &mut pending.sends {
        if let SendState::Acking(_) = sending.state {
            let SendState::Acking(sent) = std::mem::replace(&mut sending.state, SendState::Done)
            else {
                continue;
            };
            let result = output::confirm(&sending.out.subject, sent).await;
            note_room(&deps.streams, &sending.out, &result);
            sending.state = match result {
                Ok(()) => {
                    bump(&deps.metrics, sending.count);
                    SendState::Done
                }
                Err(failure) => SendState::Failed(failure),
            };
        }
    }
}

/// The first failure left, and whether every failure left is transient.
fn failures(pending: &Pending) -> Option<(String, bool)> {
    let mut first = None;
    let mut all_transient = true;
    for sending in &pending.sends {
        if let SendState::Failed(f) = &sending.state {
            first.get_or_insert_with(|| f.error.clone());
            all_transient &= f.transient;
        }
    }
    first.map(|e| (e, all_transient))
}

/// Replaces the outputs that can never be published by the original's dead letter.
fn dead_letter_permanent(pending: &mut Pending) {
    let permanent = pending.sends.iter().find_map(|s| match &s.state {
        SendState::Failed(f) if !f.transient => Some((f.error.clone(), s.count)),
        _ => None,
    });
    let Some((error, count)) = permanent else {
        return;
    };
    if count == Count::DeadLettered {
        // The dead letter itself can never be published: nothing else to try.
        return;
    }
    pending
        .sends
        .retain(|s| !matches!(&s.state, SendState::Failed(f) if !f.transient));
    let letter = pending.route.dead_letter(
        &pending.subject,
        &pending.headers,
        &pending.payload,
        &RouteError::Publish(error.clone()),
    );
    warn!(route = %pending.route.name, subject = %pending.subject, %error,
        "an output can never be published; dead-lettering the message");
    pending.sends.push(Sending {
        out: letter,
        count: Count::DeadLettered,
        state: SendState::Failed(OutputFailure {
            error,
            transient: true,
            no_room: false,
        }),
    });
}

/// Sends every failed output again.
async fn resend(deps: &TaskDeps, pending: &mut Pending) {
    for sending in &mut pending.sends {
        if let SendState::Failed(_) = sending.state {
            deps.metrics.retried();
            sending.state = match output::send(&deps.client, &deps.js, &sending.out).await {
                Ok(Sent::Core) => {
                    bump(&deps.metrics, sending.count);
                    SendState::Done
                }
                Ok(sent) => SendState::Acking(sent),
                Err(failure) => SendState::Failed(failure),
            };
        }
    }
}

/// Confirms a message's outputs, sending failed ones again with a growing pause while the
/// failure is transient, and its dead letter instead of an output that can never succeed.
/// Ends when everything is published, when `give_up` (if any) passes while outputs still
/// fail transiently (then they are dead-lettered, once more retried), or when `stop` flips.
/// `keep_alive` runs during each pause (a JetStream message extends its ack deadline).
pub async fn settle<F, Fut>(
    deps: &TaskDeps,
    pending: &mut Pending,
    mut give_up: Option<Instant>,
    stop: &mut watch::Receiver<bool>,
    mut keep_alive: F,
) -> Settled
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut pause = RETRY_FIRST;
    loop {
        confirm_all(deps, pending).await;
        dead_letter_permanent(pending);
        let Some((error, all_transient)) = failures(pending) else {
            return Settled::Done;
        };
        if !all_transient {
            deps.metrics.errored();
            error!(route = %pending.route.name, subject = %pending.subject, %error,
                "the dead letter cannot be published either");
            return Settled::Lost(error);
        }
        if give_up.is_some_and(|at| Instant::now() >= at) {
            // A core message whose outputs kept failing: dead-letter it (stored), once.
            give_up = None;
            for sending in &mut pending.sends {
                if let SendState::Failed(f) = &mut sending.state {
                    if sending.count != Count::DeadLettered {
                        f.transient = false;
                    }
                }
            }
            continue;
        }
        if *stop.borrow() {
            return Settled::Interrupted;
        }
        debug!(route = %pending.route.name, %error, pause_ms = pause.as_millis() as u64,
            "output failed; sending it again");
        keep_alive().await;
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
        pause = (pause * 2).min(RETRY_MAX);
        resend(deps, pending).await;
    }
}

/// Dead-letters a message that could not be finished (its route stopped while outputs
/// kept failing on its last allowed delivery), so it is not left undeliverable.
pub async fn dead_letter_interrupted(deps: &TaskDeps, pending: &mut Pending, why: &str) -> bool {
    let letter = pending.route.dead_letter(
        &pending.subject,
        &pending.headers,
        &pending.payload,
        &RouteError::Publish(why.to_string()),
    );
    pending.sends = vec![Sending {
        out: letter,
        count: Count::DeadLettered,
        state: SendState::Failed(OutputFailure {
            error: why.to_string(),
            transient: true,
            no_room: false,
        }),
    }];
    resend(deps, pending).await;
    confirm_all(deps, pending).await;
    failures(pending).is_none()
}

/// Fault injection for the fault tests, in debug builds only: a message on the subject named
/// by `PRISM_FAULT_PANIC_SUBJECT` makes its route task panic, as a bug in a dependency would.
#[cfg(debug_assertions)]
mod fault {
    use std::sync::OnceLock;

    static SUBJECT: OnceLock<Option<String>> = OnceLock::new();

    #[allow(clippy::panic)]
    pub fn panic_on(subject: &str) {
        let wanted = SUBJECT.get_or_init(|| std::env::var("PRISM_FAULT_PANIC_SUBJECT").ok());
        if wanted.as_deref() == Some(subject) {
            panic!("fault injection: a route task panics on {subject}");
        }
    }
}

/// A route's source name for logs.
pub fn route_name(pending: &Pending) -> &str {
    &pending.route.name
}
