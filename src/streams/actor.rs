//! `StreamActor`: owns the JetStream context. Ensures the configured streams on start-up
//! and after every (re)connection, checks them every [`CHECK_INTERVAL`] (a configured stream
//! deleted behind our back is re-created; one that exists although ensuring it failed is
//! ensured again; one without room is marked as refusing writes),
//! checks at once a stream a publish found unanswered, keeps the subject → stream catalog,
//! and serves the stream CRUD of the REST API. Mutations run one at a time (atomic
//! responses), so a create's overlap check and the create itself cannot interleave with
//! another mutation. Every change it makes is counted in [`StreamsState`]
//! (`notify_changed`) before it answers, so the status snapshot picks it up at once.
//! The configured durable consumers (`consumers`) are ensured right after the streams and
//! re-created by the periodic check when missing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use async_nats::jetstream::{self, context::Context as JetStream, stream};
use futures::TryStreamExt;
use serde_json::Value;
use tracing::{error, info, warn};

use super::consumers::{self, ConsumersState};
use super::mapping::{differences, from_nats, info_view, to_nats};
use super::room::{self, StoreFigures};
use super::state::{Refusal, StreamsState};
use super::StreamError;
use crate::config::{DurableSpec, StreamConfig, StreamSpec};
use crate::nats::NatsState;
use crate::subject;

/// How often the catalog is refreshed to see streams made by others.
const CATALOG_REFRESH: Duration = Duration::from_secs(10);
/// Retry delay after ensuring failed for lack of a connection.
const ENSURE_RETRY: Duration = Duration::from_secs(2);
/// How often the configured streams are checked (existence, room).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Where the supervised server keeps its JetStream store, to watch its disk.
#[derive(Debug, Clone, Default)]
pub struct StoreWatch {
    pub dir: Option<PathBuf>,
    /// The server's `max_payload`: the room one message needs at most.
    pub max_payload: u64,
}

pub struct StreamActor {
    js: JetStream,
    client: async_nats::Client,
    nats: Arc<NatsState>,
    specs: Arc<Vec<StreamSpec>>,
    state: Arc<StreamsState>,
    store: StoreWatch,
    /// A check is running: the timer skips its turn instead of queueing another.
    checking: bool,
    /// Durable consumers ensured after the streams, and their health.
    consumers: Arc<Vec<DurableSpec>>,
    consumer_state: Arc<ConsumersState>,
}

impl StreamActor {
    pub fn new(
        client: async_nats::Client,
        nats: Arc<NatsState>,
        specs: Vec<StreamSpec>,
        state: Arc<StreamsState>,
        timeout: Duration,
        store: StoreWatch,
    ) -> Self {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(timeout);
        StreamActor {
            js,
            client,
            nats,
            specs: Arc::new(specs),
            state,
            store,
            checking: false,
            consumers: Arc::new(Vec::new()),
            consumer_state: Arc::new(ConsumersState::default()),
        }
    }

    /// Also keeps `specs` (durable consumers) ensured, reporting into `state`.
    pub fn with_consumers(mut self, specs: Vec<DurableSpec>, state: Arc<ConsumersState>) -> Self {
        self.consumers = Arc::new(specs);
        self.consumer_state = state;
        self
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

impl Actor for StreamActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Ensure at every (re)connection, including the first.
        let mut connections = self.nats.watch_connections();
        let addr = ctx.address();
        ctx.spawn(
            async move {
                loop {
                    if *connections.borrow_and_update() > 0 {
                        addr.do_send(EnsureStreams);
                    }
                    if connections.changed().await.is_err() {
                        break;
                    }
                }
            }
            .into_actor(self),
        );
        // A publish that met no responders names its stream: check it now.
        let (state, addr) = (self.state.clone(), ctx.address());
        ctx.spawn(
            async move {
                loop {
                    let names = state.suspected().await;
                    if addr.send(CheckStreams { only: Some(names) }).await.is_err() {
                        break;
                    }
                }
            }
            .into_actor(self),
        );
        ctx.run_interval(CHECK_INTERVAL, |act, ctx| {
            if !act.checking {
                ctx.notify(CheckStreams { only: None });
            }
        });
        ctx.run_interval(CATALOG_REFRESH, |act, ctx| {
            if !act.connected() {
                return;
            }
            let js = act.js.clone();
            let state = act.state.clone();
            ctx.spawn(
                async move {
                    if let Err(e) = refresh_catalog(&js, &state).await {
                        tracing::debug!(error = %e, "stream catalog refresh failed");
                    }
                }
                .into_actor(act),
            );
        });
    }
}

