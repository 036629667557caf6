//! Three brokers over a three-node NATS cluster on loopback, streams replicated three
//! times (the defaults in a cluster of three): no acknowledged message is lost when a node
//! dies, in a rolling restart, or while the cluster has no quorum, and no publish to a
//! captured subject is ever answered from core NATS. Every node is a real `prism-broker`
//! supervising a real clustered `nats-server` (`tests/common/cluster.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use common::cluster::{Cluster, ClusterBuilder, CLUSTER_DEADLINE};
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};

/// How long one message may keep answering 503 before the test gives up on it.
const PER_MESSAGE: Duration = Duration::from_secs(60);

/// Every `i` (the payload field) stored in `stream`, read through node `via`.
async fn stored(cluster: &Cluster, via: usize, stream: &str) -> BTreeSet<u64> {
    let js = cluster.jetstream(via).await;
    // Right after a node died the meta layer may still be electing: creating the reading
    // consumer goes through it, so it is retried.
    let (last, consumer) = cluster
        .wait_for(
            "a consumer to read the stream",
            CLUSTER_DEADLINE,
            || async {
                let stream = js.get_stream(stream).await.ok()?;
                let last = stream.cached_info().state.messages;
                let consumer = stream
                    .create_consumer(pull::Config {
                        deliver_policy: DeliverPolicy::All,
                        ack_policy: AckPolicy::None,
                        inactive_threshold: Duration::from_secs(60),
                        ..Default::default()
                    })
                    .await
                    .ok()?;
                Some((last, consumer))
            },
        )
        .await;
    let mut seen = BTreeSet::new();
    let mut read = 0;
    while read < last {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        let before = read;
        while let Some(Ok(msg)) = batch.next().await {
            read += 1;
            let v: Value = serde_json::from_slice(&msg.payload).unwrap();
            seen.insert(v["i"].as_u64().unwrap());
        }
        assert!(
            read > before,
            "reading {stream:?} stalled at {read} of {last}"
        );
    }
    seen
}

fn assert_stored(acked: &BTreeSet<u64>, stored: &BTreeSet<u64>) {
    let missing: Vec<&u64> = acked.difference(stored).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
}

/// Publishes `{"i": i}` with `msg_id` `m-i` through `url` until it is acknowledged: a 503
/// is retried (with the same msg_id), a 200 must be the stream's ack. Returns false when
/// the node itself cannot be reached (it was killed).
async fn publish_until_acked(http: &reqwest::Client, url: &str, i: u64) -> bool {
    let body = json!({
        "subject": format!("trade.binance.spot.S{}", i % 16),
        "message": { "i": i },
        "msg_id": format!("m-{i}"),
    });
    let end = Instant::now() + PER_MESSAGE;
    loop {
        assert!(Instant::now() < end, "message {i} never acknowledged");
        let sent = http
            .post(url)
            .json(&body)
            .timeout(Duration::from_secs(20))
            .send()
            .await;
        let Ok(response) = sent else { return false };
        let status = response.status().as_u16();
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            200 => {
                assert_eq!(
                    reply["data"]["jetstream"], true,
                    "a 200 from core NATS: {reply}"
                );
                assert_eq!(reply["data"]["stream"], "MARKET_DATA", "{reply}");
                return true;
            }
            503 => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("unexpected {other}: {reply}"),
        }
    }
}

/// The issue's scenario: 6,000 REST publishes, 16 in flight, through a node that does not
/// lead `MARKET_DATA`; the leader's node is killed after 2,000. Every acknowledged message
/// is in the stream afterwards, and no answer came from core NATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_during_rest_publishing_loses_no_acked_message() {
    let mut cluster = ClusterBuilder::new(3).start().await;
    let leader = cluster
        .wait_stream_leader("MARKET_DATA", CLUSTER_DEADLINE)
        .await;
    let entry = cluster
        .up_nodes()
        .into_iter()
        .find(|&i| i != leader)
        .unwrap();
    let url = cluster.node(entry).url("/api/v1/broker/publish");
    const N: u64 = 6000;
    let next = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (url, next, acked) = (url.clone(), next.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= N {
                    break;
                }
                assert!(
                    publish_until_acked(&http, &url, i).await,
                    "the entry node is up"
                );
                acked.lock().unwrap().insert(i);
            }
        }));
    }
    wait_for("2,000 acknowledged", CLUSTER_DEADLINE, || async {
        (acked.lock().unwrap().len() >= 2000).then_some(())
    })
    .await;
    cluster.kill(leader);
    for worker in workers {
        worker.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len() as u64, N);
    cluster
        .wait_stream_leader("MARKET_DATA", CLUSTER_DEADLINE)
        .await;
    assert_stored(&acked, &stored(&cluster, entry, "MARKET_DATA").await);
}

const JS_ROUTE: &str = r#"
routes:
  - name: js-copy
    from: "in.{x}"
    source:
      jetstream: { stream: IN, durable: js-copy, ack_wait: 10s }
    to:
      - subject: "out.{x}"
        jetstream: true
        msg_id: "{$.i}"
"#;

