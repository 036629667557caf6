//! Collector heartbeats against the real binary and a real nats-server: heartbeats on
//! `health.collector.>` show in `/api/v1/status` (`collectors`), `GET /api/v1/collectors`
//! and the metrics; a silent collector turns stale (a degraded, still 200, broker health)
//! and is forgotten after `COLLECTOR_TTL_SEC`; malformed heartbeats are counted and logged
//! once per instance; the number of collectors is bounded; the subscription survives a
//! nats-server restart.
//!
//! Heartbeats are published over the test's own connection, which is not ordered with the
//! broker's subscription: the first one is repeated until the broker shows it (as the
//! collectors repeat theirs every 10 s), later ones on the same connection arrive in order.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/metrics.rs"]
mod metrics;

use std::time::{Duration, Instant};

use common::*;
use metrics::scrape;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(20);

fn heartbeat(instance: Option<&str>, uptime: u64) -> Value {
    let mut beat = json!({
        "service": "collector",
        "hostname": "collector-host",
        "pid": 4242,
        "ts": 1_795_290_133u64,
        "uptime_sec": uptime,
        "active_managers": 5,
        "exchanges": ["binance_spot", "okx_derivatives", "deribit_derivatives"],
        "rss": 123_456_789,
    });
    if let Some(instance) = instance {
        beat["instance"] = json!(instance);
    }
    beat
}

async fn send(client: &async_nats::Client, subject: &str, payload: Vec<u8>) {
    client
        .publish(subject.to_string(), payload.into())
        .await
        .unwrap();
    client.flush().await.unwrap();
}

async fn collectors(service: &Service) -> Value {
    let (status, body) = service.get("/api/v1/collectors").await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

fn instance<'a>(data: &'a Value, name: &str) -> Option<&'a Value> {
    data["instances"]
        .as_array()?
        .iter()
        .find(|i| i["instance"] == name)
}

/// Waits until the broker reports its heartbeat subscription in effect on its connection.
async fn wait_subscribed(service: &Service) -> Value {
    wait_for("the heartbeat subscription confirmed", DEADLINE, || async {
        let data = collectors(service).await;
        (data["subscribed"] == true).then_some(data)
    })
    .await
}

