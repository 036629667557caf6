//! Heartbeats of the MarketPrism data collectors: each collector publishes a JSON heartbeat
//! about every 10 s to `health.collector.{host}-{pid}`; the broker keeps the latest one per
//! instance, as the Python `message-broker` did, for `/api/v1/status` (`collectors`),
//! `GET /api/v1/collectors`, the `collectors` check of `/api/v1/broker/health` (degraded
//! while one is stale) and the collector metrics.
//!
//! One task ([`start`]) owns the [`table::CollectorTable`]: it subscribes through the shared
//! client (which carries the subscription over every reconnection by itself), takes in each
//! heartbeat, forgets silent collectors once a second, and publishes an immutable
//! [`table::CollectorsView`] into [`CollectorsState`] after every change. Requests and
//! scrapes only load that view (a pointer copy, no lock) and judge ages against their own
//! `now`. The subscription counts as in place on a connection only once a round trip
//! through the server followed it there (at start and after every reconnection: a SUB the
//! client sent or re-sent is then in effect). A subscription that ends (the client dropped
//! it) is noticed, logged, counted (`prism_collector_subscription_losses_total`) and made
//! again; a task that panics is started again with an empty table; nothing here can take
//! the service down.

pub mod table;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use futures::StreamExt;
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};
use tracing::{debug, error, info, warn};

use crate::config::CollectorsConfig;
use crate::nats::NatsState;
use crate::stats::Metrics;
use table::{CollectorTable, CollectorsView, Instance, Outcome, Settings};

/// How often silent collectors are looked for.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// Longest pause before subscribing again.
const MAX_RESUBSCRIBE: Duration = Duration::from_secs(5);

/// Bound on one round trip through the server, and the pause before trying another.
const ROUND_TRIP: Duration = Duration::from_secs(5);
const ROUND_TRIP_RETRY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum CollectorsError {
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        subject: String,
        source: async_nats::SubscribeError,
    },
}

/// What requests and scrapes read about the collectors: the settings, the latest view and
/// whether the heartbeat subscription stands.
#[derive(Debug)]
pub struct CollectorsState {
    pub subject: String,
    pub settings: Settings,
    view: ArcSwap<CollectorsView>,
    /// The task holds a subscription.
    subscribed: AtomicBool,
    /// The connection generation a round trip confirmed the subscription on (0: none).
    confirmed: AtomicU64,
}

impl CollectorsState {
    pub fn new(config: &CollectorsConfig) -> CollectorsState {
        CollectorsState {
            subject: config.subject.clone(),
            settings: Settings {
                stale_after: config.stale_after.duration(),
                ttl: config.ttl.duration(),
                max_instances: config.max_instances,
            },
            view: ArcSwap::from_pointee(CollectorsView::default()),
            subscribed: AtomicBool::new(false),
            confirmed: AtomicU64::new(0),
        }
    }

    /// The collectors as of `now`: a pointer copy of the latest view.
    pub fn report(&self, now: Instant) -> CollectorsReport {
        CollectorsReport {
            view: self.view.load_full(),
            now,
            settings: self.settings,
        }
    }

