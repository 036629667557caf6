//! Durable consumers from `consumers:` against the real binary and real nats-servers:
//! they exist with their settings once the broker is ready, come back after a nats-server
//! restart lost their memory stream, get a changed setting applied in place (keeping their
//! position) or, for one the server cannot change, are reported in `/ready` and health;
//! and a client bound to one keeps its position across a broker restart, for a pull and a
//! push (nats.py `js.subscribe(durable=…)`) consumer alike.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, AckKind};
use common::*;
use futures::StreamExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(20);

async fn info(client: &async_nats::Client, stream: &str, name: &str) -> Option<consumer::Info> {
    let js = jetstream::new(client.clone());
    let stream = js.get_stream_no_info(stream).await.ok()?;
    stream.consumer_info(name).await.ok()
}

/// A broker using the external server `nats`.
fn external(nats: &NatsServer) -> ServiceBuilder {
    ServiceBuilder::new()
        .set("nats.auto_start", json!(false))
        .set("nats.url", json!(nats.url()))
}

#[tokio::test]
async fn configured_consumers_exist_with_their_settings_after_start() {
    let service = ServiceBuilder::new()
        .set("streams", json!({ "STORE": { "subjects": ["store.>"] } }))
        .set(
            "consumers",
            json!({
                "store_pull": { "stream": "STORE", "filter_subject": "store.a.>", "deliver_policy": "new",
                                "ack_wait": "45s", "max_deliver": 4, "max_ack_pending": 123 },
                "store_push": { "stream": "STORE", "filter_subject": "store.b.>", "deliver_policy": "last",
                                "ack_wait": "1m", "max_deliver": 3, "max_ack_pending": 2000,
                                "deliver_subject": "_deliver.store_push", "description": "hot storage" },
            }),
        )
        .start()
        .await;
    let client = service.nats_client().await;
    let pull = info(&client, "STORE", "store_pull").await.expect("created");
    let c = &pull.config;
    assert_eq!(c.durable_name.as_deref(), Some("store_pull"));
    assert_eq!(c.filter_subject, "store.a.>");
    assert_eq!(c.deliver_policy, consumer::DeliverPolicy::New);
    assert_eq!(c.ack_policy, consumer::AckPolicy::Explicit);
    assert_eq!(c.ack_wait, Duration::from_secs(45));
    assert_eq!((c.max_deliver, c.max_ack_pending), (4, 123));
    assert_eq!(c.deliver_subject, None, "a pull consumer");
    assert_eq!(c.num_replicas, 1, "follows the stream");
    let push = info(&client, "STORE", "store_push").await.expect("created");
    let c = &push.config;
    assert_eq!(c.filter_subject, "store.b.>");
    assert_eq!(c.deliver_policy, consumer::DeliverPolicy::Last);
    assert_eq!(c.ack_wait, Duration::from_secs(60));
    assert_eq!((c.max_deliver, c.max_ack_pending), (3, 2000));
    assert_eq!(c.deliver_subject.as_deref(), Some("_deliver.store_push"));
    assert_eq!(c.description.as_deref(), Some("hot storage"));

    let (status, body) = service.get("/api/v1/broker/status").await;
    assert_eq!(status, 200);
    let listed = body["data"]["consumers"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{body}");
    assert!(listed.iter().all(|c| c["ok"] == true), "{body}");
    let (status, health) = service.get("/api/v1/broker/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["data"]["checks"]["consumers"]["status"], "healthy");
}

#[tokio::test]
async fn consumers_come_back_after_a_nats_restart_lost_their_memory_stream() {
    let service = ServiceBuilder::new()
        .set(
            "streams",
            json!({ "VOLATILE": { "subjects": ["volatile.>"], "storage": "memory" } }),
        )
        .set(
            "consumers",
            json!({ "keeper": { "stream": "VOLATILE", "ack_wait": "20s", "max_deliver": 2, "max_ack_pending": 50 } }),
        )
        .start()
        .await;
    let client = service.nats_client().await;
    let before = info(&client, "VOLATILE", "keeper").await.expect("created");
    let pid = service.nats_pid().await.unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    wait_for("a new nats-server", DEADLINE, || async {
        service.nats_pid().await.filter(|p| *p != pid)
    })
    .await;
    // The memory stream and its consumer died with the server; both are made again.
    let after = wait_for("the consumer re-created", DEADLINE, || async {
        info(&client, "VOLATILE", "keeper").await
    })
    .await;
    assert!(
        after.created > before.created,
        "a new consumer: {:?} then {:?}",
        before.created,
        after.created
    );
    assert_eq!(after.config.ack_wait, Duration::from_secs(20));
    assert_eq!(
        (after.config.max_deliver, after.config.max_ack_pending),
        (2, 50)
    );
    service.wait_ready(DEADLINE).await;

    // Deleted behind the broker's back: re-created by the periodic check.
    let js = jetstream::new(client.clone());
    js.get_stream("VOLATILE")
        .await
        .expect("the stream")
        .delete_consumer("keeper")
        .await
        .expect("deleted");
    wait_for("the deleted consumer re-created", DEADLINE, || async {
        info(&client, "VOLATILE", "keeper").await
    })
    .await;
    assert!(
        service.log().contains("was missing; re-created it"),
        "{}",
        service.log()
    );
}

#[tokio::test]
async fn a_changed_setting_is_applied_in_place_and_one_the_server_cannot_change_is_reported() {
    let nats = NatsServer::start().await;
    let stream = json!({ "ORD": { "subjects": ["ord.>"] } });
    let consumer = |extra: Value| {
        let mut c = json!({ "stream": "ORD", "filter_subject": "ord.>", "deliver_policy": "all",
                            "ack_wait": "10s", "max_deliver": 2, "max_ack_pending": 100 });
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({ "ord_store": c })
    };
    let first = external(&nats)
        .set("streams", stream.clone())
        .set("consumers", consumer(json!({})))
        .start()
        .await;
    let client = nats_client(&nats).await;
    let js = jetstream::new(client.clone());
    for i in 1..=5 {
        js.publish("ord.x", format!("m{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let bound: consumer::PullConsumer = js
        .get_stream("ORD")
        .await
        .unwrap()
        .get_consumer("ord_store")
        .await
        .unwrap();
    let mut batch = bound.fetch().max_messages(2).messages().await.unwrap();
    while let Some(message) = batch.next().await {
        message.unwrap().double_ack().await.unwrap();
    }
    let created = info(&client, "ORD", "ord_store").await.unwrap().created;
    drop(first);

    // Changeable settings: applied to the consumer that is there, position kept.
    let second = external(&nats)
        .set("streams", stream.clone())
        .set(
            "consumers",
            consumer(json!({ "ack_wait": "20s", "max_deliver": 5, "max_ack_pending": 200, "description": "v2" })),
        )
        .start()
        .await;
    let now = info(&client, "ORD", "ord_store").await.unwrap();
    assert_eq!(now.created, created, "updated, not re-created");
    assert_eq!(now.config.ack_wait, Duration::from_secs(20));
    assert_eq!(
        (now.config.max_deliver, now.config.max_ack_pending),
        (5, 200)
    );
    assert_eq!(now.config.description.as_deref(), Some("v2"));
    assert_eq!(now.ack_floor.stream_sequence, 2, "position kept");
    assert_eq!(now.num_pending, 3);
    assert!(second
        .log()
        .contains("updating durable consumer to match config"));
    drop(second);

    // A deliver policy cannot change on an existing consumer: reported, consumer untouched.
    let third = external(&nats)
        .set("streams", stream)
        .set(
            "consumers",
            consumer(json!({ "deliver_policy": "new", "ack_wait": "20s", "max_deliver": 5, "max_ack_pending": 200 })),
        )
        .start_listening()
        .await;
    let body = wait_for("the refusal in /ready", DEADLINE, || async {
        let (status, body) = third.get("/ready").await;
        (status == 503 && body["data"]["components"]["consumer:ord_store"].is_string())
            .then_some(body)
    })
    .await;
    let reason = body["data"]["components"]["consumer:ord_store"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("deliver_policy (all on the server, new in the config)")
            && reason.contains("cannot be changed"),
        "{reason}"
    );
    let (status, health) = third.get("/api/v1/broker/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["data"]["checks"]["consumers"]["status"], "unhealthy");
    let (_, status_body) = third.get("/api/v1/broker/status").await;
    assert_eq!(status_body["data"]["consumers"][0]["ok"], false);
    let now = info(&client, "ORD", "ord_store").await.unwrap();
    assert_eq!(now.created, created);
    assert_eq!(now.config.deliver_policy, consumer::DeliverPolicy::All);
    assert_eq!(now.ack_floor.stream_sequence, 2);
}

async fn nats_client(nats: &NatsServer) -> async_nats::Client {
    async_nats::connect(nats.url()).await.unwrap()
}

/// Takes `count` messages from a pull durable and acks them; returns their payloads.
async fn take_pull(client: &async_nats::Client, durable: &str, count: usize) -> Vec<String> {
    let js = jetstream::new(client.clone());
    let bound: consumer::PullConsumer = js
        .get_stream("POS")
        .await
        .unwrap()
        .get_consumer(durable)
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut messages = bound
        .fetch()
        .max_messages(count)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        got.push(String::from_utf8(message.payload.to_vec()).unwrap());
        message.double_ack().await.unwrap();
    }
    got
}

/// Binds to a push durable as nats.py's `js.subscribe(durable=…)` does (its deliver
/// subject), takes `count` messages and acks them; then waits `quiet` (if not zero) for
/// one more, which it returns unacked.
async fn take_push(
    client: &async_nats::Client,
    durable: &str,
    count: usize,
    quiet: Duration,
) -> Vec<String> {
    let js = jetstream::new(client.clone());
    let bound: consumer::PushConsumer = js
        .get_stream("POS")
        .await
        .unwrap()
        .get_consumer(durable)
        .await
        .unwrap();
    let mut messages = bound.messages().await.unwrap();
    let mut got = Vec::new();
    while got.len() < count {
        let message = tokio::time::timeout(DEADLINE, messages.next())
            .await
            .expect("a delivery")
            .unwrap()
            .unwrap();
        got.push(String::from_utf8(message.payload.to_vec()).unwrap());
        message.ack_with(AckKind::Ack).await.unwrap();
    }
    client.flush().await.unwrap();
    if !quiet.is_zero() {
        if let Ok(Some(Ok(extra))) = tokio::time::timeout(quiet, messages.next()).await {
            got.push(String::from_utf8(extra.payload.to_vec()).unwrap());
        }
    }
    got
}

#[tokio::test]
async fn a_bound_client_keeps_its_position_across_a_broker_restart() {
    let nats = NatsServer::start().await;
    let config = |b: ServiceBuilder| {
        b.set("streams", json!({ "POS": { "subjects": ["pos.>"] } }))
            .set(
                "consumers",
                json!({
                    "pos_pull": { "stream": "POS", "deliver_policy": "all" },
                    // Deliveries the departing client got but did not ack come back after
                    // ack_wait, as they would to a restarted storage.
                    "pos_push": { "stream": "POS", "deliver_policy": "all", "ack_wait": "2s",
                                  "deliver_subject": "_deliver.pos_push" },
                }),
            )
    };
    let first = config(external(&nats)).start().await;
    let client = nats_client(&nats).await;
    let js = jetstream::new(client.clone());
    let publish = |i: u32| {
        let js = js.clone();
        async move {
            js.publish("pos.x", format!("m{i}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    for i in 1..=5 {
        publish(i).await;
    }
    assert_eq!(take_pull(&client, "pos_pull", 3).await, ["m1", "m2", "m3"]);
    // The push client takes 3 and goes away (a storage restart).
    let push_client = nats_client(&nats).await;
    let got = take_push(&push_client, "pos_push", 3, Duration::ZERO).await;
    assert_eq!(got, ["m1", "m2", "m3"]);
    drop(push_client);

    let created = |name: &'static str| {
        let client = client.clone();
        async move { info(&client, "POS", name).await.unwrap().created }
    };
    let (pull_created, push_created) = (created("pos_pull").await, created("pos_push").await);

    // The broker restarts; messages keep arriving meanwhile.
    drop(first);
    publish(6).await;
    publish(7).await;
    let _second = config(external(&nats)).start().await;
    assert_eq!(created("pos_pull").await, pull_created, "not re-created");
    assert_eq!(created("pos_push").await, push_created, "not re-created");

    // Both resume after what they acked: nothing skipped, nothing acked comes again.
    let rest = take_pull(&client, "pos_pull", 10).await;
    assert_eq!(rest, ["m4", "m5", "m6", "m7"]);
    let push_client = nats_client(&nats).await;
    let mut rest = take_push(&push_client, "pos_push", 4, Duration::from_millis(500)).await;
    rest.sort();
    assert_eq!(rest, ["m4", "m5", "m6", "m7"]);
}