impl Supervised for StreamActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        warn!("stream actor restarting");
    }
}

/// Lists every stream on the server into the subject catalog.
async fn refresh_catalog(
    js: &JetStream,
    state: &StreamsState,
) -> Result<Vec<stream::Info>, StreamError> {
    let infos: Vec<stream::Info> = js
        .streams()
        .try_collect()
        .await
        .map_err(|e| StreamError::request(&e))?;
    state.merge_listing(
        infos
            .iter()
            .map(|i| (i.config.name.as_str(), i.config.subjects.as_slice())),
    );
    Ok(infos)
}

/// Creates or updates one stream to match its spec.
async fn ensure_one(js: &JetStream, spec: &StreamSpec) -> Result<&'static str, StreamError> {
    match js.get_stream(&spec.name).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(|e| StreamError::request(&e))?;
            let diffs = differences(spec, &info.config);
            if diffs.is_empty() {
                return Ok("unchanged");
            }
            info!(stream = %spec.name, changes = %diffs.join(", "), "updating stream to match config");
            js.update_stream(to_nats(spec))
                .await
                .map_err(|e| StreamError::from_create(&e))?;
            Ok("updated")
        }
        Err(e) if StreamError::from_get(&e).is_not_found() => {
            js.create_stream(to_nats(spec))
                .await
                .map_err(|e| StreamError::from_create(&e))?;
            Ok("created")
        }
        Err(e) => Err(StreamError::from_get(&e)),
    }
}

/// Ensures the configured streams. Sent at every (re)connection.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EnsureStreams;

impl Handler<EnsureStreams> for StreamActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: EnsureStreams, _ctx: &mut Context<Self>) -> Self::Result {
        let js = self.js.clone();
        let specs = self.specs.clone();
        let state = self.state.clone();
        let (durables, durable_state) = (self.consumers.clone(), self.consumer_state.clone());
        // The connection this ensures for: a reconnection meanwhile queues another round.
        let generation = self.nats.connection_generation();
        AtomicResponse::new(Box::pin(
            async move {
                let mut retry = false;
                for spec in specs.iter() {
                    match ensure_one(&js, spec).await {
                        Ok(outcome) => {
                            info!(stream = %spec.name, outcome, "stream ensured");
                            state.set_health(&spec.name, Ok(()));
                        }
                        Err(e) => {
                            retry |= matches!(e, StreamError::Unavailable(_));
                            error!(stream = %spec.name, error = %e, "cannot ensure stream");
                            state.set_health(&spec.name, Err(e.to_string()));
                        }
                    }
                }
                retry |= consumers::ensure_all(&js, &durables, &durable_state).await;
                if let Err(e) = refresh_catalog(&js, &state).await {
                    warn!(error = %e, "stream catalog refresh failed");
                    retry = true;
                }
                // Counted before readiness flips, so a request that saw /ready 200 also
                // sees the change and gets figures that include it.
                state.notify_changed();
                state.set_ensured((!retry).then_some(generation));
                retry
            }
            .into_actor(self)
            .map(|retry, _act, ctx| {
                if retry {
                    ctx.run_later(ENSURE_RETRY, |_, ctx| ctx.notify(EnsureStreams));
                }
            }),
        ))
    }
}