    /// The task holds a heartbeat subscription (false while it subscribes again after
    /// losing one).
    pub fn has_subscription(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// The heartbeat subscription is in effect on the server for the client's connection of
    /// `generation` ([`NatsState::connection_generation`]).
    pub fn subscribed(&self, generation: u64) -> bool {
        generation > 0
            && self.subscribed.load(Ordering::Acquire)
            && self.confirmed.load(Ordering::Acquire) == generation
    }

    fn publish(&self, view: CollectorsView) {
        self.view.store(Arc::new(view));
    }

    /// Publishes `view` as the task would (unit tests of the readers).
    #[cfg(test)]
    pub(crate) fn publish_for_tests(&self, view: CollectorsView) {
        self.publish(view);
    }

    fn set_subscribed(&self, subscribed: bool) {
        self.subscribed.store(subscribed, Ordering::Release);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The collectors at one moment: serializes as `{count, instances}` (the Python service's
/// `collectors` block), each instance as `{instance, hostname, pid, last_ts, age_sec,
/// uptime_sec, active_managers, exchanges, stale}`, sorted by instance. Collectors past the
/// ttl are left out even before the task forgets them.
pub struct CollectorsReport {
    view: Arc<CollectorsView>,
    now: Instant,
    settings: Settings,
}

impl CollectorsReport {
    fn live(&self) -> impl Iterator<Item = &Arc<Instance>> {
        let (now, ttl) = (self.now, self.settings.ttl);
        self.view
            .instances
            .iter()
            .filter(move |i| i.age(now) <= ttl)
    }

    fn is_stale(&self, instance: &Instance) -> bool {
        instance.age(self.now) > self.settings.stale_after
    }

    /// Collectors tracked (stale ones included).
    pub fn count(&self) -> usize {
        self.live().count()
    }

    /// Names of the stale collectors.
    pub fn stale(&self) -> Vec<&str> {
        self.live()
            .filter(|i| self.is_stale(i))
            .map(|i| &*i.name)
            .collect()
    }

    /// `(instance, seconds since its latest heartbeat, stale)` of every tracked collector.
    pub fn ages(&self) -> impl Iterator<Item = (&str, f64, bool)> {
        self.live().map(|i| {
            let age = i.age(self.now);
            (&*i.name, age.as_secs_f64(), age > self.settings.stale_after)
        })
    }

    /// The instances alone, as `[…]`.
    pub fn instances(&self) -> Instances<'_> {
        Instances(self)
    }
}

/// The `instances` list of a [`CollectorsReport`].
pub struct Instances<'a>(&'a CollectorsReport);

struct Shown<'a> {
    instance: &'a Instance,
    report: &'a CollectorsReport,
}

impl Serialize for Shown<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let i = self.instance;
        let age = i.age(self.report.now);
        let mut s = serializer.serialize_struct("Instance", 9)?;
        s.serialize_field("instance", &*i.name)?;
        s.serialize_field("hostname", &i.hostname)?;
        s.serialize_field("pid", &i.pid)?;
        // The Python service's `last_ts`: Unix seconds of the latest heartbeat.
        s.serialize_field("last_ts", &i.received_unix)?;
        s.serialize_field("age_sec", &age.as_secs())?;
        s.serialize_field("uptime_sec", &i.uptime_sec)?;
        s.serialize_field("active_managers", &i.active_managers)?;
        s.serialize_field("exchanges", &i.exchanges)?;
        s.serialize_field("stale", &(age > self.report.settings.stale_after))?;
        s.end()
    }
}

impl Serialize for Instances<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let report = self.0;
        let mut seq = serializer.serialize_seq(None)?;
        for instance in report.live() {
            seq.serialize_element(&Shown { instance, report })?;
        }
        seq.end()
    }
}

impl Serialize for CollectorsReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Collectors", 2)?;
        s.serialize_field("count", &self.count())?;
        s.serialize_field("instances", &self.instances())?;
        s.end()
    }
}

/// Starts the heartbeat task on the current actix runtime; abort the handle at shutdown.
pub fn start(
    state: Arc<CollectorsState>,
    client: async_nats::Client,
    nats: Arc<NatsState>,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    actix_rt::spawn(async move {
        loop {
            let run = actix_rt::spawn(run(
                state.clone(),
                client.clone(),
                nats.clone(),
                metrics.clone(),
            ));
            match run.await {
                Ok(()) => break,
                Err(e) if e.is_panic() => {
                    state.set_subscribed(false);
                    error!(error = %e, "collector heartbeat task panicked; starting it again");
                    metrics.collectors.task_restarted();
                }
                Err(_) => break, // aborted: shutting down
            }
        }
    })
}

