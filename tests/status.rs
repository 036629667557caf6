//! The status endpoints and the stream listing answer from the background snapshot,
//! against the real binary and a real nats-server: changes made through the API are
//! listed by the next request, JetStream traffic shows within a bounded wait, every answer
//! dates its figures (`data.snapshot`), NATS going away is reported (never old streams as
//! live), and status requests are answered while a stream operation is stuck in the
//! stream actor.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use async_nats::jetstream;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// The snapshot is refreshed every second: a generous deadline for a busy machine.
const REFRESH_DEADLINE: Duration = Duration::from_secs(15);

fn stream<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|s| s["name"] == name)
}

/// Asserts `data.snapshot` is current and young; returns its age.
fn assert_current(data: &Value) -> u64 {
    let snapshot = &data["snapshot"];
    assert_eq!(snapshot["stale"], false, "{data}");
    assert!(snapshot["error"].is_null(), "{data}");
    assert!(
        snapshot["taken_at"].as_str().unwrap().ends_with('Z'),
        "{data}"
    );
    let age = snapshot["age_ms"].as_u64().unwrap();
    // Refreshed every second, each refresh bounded by 2 s.
    assert!(age < 5_000, "{data}");
    age
}

/// Sends SIGCONT to a stopped process when dropped, so a failing test leaves no stopped
/// nats-server behind.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGCONT);
    }
}

