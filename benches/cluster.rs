//! Benchmark: one node with replicas 1 against a three-node loopback cluster with replicas
//! 3, in one run: REST publish (JetStream acks) and a JetStream → JetStream route, each next
//! to a raw async-nats baseline on the same setup; then, on the cluster, the time from the
//! death of the node leading `MARKET_DATA` until a publish through another node is
//! acknowledged again.
//!
//! `cargo bench --bench cluster` (env: `BENCH_SECS` per REST phase, default 10;
//! `BENCH_CONCURRENCY`, default 32; `BENCH_JS_MSGS` through the route, default 50,000;
//! `BENCH_KILLS`, default 3). The nodes are the release `prism-broker` binary started by
//! the test harness (`tests/common/`): every port 0 and read back, temp data dirs, all on
//! 127.0.0.1, everything stopped when the run ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../tests/common/mod.rs"]
mod harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::{env_or, listing_only, raw_publishers, rest_publishers, rss_mib, Outcome, TRADE};
use harness::cluster::{Cluster, ClusterBuilder, CLUSTER_DEADLINE};
use harness::{Service, ServiceBuilder};
use serde_json::{json, Value};

const ROUTE: &str = r#"
routes:
  - name: js-copy
    from: "in.{x}"
    source:
      jetstream: { stream: IN, durable: js-copy }
    to:
      - subject: "out.{x}"
        jetstream: true
        msg_id: "{$.i}"
"#;

/// The settings both setups share: the route, its two streams, room to store the run.
fn configure(builder: ServiceBuilder) -> ServiceBuilder {
    builder
        .set("service.log_level", json!("warn"))
        .set(
            "nats.jetstream",
            json!({ "max_memory": "256MB", "max_storage": "4GB" }),
        )
        .set("streams.MARKET_DATA.max_msgs", json!(5_000_000))
        .set("streams.IN", json!({ "subjects": ["in.>"] }))
        .set("streams.OUT", json!({ "subjects": ["out.>"] }))
        .route_file("js.yaml", ROUTE)
}

struct Figures {
    raw: Outcome,
    rest: Outcome,
    raw_fill: f64,
    route: f64,
}

/// Raw JetStream publishes and REST publishes (`concurrency` each, keep-alive connections
/// spread over `nodes`), then `messages` into `IN` and timed until all are in `OUT`.
async fn measure(nodes: &[&Service], concurrency: usize, secs: Duration, messages: u64) -> Figures {
    let warmup = Duration::from_secs(2);
    let client = nodes[0].nats_client().await;
    let js = jetstream::new(client.clone());
    let raw = raw_publishers(&js, concurrency, warmup, secs).await;
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| n.url("").trim_start_matches("http://").to_string())
        .collect();
    let rest = rest_publishers(&addrs, concurrency, warmup, secs).await;
    let trade: Value = serde_json::from_str(TRADE).unwrap();

    // The route: `messages` published into IN (up to 1,024 acks pending), timed until OUT
    // holds every one; the route consumes while IN fills.
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..messages {
        let body = json!({ "i": i, "trade": trade }).to_string();
        pending.push_back(
            js.publish(format!("in.k{}", i % 16), body.into())
                .await
                .unwrap(),
        );
        if pending.len() >= 1024 {
            pending.pop_front().unwrap().await.unwrap();
        }
    }
    for ack in pending {
        ack.await.unwrap();
    }
    let filled = started.elapsed();
    let end = started + Duration::from_secs(600);
    loop {
        let info = js.get_stream("OUT").await.unwrap().cached_info().clone();
        if info.state.messages >= messages {
            break;
        }
        assert!(Instant::now() < end, "the route did not copy every message");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let copied = started.elapsed();
    Figures {
        raw,
        rest,
        raw_fill: messages as f64 / filled.as_secs_f64(),
        route: messages as f64 / copied.as_secs_f64(),
    }
}