/// Checks streams: every configured one and every one found missing (`only: None`, every
/// [`CHECK_INTERVAL`]) or the named ones (a publish found them unanswered). A configured stream that is missing is
/// re-created at once; one that has no room is marked as refusing writes (and unmarked when
/// room comes back); an unconfigured one that the JetStream API reports missing is marked
/// missing (its publishes fail at once) but stays in the catalog until it is deleted through
/// the API.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CheckStreams {
    pub only: Option<Vec<String>>,
}

impl StreamActor {
    fn store_figures(&self) -> StoreFigures {
        let disk_free = self.store.dir.as_ref().and_then(|dir| {
            let stat = nix::sys::statvfs::statvfs(dir.as_path()).ok()?;
            Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
        });
        match self.nats.jsz() {
            Some(jsz) => StoreFigures::from_jsz(&jsz.body, disk_free, self.store.max_payload),
            None => StoreFigures {
                disk_free,
                max_payload: self.store.max_payload,
                ..Default::default()
            },
        }
    }
}

impl Handler<CheckStreams> for StreamActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: CheckStreams, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.connected() || !self.state.ensured_for(self.nats.connection_generation()) {
            // Ensuring (at every connection) runs or is retried; it checks everything.
            return AtomicResponse::new(Box::pin(fut::ready(())));
        }
        let periodic = msg.only.is_none();
        let (durables, durable_state) = (self.consumers.clone(), self.consumer_state.clone());
        let names: Vec<String> = msg.only.unwrap_or_else(|| {
            let mut names: Vec<String> = self.specs.iter().map(|s| s.name.clone()).collect();
            names.extend(self.state.missing());
            names
        });
        let (js, specs, state) = (self.js.clone(), self.specs.clone(), self.state.clone());
        let store = self.store_figures();
        self.checking = true;
        AtomicResponse::new(Box::pin(
            async move {
                let infos =
                    futures::future::join_all(names.iter().map(|n| get_info(&js, n))).await;
                for (name, result) in names.iter().zip(infos) {
                    let spec = specs.iter().find(|s| &s.name == name);
                    match result {
                        Ok(info) => {
                            state.set_missing(name, false);
                            judge_room(&state, &info, &store);
                            // It exists, but ensuring it failed earlier (e.g. "no suitable
                            // peers" while a cluster was forming, and another node created
                            // it since): ensure it again, so the failure does not stick.
                            if let Some(spec) = spec {
                                if matches!(state.health().get(name), Some(Err(_))) {
                                    reensure(&js, &state, spec).await;
                                }
                            }
                        }
                        Err(e) if e.is_not_found() => match spec {
                            Some(spec) => recreate(&js, &state, spec).await,
                            None => {
                                if !state.is_missing(name) {
                                    warn!(stream = %name, "stream is missing on the server: publishes to its subjects answer 503 until it is created again or deleted through the api");
                                    state.set_missing(name, true);
                                }
                                continue;
                            }
                        },
                        Err(e) => {
                            if spec.is_some() {
                                state.set_unavailable(name, Some(format!("not answering: {e}")));
                            }
                            continue;
                        }
                    }
                    if spec.is_some() {
                        state.set_unavailable(name, None);
                    }
                }
                if periodic {
                    consumers::recreate_missing(&js, &durables, &durable_state).await;
                }
            }
            .into_actor(self)
            .map(|(), act, _ctx| act.checking = false),
        ))
    }
}

/// Marks or unmarks `info`'s stream as refusing writes for lack of room, from the figures
/// the server shows now.
fn judge_room(state: &StreamsState, info: &stream::Info, store: &StoreFigures) {
    let name = info.config.name.as_str();
    state.merge_listing([(name, info.config.subjects.as_slice())]);
    match (room::no_room(info, store), state.refusal(name)) {
        (Some(reason), was) => {
            if was.is_none() {
                warn!(stream = %name, %reason, "stream has no room: writes are refused");
            }
            state.mark_refusing(name, Refusal { reason });
        }
        (None, Some(_)) => {
            info!(stream = %name, "stream has room again");
            state.clear_refusing(name);
        }
        (None, None) => {}
    }
}