/// A JetStream-source → JetStream-output route shared by the three brokers through its
/// durable: the node leading its input stream is killed in the middle; every message
/// acknowledged into the input reaches the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_route_loses_nothing_when_its_input_leader_dies() {
    let mut cluster = ClusterBuilder::new(3)
        .set("streams.IN", json!({ "subjects": ["in.>"] }))
        .set("streams.OUT", json!({ "subjects": ["out.>"] }))
        .configure(|_, b| b.route_file("js.yaml", JS_ROUTE))
        .start()
        .await;
    let leader = cluster.wait_stream_leader("IN", CLUSTER_DEADLINE).await;
    let entry = cluster
        .up_nodes()
        .into_iter()
        .find(|&i| i != leader)
        .unwrap();
    let js = cluster.jetstream(entry).await;
    const N: u64 = 3000;
    for i in 0..N {
        if i == N / 3 {
            cluster.kill(leader);
        }
        let end = Instant::now() + PER_MESSAGE;
        loop {
            assert!(Instant::now() < end, "input {i} never acknowledged");
            let body = json!({ "i": i }).to_string();
            if let Ok(ack) = js.publish(format!("in.k{}", i % 8), body.into()).await {
                if ack.await.is_ok() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    wait_for("every input in OUT", CLUSTER_DEADLINE, || async {
        let info = cluster.stream_info("OUT").await?;
        (info.state.messages >= N).then_some(())
    })
    .await;
    let expected: BTreeSet<u64> = (0..N).collect();
    assert_stored(&expected, &stored(&cluster, entry, "OUT").await);
}

/// A rolling restart of all three nodes, one at a time, while publishing goes on through
/// the nodes that are up: nothing acknowledged is lost, and each node rejoins with its
/// replicas caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_publishing_loses_no_acked_message() {
    let mut cluster = ClusterBuilder::new(3).start().await;
    let urls: Arc<Mutex<Vec<(usize, String)>>> = Arc::new(Mutex::new(
        cluster
            .up_nodes()
            .into_iter()
            .map(|i| (i, cluster.node(i).url("/api/v1/broker/publish")))
            .collect(),
    ));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (urls, acked, stop, next) = (urls.clone(), acked.clone(), stop.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = next.fetch_add(1, Ordering::Relaxed);
            let mut turn = w;
            while !stop.load(Ordering::Acquire) {
                let url = {
                    let urls = urls.lock().unwrap();
                    turn += 1;
                    urls[turn % urls.len()].1.clone()
                };
                // A node being stopped may refuse the connection: the message goes to
                // another node, with the same msg_id.
                if publish_until_acked(&http, &url, i).await {
                    acked.lock().unwrap().insert(i);
                    i = next.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for node in 0..cluster.size() {
        let before = acked.lock().unwrap().len();
        wait_for("publishing goes on", CLUSTER_DEADLINE, || async {
            (acked.lock().unwrap().len() >= before + 200).then_some(())
        })
        .await;
        urls.lock().unwrap().retain(|(i, _)| *i != node);
        cluster.stop(node);
        cluster.restart(node).await;
        urls.lock()
            .unwrap()
            .push((node, cluster.node(node).url("/api/v1/broker/publish")));
        // The node rejoined and its replica caught up (lag 0, current).
        cluster
            .wait_stream_current("MARKET_DATA", CLUSTER_DEADLINE)
            .await;
    }
    stop.store(true, Ordering::Release);
    for worker in workers {
        worker.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 600, "{} acknowledged", acked.len());
    assert_stored(&acked, &stored(&cluster, 0, "MARKET_DATA").await);
}

/// Two of three nodes down: the stream has no quorum. Publishes through the survivor answer
/// a retryable error within the request timeout, never a 200; once the nodes are back,
/// publishing works again without restarting the survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_quorum_answers_retryable_errors_and_recovers() {
    let mut cluster = ClusterBuilder::new(3)
        .set("service.request_timeout", json!("3s"))
        .start()
        .await;
    let survivor = 0;
    let body = |i: u64| json!({ "subject": "trade.binance.spot.Q", "message": { "i": i }, "msg_id": format!("q-{i}") });
    let (status, reply) = cluster
        .node(survivor)
        .post("/api/v1/broker/publish", &body(0))
        .await;
    assert_eq!(status, 200, "{reply}");
    cluster.kill(1);
    cluster.kill(2);
    for i in 1..=3 {
        let started = Instant::now();
        let (status, reply) = cluster
            .node(survivor)
            .post("/api/v1/broker/publish", &body(i))
            .await;
        let took = started.elapsed();
        assert_eq!(status, 503, "no quorum, no 200: {reply}");
        assert!(
            matches!(
                reply["error_code"].as_str(),
                Some("STREAM_UNAVAILABLE" | "NATS_CONNECTION_ERROR")
            ),
            "{reply}"
        );
        assert!(
            took < Duration::from_secs(5),
            "answered within the request timeout: {took:?}"
        );
    }
    // Health says what is wrong.
    let (status, health) = cluster.node(survivor).get("/api/v1/broker/health").await;
    assert_eq!(status, 503, "{health}");
    cluster.restart_listening(1).await;
    cluster.restart_listening(2).await;
    let reply = wait_for("publishing works again", CLUSTER_DEADLINE, || async {
        let (status, reply) = cluster
            .node(survivor)
            .post("/api/v1/broker/publish", &body(4))
            .await;
        (status == 200).then_some(reply)
    })
    .await;
    assert_eq!(reply["data"]["jetstream"], true, "{reply}");
    cluster.wait_all_ready(CLUSTER_DEADLINE).await;
}
