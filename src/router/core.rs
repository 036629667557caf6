//! Core NATS sources: a queue subscription (so several brokers share the traffic). Messages
//! are handled in arrival order; JetStream outputs are sent in order and their acks awaited
//! in a bounded window, so a slow ack does not stall the subscription. An output that fails
//! transiently is sent again for up to `core_retry_for`, then the original is dead-lettered
//! (a core message cannot be redelivered).
//!
//! `partition_by` on several router threads: a dispatcher hashes the key onto a fixed set of
//! workers, each handling its messages in order, so one key keeps its order while keys run in
//! parallel. With one worker (the router on one thread) the task handles every message in
//! order itself.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::output;
use super::process::{self, Pending, Processor, Settled, TaskDeps};
use super::task::{queue_name, TaskControl};
use super::timers;

/// Sends awaiting their acks per task before the task stops reading new messages.
const ACK_WINDOW: usize = 4096;
/// Capacity of each partition worker's queue.
const PARTITION_QUEUE: usize = 1024;
/// Longest wait between attempts to (re)create a subscription.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// After a core message's sends: confirm acks, retry transient failures for a while,
/// dead-letter otherwise.
async fn finish(deps: TaskDeps, mut pending: Pending, mut stop: watch::Receiver<bool>) {
    let give_up = Instant::now() + deps.core_retry_for;
    if let Settled::Interrupted =
        process::settle(&deps, &mut pending, Some(give_up), &mut stop, || async {}).await
    {
        // Stopping while outputs still fail: the message is dead-lettered (stored) rather
        // than dropped.
        if !process::dead_letter_interrupted(
            &deps,
            &mut pending,
            "route stopped while its outputs were failing",
        )
        .await
        {
            warn!(route = %process::route_name(&pending), "message lost at stop: its outputs and dead letter failed");
        }
    }
}

/// Where a handler's messages come from: the route's subscription, or a partition worker's
/// queue (fed by the dispatcher, which drains the subscription).
enum Messages {
    Subscription(async_nats::Subscriber),
    Queue(mpsc::Receiver<async_nats::Message>),
}

impl Messages {
    async fn next(&mut self) -> Option<async_nats::Message> {
        match self {
            Messages::Subscription(s) => s.next().await,
            Messages::Queue(q) => q.recv().await,
        }
    }

    /// Stops taking new messages: a subscription is drained (unsubscribed, and what it
    /// received already is still delivered), a queue ends when its dispatcher stops.
    async fn close(&mut self) {
        if let Messages::Subscription(s) = self {
            let _ = s.drain().await;
        }
    }
}

/// How long a stopping task keeps handling what its subscription had already received.
const DRAIN_FOR: Duration = Duration::from_secs(5);

/// Handles core messages in order until the source ends or `stop` flips; at a stop, what
/// the subscription had already received is still handled (a reload's old task so loses
/// nothing that reached it before its replacement was live).
async fn handle(mut processor: Processor, mut messages: Messages, control: TaskControl) {
    let mut stop = control.stop.clone();
    let retiring = control.retiring.clone();
    let mut window = FuturesUnordered::new();
    let mut draining: Option<tokio::time::Instant> = None;
    let mut timer = timers::Timer::new();
    loop {
        // stateful steps with something due wake the task without a new message
        timer.arm(processor.next_due());
        tokio::select! {
            biased;
            _ = stop.changed(), if draining.is_none() => {
                messages.close().await;
                draining = Some(tokio::time::Instant::now() + DRAIN_FOR);
            }
            _ = tokio::time::sleep_until(draining.unwrap_or_else(tokio::time::Instant::now)), if draining.is_some() => break,
            Some(()) = window.next(), if !window.is_empty() => {}
            () = timer.fired(), if timer.is_armed() && window.len() < ACK_WINDOW => {
                for pending in processor.tick().await {
                    if !pending.settled() {
                        window.push(finish(processor.deps.clone(), pending, control.stop.clone()));
                    }
                }
            }
            next = messages.next(), if window.len() < ACK_WINDOW => {
                let Some(msg) = next else { break };
                if *retiring.borrow() {
                    processor.deps.metrics.switch_overlap();
                }
                let headers = output::from_nats(msg.headers.as_ref());
                let pending = processor.run(msg.subject.as_str(), headers, msg.payload).await;
                if pending.settled() {
                    continue;
                }
                window.push(finish(processor.deps.clone(), pending, control.stop.clone()));
            }
        }
    }
    while window.next().await.is_some() {}
}

pub async fn run(processor: Processor, control: TaskControl, group: String) {
    let filter = processor.route.subscription().to_string();
    let name = processor.route.name.clone();
    let queue_group = queue_name(&group, &name);
    let client = processor.deps.client.clone();
    let state = processor.deps.state.clone();
    let mut stop = control.stop.clone();
    let mut retry = Duration::from_millis(100);
    let subscriber = loop {
        match client
            .queue_subscribe(filter.clone(), queue_group.clone())
            .await
        {
            Ok(subscriber) => break subscriber,
            Err(e) => {
                warn!(route = %name, error = %e, "cannot subscribe; retrying");
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    };
    info!(route = %name, subject = %filter, queue_group = %queue_group, "route subscribed");
    // Live on every connection once the server has the subscription: a round trip through
    // the server after the SUB (also after a reconnection re-sent it).
    let mut epochs = state.watch_epoch();
    let (client_for_live, id) = (client.clone(), control.id);
    let (live_name, live_state) = (name.clone(), state.clone());
    let mut live_stop = control.stop.clone();
    let confirm_live = async move {
        loop {
            let epoch = *epochs.borrow_and_update();
            if crate::nats::client::server_round_trip(&client_for_live, Duration::from_secs(5))
                .await
            {
                live_state.set_live(&live_name, id, epoch);
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    _ = live_stop.changed() => break,
                }
            }
            tokio::select! {
                changed = epochs.changed() => if changed.is_err() { break },
                _ = live_stop.changed() => break,
            }
        }
    };
    let partitions = processor.deps.partitions.max(1);
    let work = async move {
        if processor.route.partition_by.is_none() || partitions == 1 {
            handle(processor, Messages::Subscription(subscriber), control).await;
        } else {
            partitioned(processor, subscriber, control, partitions).await;
        }
    };
    // The liveness loop ends with the work (its stop) or by itself; the work decides.
    tokio::pin!(work);
    tokio::pin!(confirm_live);
    let mut live_done = false;
    loop {
        tokio::select! {
            () = &mut work => break,
            () = &mut confirm_live, if !live_done => live_done = true,
        }
    }
}

/// Spreads messages over `n` ordered workers by the hash of the route's partition key.
async fn partitioned(
    mut processor: Processor,
    mut subscriber: async_nats::Subscriber,
    control: TaskControl,
    n: usize,
) {
    let mut stop = control.stop.clone();
    let mut queues = Vec::with_capacity(n);
    let mut workers = Vec::with_capacity(n);
    // Workers end when their queue closes (after the dispatcher stops), never before:
    // this sender stays alive until they are joined.
    let (_workers_run, workers_stop) = watch::channel(false);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel::<async_nats::Message>(PARTITION_QUEUE);
        let worker_control = TaskControl {
            stop: workers_stop.clone(),
            ..control.clone()
        };
        workers.push(tokio::spawn(handle(
            processor.clone(),
            Messages::Queue(rx),
            worker_control,
        )));
        queues.push(tx);
    }
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed(), if !draining => {
                // What the subscription already received still goes to the workers.
                let _ = subscriber.drain().await;
                draining = true;
            }
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
    drop(queues);
    for worker in workers {
        let _ = worker.await;
    }
}