/// Re-creates a configured stream found missing (deleted behind our back).
async fn recreate(js: &JetStream, state: &StreamsState, spec: &StreamSpec) {
    let known = state.health().get(&spec.name).cloned();
    state.set_unavailable(&spec.name, Some("missing; being re-created".into()));
    match ensure_one(js, spec).await {
        Ok(outcome) => {
            warn!(stream = %spec.name, outcome, "configured stream was missing; re-created it");
            state.set_health(&spec.name, Ok(()));
        }
        Err(e) => {
            let reason = e.to_string();
            if known != Some(Err(reason.clone())) {
                error!(stream = %spec.name, error = %reason, "configured stream is missing and cannot be re-created");
            }
            state.set_health(&spec.name, Err(reason));
        }
    }
}

/// Ensures a configured stream that exists but failed its last ensure.
async fn reensure(js: &JetStream, state: &StreamsState, spec: &StreamSpec) {
    match ensure_one(js, spec).await {
        Ok(outcome) => {
            info!(stream = %spec.name, outcome, "stream ensured after an earlier failure");
            state.set_health(&spec.name, Ok(()));
            state.notify_changed();
        }
        Err(e) => state.set_health(&spec.name, Err(e.to_string())),
    }
}

/// All streams on the server with their state.
#[derive(Message)]
#[rtype(result = "Result<Vec<stream::Info>, StreamError>")]
pub struct ListStreams;

impl Handler<ListStreams> for StreamActor {
    type Result = ResponseFuture<Result<Vec<stream::Info>, StreamError>>;

    fn handle(&mut self, _msg: ListStreams, _ctx: &mut Context<Self>) -> Self::Result {
        let js = self.js.clone();
        let state = self.state.clone();
        Box::pin(async move { refresh_catalog(&js, &state).await })
    }
}

/// One stream with its state.
#[derive(Message)]
#[rtype(result = "Result<stream::Info, StreamError>")]
pub struct GetStream(pub String);

impl Handler<GetStream> for StreamActor {
    type Result = ResponseFuture<Result<stream::Info, StreamError>>;

    fn handle(&mut self, msg: GetStream, _ctx: &mut Context<Self>) -> Self::Result {
        let js = self.js.clone();
        Box::pin(async move { get_info(&js, &msg.0).await })
    }
}

async fn get_info(js: &JetStream, name: &str) -> Result<stream::Info, StreamError> {
    let mut stream = js
        .get_stream(name)
        .await
        .map_err(|e| StreamError::from_get(&e))?;
    stream
        .info()
        .await
        .cloned()
        .map_err(|e| StreamError::request(&e))
}

/// Outcome of a create: made now, or already there with the same config.
#[derive(Debug)]
pub enum Created {
    New(stream::Info),
    Existing(stream::Info),
}

/// Creates a stream; identical config is idempotent, a different one is a conflict, and
/// subjects overlapping another stream are refused naming that stream.
#[derive(Message)]
#[rtype(result = "Result<Created, StreamError>")]
pub struct CreateStream(pub StreamSpec);

impl Handler<CreateStream> for StreamActor {
    type Result = AtomicResponse<Self, Result<Created, StreamError>>;

    fn handle(&mut self, msg: CreateStream, _ctx: &mut Context<Self>) -> Self::Result {
        let js = self.js.clone();
        let state = self.state.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let spec = msg.0;
                let streams = refresh_catalog(&js, &state).await?;
                if let Some(existing) = streams.iter().find(|s| s.config.name == spec.name) {
                    let diffs = differences(&spec, &existing.config);
                    return if diffs.is_empty() {
                        Ok(Created::Existing(existing.clone()))
                    } else {
                        Err(StreamError::Conflict(format!(
                            "stream {} already exists with a different config ({})",
                            spec.name,
                            diffs.join(", ")
                        )))
                    };
                }
                check_overlap(&spec, &streams)?;
                let mut created = js
                    .create_stream(to_nats(&spec))
                    .await
                    .map_err(|e| StreamError::from_create(&e))?;
                let info = created
                    .info()
                    .await
                    .map_err(|e| StreamError::request(&e))?
                    .clone();
                let _ = refresh_catalog(&js, &state).await;
                state.notify_changed();
                Ok(Created::New(info))
            }
            .into_actor(self),
        ))
    }
}