#[tokio::test]
async fn stream_changes_through_the_api_are_listed_by_the_next_request() {
    let service = ServiceBuilder::new().start().await;
    // Readiness means the configured streams are ensured: the listing has them already.
    let (status, list) = service.get("/api/v1/broker/streams").await;
    assert_eq!(status, 200, "{list}");
    assert_current(&list["data"]);
    for name in [
        "MARKET_DATA",
        "SYSTEM_EVENTS",
        "SERVICE_LOGS",
        "DEAD_LETTERS",
        "KLINES",
    ] {
        assert!(stream(&list["data"]["streams"], name).is_some(), "{list}");
    }
    assert_eq!(list["data"]["count"], 5);
    assert_eq!(list["data"]["truncated"], false);

    let (status, created) = service
        .post(
            "/api/v1/broker/streams",
            &json!({ "name": "ORDERS", "subjects": ["orders.>"], "max_msgs": 1000 }),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    for path in ["/api/v1/broker/streams", "/api/v1/streams"] {
        let (status, list) = service.get(path).await;
        assert_eq!(status, 200, "{list}");
        let orders = stream(&list["data"]["streams"], "ORDERS").expect("listed at once");
        assert_eq!(orders["max_msgs"], 1000, "{orders}");
        assert_eq!(orders["messages"], 0, "{orders}");
        assert_eq!(list["data"]["count"], 6);
    }
    let (_, status_body) = service.get("/api/v1/status").await;
    let d = &status_body["data"];
    assert_current(d);
    assert!(stream(&d["jetstream_streams"], "ORDERS").is_some(), "{d}");
    assert_eq!(d["nats_info"]["streams_count"], 6);
    assert_eq!(d["statistics"]["active_streams"], 6);
    let (_, broker) = service.get("/api/v1/broker/status").await;
    assert_eq!(broker["data"]["streams"]["total"], 6, "{broker}");

    let (status, updated) = service
        .put(
            "/api/v1/broker/streams/ORDERS",
            &json!({ "max_msgs": 2000 }),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    let (_, list) = service.get("/api/v1/broker/streams").await;
    let orders = stream(&list["data"]["streams"], "ORDERS").unwrap();
    assert_eq!(orders["max_msgs"], 2000, "{orders}");

    let (status, deleted) = service.delete("/api/v1/broker/streams/ORDERS").await;
    assert_eq!(status, 200, "{deleted}");
    let (_, list) = service.get("/api/v1/broker/streams").await;
    assert!(
        stream(&list["data"]["streams"], "ORDERS").is_none(),
        "{list}"
    );
    assert_eq!(list["data"]["count"], 5);
    let (_, status_body) = service.get("/api/v1/status").await;
    assert!(stream(&status_body["data"]["jetstream_streams"], "ORDERS").is_none());
}

#[tokio::test]
async fn jetstream_traffic_and_outside_changes_show_within_a_refresh() {
    let service = ServiceBuilder::new().start().await;
    // Published and created behind the service's back: only the periodic refresh sees it.
    let js = jetstream::new(service.nats_client().await);
    js.create_stream(jetstream::stream::Config {
        name: "OUTSIDE".into(),
        subjects: vec!["outside.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    const N: u64 = 25;
    for i in 0..N {
        js.publish(format!("trade.binance.spot.s{i}"), "{}".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let data = wait_for("25 messages in status", REFRESH_DEADLINE, || async {
        let (status, body) = service.get("/api/v1/status").await;
        assert_eq!(status, 200, "{body}");
        let d = body["data"].clone();
        let market = stream(&d["jetstream_streams"], "MARKET_DATA")?;
        (market["messages"] == N && stream(&d["jetstream_streams"], "OUTSIDE").is_some())
            .then_some(d)
    })
    .await;
    assert_current(&data);
    let market = stream(&data["jetstream_streams"], "MARKET_DATA").unwrap();
    assert_eq!(market["last_seq"], N);
    assert!(market["bytes"].as_u64().unwrap() > 0);
    // The server figures of the same refreshes.
    let server = &data["nats_server"]["server_info"];
    assert!(server["in_msgs"].as_u64().unwrap() >= N, "{server}");
    assert_eq!(data["nats_info"]["server_version"], server["version"]);

    let (_, list) = service.get("/api/v1/broker/streams").await;
    let market = stream(&list["data"]["streams"], "MARKET_DATA").unwrap();
    assert!(market["messages"].as_u64().unwrap() >= N, "{market}");
    let (_, info) = service.get("/api/v1/nats/info").await;
    assert_current(&info["data"]);
    assert!(info["data"]["server_info"]["in_msgs"].as_u64().unwrap() >= N);
    let (status, health) = service.get("/api/v1/broker/health").await;
    assert_eq!(status, 200, "{health}");
    assert_current(&health["data"]);
    assert_eq!(
        health["data"]["checks"]["jetstream"]["detail"]["streams"], 6,
        "{health}"
    );
    // Refreshed in the background without any change: a later answer has newer figures.
    let taken_at = info["data"]["snapshot"]["taken_at"].clone();
    wait_for("a newer snapshot", REFRESH_DEADLINE, || async {
        let (_, info) = service.get("/api/v1/nats/info").await;
        assert_current(&info["data"]);
        (info["data"]["snapshot"]["taken_at"] != taken_at).then_some(())
    })
    .await;
}

#[tokio::test]
async fn nats_down_is_reported_at_once_and_old_streams_are_never_shown() {
    let service = ServiceBuilder::new()
        .set(
            "nats.restart",
            json!({ "initial_backoff": "30s", "max_backoff": "30s" }),
        )
        .start()
        .await;
    let (_, before) = service.get("/api/v1/status").await;
    assert_current(&before["data"]);
    assert_eq!(before["data"]["statistics"]["active_streams"], 5);
    let pid = service.nats_pid().await.unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    // Both the shared client and the supervisor saw it (either may come first).
    wait_for("client sees the loss", Duration::from_secs(10), || async {
        let (status, body) = service.get("/ready").await;
        let components = &body["data"]["components"];
        (status == 503
            && components["nats_client"] == "not connected to nats"
            && components["nats_server"].is_string())
        .then_some(())
    })
    .await;

    let (status, body) = service.get("/api/v1/status").await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"];
    assert_eq!(d["status"], "degraded");
    assert_eq!(d["nats_info"]["client_connected"], false);
    assert_eq!(d["nats_server"]["status"], "down");
    assert_eq!(d["snapshot"]["stale"], true, "{d}");
    assert!(d["snapshot"]["error"].is_string(), "{d}");
    assert_eq!(
        d["jetstream_streams"],
        json!([]),
        "old streams are not shown"
    );
    assert!(d["statistics"]["active_streams"].is_null(), "{d}");
    assert_eq!(d["nats_info"]["streams_count"], 0);
    // The figures keep their time: the age grows while NATS is away.
    let taken_at = d["snapshot"]["taken_at"].clone();
    assert!(taken_at.is_string(), "{d}");
    let age = d["snapshot"]["age_ms"].as_u64().unwrap();
    wait_for("the age grows", REFRESH_DEADLINE, || async {
        let (status, body) = service.get("/api/v1/status").await;
        assert_eq!(status, 200, "{body}");
        let snapshot = &body["data"]["snapshot"];
        assert_eq!(snapshot["stale"], true, "{body}");
        assert_eq!(snapshot["taken_at"], taken_at, "{body}");
        (snapshot["age_ms"].as_u64()? > age + 1_000).then_some(())
    })
    .await;

    for path in ["/api/v1/broker/streams", "/api/v1/streams"] {
        let (status, body) = service.get(path).await;
        assert_error(status, &body, 503, "NATS_CONNECTION_ERROR");
        assert_eq!(body["data"]["snapshot"]["stale"], true, "{body}");
    }
    let (status, broker) = service.get("/api/v1/broker/status").await;
    assert_eq!(status, 200);
    assert!(broker["data"]["streams"]["total"].is_null(), "{broker}");
    assert_eq!(broker["data"]["snapshot"]["stale"], true);
    let (status, info) = service.get("/api/v1/nats/info").await;
    assert_eq!(status, 200);
    assert_eq!(info["data"]["status"], "down");
    assert_eq!(info["data"]["snapshot"]["stale"], true, "{info}");
    let (status, health) = service.get("/api/v1/broker/health").await;
    assert_error(status, &health, 503, "SERVICE_UNAVAILABLE");
    assert_eq!(
        health["data"]["checks"]["jetstream"]["status"], "unhealthy",
        "{health}"
    );
    assert_eq!(health["data"]["snapshot"]["stale"], true);
}

#[tokio::test]
async fn after_a_nats_restart_lost_streams_are_not_listed_with_old_figures() {
    let service = ServiceBuilder::new()
        .set(
            "streams.VOLATILE",
            json!({ "subjects": ["volatile.>"], "storage": "memory" }),
        )
        .start()
        .await;
    for i in 0..5 {
        let (status, body) = service
            .post(
                "/api/v1/broker/publish",
                &json!({ "subject": format!("volatile.{i}"), "message": i }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    wait_for("5 messages listed", REFRESH_DEADLINE, || async {
        let (_, list) = service.get("/api/v1/broker/streams").await;
        (stream(&list["data"]["streams"], "VOLATILE")?["messages"] == 5).then_some(())
    })
    .await;
    let pid = service.nats_pid().await.unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    wait_for("new child", Duration::from_secs(20), || async {
        service.nats_pid().await.filter(|p| *p != pid)
    })
    .await;
    // The memory stream was lost with the server and is created again at the
    // reconnection. From now on no answer may list it with the old server's 5 messages:
    // until a refresh on the new connection the figures are stale (503), then it is absent
    // (not ensured yet) or empty.
    let volatile = wait_for("VOLATILE listed again", Duration::from_secs(20), || async {
        let (status, list) = service.get("/api/v1/broker/streams").await;
        if status != 200 {
            assert_error(status, &list, 503, "NATS_CONNECTION_ERROR");
            assert_eq!(list["data"]["snapshot"]["stale"], true, "{list}");
            return None;
        }
        assert_current(&list["data"]);
        let volatile = stream(&list["data"]["streams"], "VOLATILE")?.clone();
        assert_eq!(volatile["messages"], 0, "{volatile}");
        Some(volatile)
    })
    .await;
    assert_eq!(volatile["storage"], "memory");
    let (_, status_body) = service.get("/api/v1/status").await;
    assert_current(&status_body["data"]);
    let volatile = stream(&status_body["data"]["jetstream_streams"], "VOLATILE").unwrap();
    assert_eq!(volatile["messages"], 0, "{volatile}");
    let (_, info) = service.get("/api/v1/nats/info").await;
    assert_current(&info["data"]);
    assert!(info["data"]["restarts"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn status_is_answered_while_a_stream_operation_is_stuck_in_the_actor() {
    let service = ServiceBuilder::new()
        .set("service.request_timeout", json!("60s"))
        .start()
        .await;
    let (_, before) = service.get("/api/v1/status").await;
    assert_current(&before["data"]);
    // A stopped server answers nothing: the create below waits in the stream actor (whose
    // mutations run one at a time) until the server is resumed.
    let nats_pid = service.nats_pid().await.unwrap();
    kill(Pid::from_raw(nats_pid as i32), Signal::SIGSTOP).unwrap();
    let resume = Resume(nats_pid);
    let create = {
        let (http, url) = (service.http.clone(), service.url("/api/v1/broker/streams"));
        tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({ "name": "SLOW", "subjects": ["slow.>"] }))
                .timeout(Duration::from_secs(120))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    // 200 status requests, 4 at a time: with each one queued behind the create (as it was
    // when status asked the stream actor for the list) they could not all be answered
    // before the create is.
    for _ in 0..50 {
        let answers =
            futures::future::join_all((0..4).map(|_| service.get("/api/v1/status"))).await;
        for (status, body) in answers {
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["data"]["service"], "prism-broker");
            assert!(body["data"]["snapshot"].is_object(), "{body}");
        }
        assert!(!create.is_finished(), "the create must still be in flight");
    }
    for path in ["/api/v1/broker/status", "/api/v1/nats/info"] {
        let (status, body) = service.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    assert!(!create.is_finished(), "the create must still be in flight");
    drop(resume);
    let (status, created) = tokio::time::timeout(Duration::from_secs(90), create)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{created}");
    // The server is back and the change made it into the snapshot.
    let (status, list) = wait_for("a current listing", REFRESH_DEADLINE, || async {
        let (status, list) = service.get("/api/v1/broker/streams").await;
        (status == 200).then_some((status, list))
    })
    .await;
    assert_eq!(status, 200);
    assert!(stream(&list["data"]["streams"], "SLOW").is_some(), "{list}");
}

#[tokio::test]
async fn every_snapshot_answer_has_the_documented_shape() {
    let service = ServiceBuilder::new().start().await;
    let (_, doc) = service.get("/api/v1/openapi.json").await;
    let schema = &doc["components"]["schemas"]["Snapshot"];
    let mut documented: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    documented.sort();
    for path in [
        "/api/v1/status",
        "/api/v1/broker/status",
        "/api/v1/broker/health",
        "/api/v1/nats/info",
        "/api/v1/broker/streams",
        "/api/v1/streams",
    ] {
        let (status, body) = service.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_current(&body["data"]);
        let mut keys: Vec<&String> = body["data"]["snapshot"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        keys.sort();
        assert_eq!(keys, documented, "{path}");
        let operation = &doc["paths"][path]["get"]["responses"]["200"];
        assert!(
            operation
                .to_string()
                .contains("#/components/schemas/Snapshot"),
            "{path}"
        );
    }
}