/// Publishes `payload` on `subject` until the broker lists `name`; returns the listing and
/// when the last heartbeat was sent (the broker received none later).
async fn beat_until_seen(
    service: &Service,
    client: &async_nats::Client,
    subject: &str,
    name: &str,
    payload: &Value,
) -> (Value, Instant) {
    let bytes = serde_json::to_vec(payload).unwrap();
    let last_sent = std::cell::Cell::new(Instant::now());
    let data = wait_for(&format!("collector {name} listed"), DEADLINE, || async {
        last_sent.set(Instant::now());
        send(client, subject, bytes.clone()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let data = collectors(service).await;
        instance(&data, name).is_some().then_some(data)
    })
    .await;
    (data, last_sent.get())
}

#[tokio::test]
async fn heartbeats_show_in_status_collectors_and_metrics() {
    let service = ServiceBuilder::new().start().await;
    let client = service.nats_client().await;
    let named = heartbeat(Some("host-a-4242"), 120);
    beat_until_seen(
        &service,
        &client,
        "health.collector.host-a-4242",
        "host-a-4242",
        &named,
    )
    .await;
    // No `instance` field: named after the last subject token.
    let (data, _) = beat_until_seen(
        &service,
        &client,
        "health.collector.box-7",
        "box-7",
        &heartbeat(None, 30),
    )
    .await;
    assert_eq!(data["count"], 2, "{data}");
    assert_eq!(data["active"], 2, "{data}");
    assert_eq!(data["stale"], json!([]), "{data}");
    assert_eq!(data["subject"], "health.collector.>", "{data}");
    wait_subscribed(&service).await;
    assert!(
        data["heartbeats"]["accepted"].as_u64().unwrap() >= 2,
        "{data}"
    );
    assert_eq!(data["heartbeats"]["malformed"], 0, "{data}");

    let (status, body) = service.get("/api/v1/status").await;
    assert_eq!(status, 200, "{body}");
    let block = &body["data"]["collectors"];
    assert_eq!(block["count"], 2, "{body}");
    let names: Vec<&str> = block["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["box-7", "host-a-4242"], "sorted by instance");
    let a = &block["instances"][1];
    let keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = [
        "instance",
        "hostname",
        "pid",
        "last_ts",
        "age_sec",
        "uptime_sec",
        "active_managers",
        "exchanges",
        "stale",
    ];
    want.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, want, "{a}");
    assert_eq!(a["hostname"], "collector-host");
    assert_eq!(a["pid"], 4242);
    assert_eq!(a["uptime_sec"], 120);
    assert_eq!(a["active_managers"], 5);
    assert_eq!(a["exchanges"], named["exchanges"]);
    assert_eq!(a["stale"], false);
    assert!(a["age_sec"].as_u64().unwrap() < 30, "{a}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let last_ts = a["last_ts"].as_u64().unwrap();
    assert!(last_ts <= now && now - last_ts < 60, "{a}");

    let e = scrape(&service).await;
    assert_eq!(e.value("prism_collectors_active", &[]), 2.0);
    assert_eq!(e.value("prism_collectors_stale", &[]), 0.0);
    assert_eq!(e.value("marketprism_broker_collectors_active", &[]), 2.0);
    for name in ["box-7", "host-a-4242"] {
        let ours = e.value(
            "prism_collector_heartbeat_age_seconds",
            &[("collector", name)],
        );
        let theirs = e.value(
            "marketprism_broker_collector_last_heartbeat_age_seconds",
            &[("instance", name)],
        );
        assert_eq!(ours, theirs, "one gather feeds both names");
        assert!((0.0..30.0).contains(&ours), "{name}: {ours}");
    }

    let (status, health) = service.get("/api/v1/broker/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["data"]["status"], "healthy", "{health}");
    assert_eq!(
        health["data"]["checks"]["collectors"]["status"], "healthy",
        "{health}"
    );
}

#[tokio::test]
async fn a_silent_collector_turns_stale_then_is_forgotten_after_collector_ttl_sec() {
    let service = ServiceBuilder::new()
        .set(
            "collectors",
            json!({ "stale_after": "1s", "ttl": "600s", "max_instances": 16 }),
        )
        // The Python service's variable wins over the file.
        .env("COLLECTOR_TTL_SEC", "4")
        .start()
        .await;
    let client = service.nats_client().await;
    let (_, last_sent) = beat_until_seen(
        &service,
        &client,
        "health.collector.quiet-1",
        "quiet-1",
        &heartbeat(Some("quiet-1"), 1),
    )
    .await;
    let data = collectors(&service).await;
    assert_eq!(data["ttl_sec"], 4.0, "{data}");

    // Stale: health degraded (200, with the reason), the instance flagged, not active.
    let health = wait_for("a degraded health", DEADLINE, || async {
        let (status, health) = service.get("/api/v1/broker/health").await;
        (health["data"]["status"] == "degraded").then_some((status, health))
    })
    .await;
    let (status, health) = health;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "success", "{health}");
    let message = health["message"].as_str().unwrap();
    assert!(
        message.contains("stale") && message.contains("quiet-1"),
        "{message}"
    );
    assert_eq!(health["data"]["checks"]["collectors"]["status"], "degraded");
    assert_eq!(
        health["data"]["checks"]["collectors"]["detail"]["stale"],
        json!(["quiet-1"])
    );
    assert!(health["data"]["reasons"][0]
        .as_str()
        .unwrap()
        .contains("quiet-1"));
    let (_, status_body) = service.get("/api/v1/status").await;
    let quiet = &status_body["data"]["collectors"]["instances"][0];
    assert_eq!(quiet["instance"], "quiet-1");
    assert_eq!(quiet["stale"], true, "{quiet}");
    // Stale is not unready: the broker itself is fine.
    assert_eq!(service.ready_status().await, Some(200));
    let e = scrape(&service).await;
    assert_eq!(e.value("marketprism_broker_collectors_active", &[]), 0.0);
    assert_eq!(e.value("prism_collectors_stale", &[]), 1.0);

    // Forgotten after the ttl, never before it.
    wait_for("the collector forgotten", DEADLINE, || async {
        (collectors(&service).await["count"] == 0).then_some(())
    })
    .await;
    assert!(
        last_sent.elapsed() >= Duration::from_secs(4),
        "forgotten {:?} after its last heartbeat was sent",
        last_sent.elapsed()
    );
    let (_, status_body) = service.get("/api/v1/status").await;
    assert_eq!(
        status_body["data"]["collectors"],
        json!({ "count": 0, "instances": [] })
    );
    let e = scrape(&service).await;
    assert!(!e.text.contains("quiet-1"), "series removed");
    let (status, health) = service.get("/api/v1/broker/health").await;
    assert_eq!(
        (status, &health["data"]["status"]),
        (200, &json!("healthy"))
    );
    // The task forgets it (and says so) within its next second.
    wait_for("the forget logged", DEADLINE, || async {
        service.log().contains("collector forgotten").then_some(())
    })
    .await;
}

#[tokio::test]
async fn malformed_heartbeats_are_counted_and_logged_once_per_instance() {
    let service = ServiceBuilder::new().start().await;
    let client = service.nats_client().await;
    beat_until_seen(
        &service,
        &client,
        "health.collector.good-1",
        "good-1",
        &heartbeat(Some("good-1"), 1),
    )
    .await;
    for _ in 0..3 {
        send(
            &client,
            "health.collector.bad-1",
            b"not json at all".to_vec(),
        )
        .await;
    }
    for _ in 0..2 {
        send(
            &client,
            "health.collector.bad-2",
            br#"{"instance":"bad-2","pid":"four"}"#.to_vec(),
        )
        .await;
    }
    // Sent after the malformed ones on the same connection: seen means they were too.
    let last = serde_json::to_vec(&heartbeat(Some("good-1"), 99)).unwrap();
    send(&client, "health.collector.good-1", last).await;
    let data = wait_for("the last good heartbeat", DEADLINE, || async {
        let data = collectors(&service).await;
        (instance(&data, "good-1").is_some_and(|i| i["uptime_sec"] == 99)).then_some(data)
    })
    .await;
    assert_eq!(data["heartbeats"]["malformed"], 5, "{data}");
    assert_eq!(
        data["count"], 1,
        "malformed heartbeats track nothing: {data}"
    );
    let e = scrape(&service).await;
    assert_eq!(
        e.value(
            "prism_collector_heartbeats_total",
            &[("outcome", "malformed")]
        ),
        5.0
    );
    let log = service.log();
    let reports: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("malformed collector heartbeat"))
        .collect();
    assert_eq!(reports.len(), 2, "one line per instance: {reports:#?}");
    assert!(reports
        .iter()
        .any(|l| l.contains("bad-1") && l.contains("not a JSON object")));
    assert!(reports
        .iter()
        .any(|l| l.contains("bad-2") && l.contains("pid")));
    assert_eq!(service.ready_status().await, Some(200));
}

#[tokio::test]
async fn the_number_of_tracked_collectors_is_bounded_and_refusals_counted() {
    let service = ServiceBuilder::new()
        .set("collectors", json!({ "max_instances": 2 }))
        .start()
        .await;
    let client = service.nats_client().await;
    beat_until_seen(
        &service,
        &client,
        "health.collector.a",
        "a",
        &heartbeat(None, 1),
    )
    .await;
    for name in ["b", "c", "d"] {
        let payload = serde_json::to_vec(&heartbeat(None, 1)).unwrap();
        send(&client, &format!("health.collector.{name}"), payload).await;
    }
    let data = wait_for("two refusals", DEADLINE, || async {
        let data = collectors(&service).await;
        (data["heartbeats"]["rejected"] == 2).then_some(data)
    })
    .await;
    assert_eq!(data["count"], 2, "{data}");
    assert_eq!(data["max_instances"], 2, "{data}");
    assert!(instance(&data, "a").is_some() && instance(&data, "b").is_some());
    let e = scrape(&service).await;
    assert_eq!(
        e.value(
            "prism_collector_heartbeats_total",
            &[("outcome", "rejected")]
        ),
        2.0
    );
    let refusals = service
        .log()
        .lines()
        .filter(|l| l.contains("collector heartbeat refused"))
        .count();
    assert_eq!(refusals, 1, "logged once until there is room");
}

#[tokio::test]
async fn heartbeats_are_tracked_after_a_nats_server_restart() {
    let service = ServiceBuilder::new().start().await;
    let client = service.nats_client().await;
    beat_until_seen(
        &service,
        &client,
        "health.collector.before",
        "before",
        &heartbeat(None, 1),
    )
    .await;
    let pid = service.nats_pid().await.unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    wait_for("a new nats-server", DEADLINE, || async {
        service.nats_pid().await.filter(|p| *p != pid)
    })
    .await;
    service.wait_ready(DEADLINE).await;
    // The collectors reconnect on their own; so does the test's client.
    let (data, _) = beat_until_seen(
        &service,
        &client,
        "health.collector.after",
        "after",
        &heartbeat(None, 1),
    )
    .await;
    // Confirmed again on the new connection.
    wait_subscribed(&service).await;
    // What was known before the restart is still known.
    assert!(instance(&data, "before").is_some(), "{data}");
    // The client carried the subscription over the reconnection: it never ended.
    let e = scrape(&service).await;
    assert_eq!(
        e.value("prism_collector_subscription_losses_total", &[]),
        0.0
    );
}