fn check_overlap(spec: &StreamSpec, streams: &[stream::Info]) -> Result<(), StreamError> {
    for other in streams.iter().filter(|s| s.config.name != spec.name) {
        for theirs in &other.config.subjects {
            if let Some(ours) = spec
                .subjects
                .iter()
                .find(|ours| subject::overlap(ours, theirs))
            {
                return Err(StreamError::Conflict(format!(
                    "subject {ours:?} overlaps {theirs:?} of stream {}",
                    other.config.name
                )));
            }
        }
    }
    Ok(())
}

/// Updates a stream: the given fields replace the current ones, the rest stay.
#[derive(Message)]
#[rtype(result = "Result<stream::Info, StreamError>")]
pub struct UpdateStream {
    pub name: String,
    pub changes: StreamConfig,
}

impl Handler<UpdateStream> for StreamActor {
    type Result = AtomicResponse<Self, Result<stream::Info, StreamError>>;

    fn handle(&mut self, msg: UpdateStream, _ctx: &mut Context<Self>) -> Self::Result {
        let js = self.js.clone();
        let state = self.state.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let streams = refresh_catalog(&js, &state).await?;
                let current = streams
                    .iter()
                    .find(|s| s.config.name == msg.name)
                    .ok_or_else(|| {
                        StreamError::NotFound(format!("stream {} not found", msg.name))
                    })?;
                let spec = from_nats(&current.config).merged(&msg.changes);
                if spec.subjects.is_empty() {
                    return Err(StreamError::Invalid(
                        "subjects: at least one subject is needed".into(),
                    ));
                }
                check_overlap(&spec, &streams)?;
                let info = js
                    .update_stream(to_nats(&spec))
                    .await
                    .map_err(|e| StreamError::from_create(&e))?;
                let _ = refresh_catalog(&js, &state).await;
                state.notify_changed();
                Ok(info)
            }
            .into_actor(self),
        ))
    }
}

/// Deletes a stream. Streams from the config are refused: they would come back at the
/// next reconnection.
#[derive(Message)]
#[rtype(result = "Result<Value, StreamError>")]
pub struct DeleteStream(pub String);

impl Handler<DeleteStream> for StreamActor {
    type Result = AtomicResponse<Self, Result<Value, StreamError>>;

    fn handle(&mut self, msg: DeleteStream, _ctx: &mut Context<Self>) -> Self::Result {
        let js = self.js.clone();
        let state = self.state.clone();
        let configured = self.specs.iter().any(|s| s.name == msg.0);
        AtomicResponse::new(Box::pin(
            async move {
                let name = msg.0;
                let info = match get_info(&js, &name).await {
                    Err(e) if e.is_not_found() && !configured && state.is_known(&name) => {
                        // Gone from the server already: forget it, its subjects are core again.
                        state.forget(&name);
                        info!(stream = %name, "stream was already gone; removed from the catalog");
                        return Ok(serde_json::json!({ "name": name, "forgotten": true }));
                    }
                    other => other?,
                };
                if configured {
                    return Err(StreamError::Protected(format!(
                        "stream {name} is defined in the config; remove it there first"
                    )));
                }
                js.delete_stream(&name)
                    .await
                    .map_err(|e| StreamError::from_get(&e))?;
                state.remove_health(&name);
                state.forget(&name);
                let _ = refresh_catalog(&js, &state).await;
                state.notify_changed();
                Ok(info_view(&info))
            }
            .into_actor(self),
        ))
    }
}