/// Kills the node leading `MARKET_DATA` while 4 workers publish through another node;
/// returns the time from the kill until the first 200 of a request sent after it, and the
/// retryable errors answered meanwhile. The node is restarted and caught up afterwards.
async fn failover(cluster: &mut Cluster) -> (Duration, u64) {
    let leader = cluster
        .wait_stream_leader("MARKET_DATA", CLUSTER_DEADLINE)
        .await;
    let entry = cluster
        .up_nodes()
        .into_iter()
        .find(|&i| i != leader)
        .unwrap();
    let url = cluster.node(entry).url("/api/v1/broker/publish");
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let recovered: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4u64 {
        let (url, killed_at, recovered, stop) = (
            url.clone(),
            killed_at.clone(),
            recovered.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut errors = 0u64;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let sent = Instant::now();
                let body = json!({ "subject": format!("trade.bench.failover.W{w}"),
                                   "message": { "n": n }, "msg_id": format!("f-{w}-{n}") });
                let status = http
                    .post(&url)
                    .json(&body)
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                let after_kill = killed_at.lock().unwrap().is_some_and(|k| sent > k);
                match status {
                    200 if after_kill => {
                        let mut first = recovered.lock().unwrap();
                        if first.is_none() {
                            *first = Some(Instant::now());
                        }
                    }
                    200 => {}
                    _ => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            errors
        }));
    }
    // Publishing works before the kill.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.kill(leader);
    let kill = Instant::now();
    *killed_at.lock().unwrap() = Some(kill);
    let end = kill + CLUSTER_DEADLINE;
    let back = loop {
        if let Some(at) = *recovered.lock().unwrap() {
            break at;
        }
        assert!(Instant::now() < end, "publishing did not come back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let mut errors = 0;
    for worker in workers {
        errors += worker.await.unwrap();
    }
    cluster.restart(leader).await;
    cluster
        .wait_stream_current("MARKET_DATA", CLUSTER_DEADLINE)
        .await;
    (back - kill, errors)
}

fn rss_line(pids: &[u32]) -> String {
    pids.iter()
        .map(|&pid| {
            let (rss, peak) = rss_mib(pid);
            format!("{rss} MiB (peak {peak})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    if listing_only() {
        return;
    }
    let secs = Duration::from_secs(env_or("BENCH_SECS", 10));
    let concurrency = env_or("BENCH_CONCURRENCY", 32) as usize;
    let messages = env_or("BENCH_JS_MSGS", 50_000);
    let kills = env_or("BENCH_KILLS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        println!(
            "cluster benchmark: {concurrency} concurrent, {secs:?} per REST phase, {messages} messages through the route"
        );
        let single = configure(ServiceBuilder::new()).start().await;
        let one = measure(&[&single], concurrency, secs, messages).await;
        let single_rss = rss_line(&[single.pid()]);
        drop(single);

        let mut cluster = ClusterBuilder::new(3).configure(|_, b| configure(b)).start().await;
        let nodes: Vec<&Service> = (0..3).map(|i| cluster.node(i)).collect();
        let three = measure(&nodes, concurrency, secs, messages).await;
        let cluster_rss = rss_line(&(0..3).map(|i| cluster.node(i).pid()).collect::<Vec<_>>());
        let mut outages = Vec::new();
        for _ in 0..kills {
            outages.push(failover(&mut cluster).await);
        }

        println!();
        println!("| in the same run | 1 node, replicas 1 | 3 nodes, replicas 3 | 3 nodes / 1 node |");
        println!("|---|---:|---:|---:|");
        let row = |name: &str, a: f64, b: f64| {
            println!("| {name} | {a:.0} | {b:.0} | {:.2} |", b / a);
        };
        let (mut raw1, mut raw3, mut rest1, mut rest3) = (one.raw, three.raw, one.rest, three.rest);
        row("raw async-nats JetStream publish, acked/s", raw1.rate(), raw3.rate());
        row("REST POST /api/v1/broker/publish, acked/s", rest1.rate(), rest3.rate());
        row("raw JetStream publish into IN (1,024 acks pending), msgs/s", one.raw_fill, three.raw_fill);
        row("JetStream route IN → OUT (until the last is stored), msgs/s", one.route, three.route);
        println!();
        println!(
            "REST p50 / p99 ms: 1 node {:.2} / {:.2}, 3 nodes {:.2} / {:.2}; errors {} and {}",
            rest1.pct(0.5),
            rest1.pct(0.99),
            rest3.pct(0.5),
            rest3.pct(0.99),
            rest1.errors,
            rest3.errors
        );
        println!(
            "raw p50 / p99 ms: 1 node {:.2} / {:.2}, 3 nodes {:.2} / {:.2}",
            raw1.pct(0.5),
            raw1.pct(0.99),
            raw3.pct(0.5),
            raw3.pct(0.99)
        );
        println!(
            "REST / raw: 1 node {:.2}, 3 nodes {:.2}",
            rest1.rate() / raw1.rate(),
            rest3.rate() / raw3.rate()
        );
        println!("resident memory: 1 node {single_rss}; 3 nodes {cluster_rss}");
        println!();
        println!("| kill -9 of the MARKET_DATA leader's node | publishing acknowledged again after | retryable errors meanwhile (4 publishers) |");
        println!("|---|---:|---:|");
        for (i, (took, errors)) in outages.iter().enumerate() {
            println!("| {} | {:.2} s | {errors} |", i + 1, took.as_secs_f64());
        }
    });
}