/// Subscribes (again whenever the subscription ends) and feeds the table until aborted.
async fn run(
    state: Arc<CollectorsState>,
    client: async_nats::Client,
    nats: Arc<NatsState>,
    metrics: Arc<Metrics>,
) {
    let mut table = CollectorTable::new(state.settings);
    let mut tick = tokio::time::interval(EXPIRE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pause = Duration::from_millis(100);
    let mut told = false;
    loop {
        let mut subscription = match subscribe(&client, &state.subject).await {
            Ok(subscription) => subscription,
            Err(e) => {
                if told {
                    debug!(error = %e, "collector heartbeat subscription still failing");
                } else {
                    warn!(error = %e, "collector heartbeats: cannot subscribe; retrying");
                    told = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RESUBSCRIBE);
                continue;
            }
        };
        info!(subject = %state.subject, "subscribed to collector heartbeats");
        state.set_subscribed(true);
        let confirm = actix_rt::spawn(confirm_each_connection(
            client.clone(),
            nats.clone(),
            state.clone(),
        ));
        told = false;
        pause = Duration::from_millis(100);
        loop {
            tokio::select! {
                message = subscription.next() => match message {
                    Some(message) => take_in(&mut table, &state, &metrics, &message),
                    None => break,
                },
                _ = tick.tick() => {
                    let gone = table.expire(Instant::now());
                    if !gone.is_empty() {
                        for name in &gone {
                            info!(instance = %name, ttl_sec = state.settings.ttl.as_secs(), "collector forgotten: no heartbeat within the ttl");
                        }
                        state.publish(table.view());
                    }
                }
            }
        }
        confirm.abort();
        state.set_subscribed(false);
        metrics.collectors.subscription_lost();
        warn!(subject = %state.subject, "collector heartbeat subscription ended; subscribing again");
        tokio::time::sleep(pause).await;
    }
}

/// Records, for every connection of the client, when the subscription is in effect there:
/// after a round trip through the server that followed the (re-sent) SUB.
async fn confirm_each_connection(
    client: async_nats::Client,
    nats: Arc<NatsState>,
    state: Arc<CollectorsState>,
) {
    let mut connections = nats.watch_connections();
    loop {
        let generation = *connections.borrow_and_update();
        if generation > 0 && crate::nats::client::server_round_trip(&client, ROUND_TRIP).await {
            state.confirmed.store(generation, Ordering::Release);
            if connections.changed().await.is_err() {
                return;
            }
        } else {
            tokio::select! {
                _ = tokio::time::sleep(ROUND_TRIP_RETRY) => {}
                changed = connections.changed() => if changed.is_err() { return },
            }
        }
    }
}

async fn subscribe(
    client: &async_nats::Client,
    subject: &str,
) -> Result<async_nats::Subscriber, CollectorsError> {
    client
        .subscribe(subject.to_string())
        .await
        .map_err(|source| CollectorsError::Subscribe {
            subject: subject.to_string(),
            source,
        })
}

fn take_in(
    table: &mut CollectorTable,
    state: &CollectorsState,
    metrics: &Metrics,
    message: &async_nats::Message,
) {
    let outcome = table.accept(
        message.subject.as_str(),
        &message.payload,
        Instant::now(),
        unix_now(),
    );
    match outcome {
        Outcome::Accepted { instance, new } => {
            metrics.collectors.heartbeat("accepted");
            if new {
                info!(instance = %instance, "collector heard from");
            }
            state.publish(table.view());
        }
        Outcome::Malformed {
            instance,
            reason,
            first,
        } => {
            metrics.collectors.heartbeat("malformed");
            if first {
                warn!(instance = %instance, subject = %message.subject, reason = %reason,
                    "malformed collector heartbeat ignored (counted; further ones from this instance are not logged)");
            }
        }
        Outcome::Rejected { instance, first } => {
            metrics.collectors.heartbeat("rejected");
            if first {
                warn!(instance = %instance, max_instances = state.settings.max_instances,
                    "collector heartbeat refused: collectors.max_instances are tracked (counted; further refusals are not logged until there is room)");
            }
        }
    }
}
