//! Fault tests: the situations of the reliability campaign, reproduced on real nats-servers
//! and the real binary, each bounded in time, asserting the fixed behaviour.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/metrics.rs"]
mod exposition;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::json;

/// SIGTERM under 32 concurrent publishers: every request that reached the service gets an
/// answer (200, or 503 while it drains); none meets a connection closed without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_request_it_accepted() {
    let mut service = ServiceBuilder::new().start().await;
    let url = service.url("/api/v1/broker/publish");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused, dropped) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut tasks = Vec::new();
    for worker in 0..32 {
        let (url, stop, ok, refused, dropped) = (
            url.clone(),
            stop.clone(),
            ok.clone(),
            refused.clone(),
            dropped.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) && i < 100_000 {
                i += 1;
                let body = json!({
                    "subject": format!("trade.t.spot.W{worker}"),
                    "message": { "i": i },
                    "msg_id": format!("{worker}-{i}"),
                });
                match http
                    .post(&url)
                    .json(&body)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    // Draining: a well-behaved client (or load balancer) stops here.
                    Ok(r) if r.status() == 503 => {
                        assert!(r.headers().contains_key("retry-after"));
                        let body: serde_json::Value = r.json().await.unwrap();
                        assert!(
                            body["message"].as_str().unwrap().contains("shutting down"),
                            "{body}"
                        );
                        refused.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    // The listener is closed: the request never reached the service.
                    Err(e) if e.is_connect() => break,
                    Err(e) => {
                        eprintln!("request without an answer: {e:?}");
                        dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }));
    }
    wait_for("traffic", Duration::from_secs(20), || async {
        (ok.load(Ordering::Relaxed) >= 500).then_some(())
    })
    .await;
    service.signal(Signal::SIGTERM);
    // Waiting blocks this thread: the clients keep running on the other one.
    let status = tokio::task::block_in_place(|| service.wait_exit(Duration::from_secs(15)))
        .expect("exits after SIGTERM");
    stop.store(true, Ordering::Release);
    for task in tasks {
        task.await.unwrap();
    }
    assert!(status.success(), "{status:?}");
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        0,
        "requests left without an answer (ok {}, refused {}); log:\n{}",
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        service.log()
    );
    assert!(service.log().contains("shutting down"));
}

// ---------------------------------------------------------------------------------------
// Streams: a 200 only with an ack (a configured stream deleted behind our back is noticed
// and re-created), and storage exhaustion answered at once with its own code and shown in
// health (items 2, 4 and 5).

#[tokio::test]
async fn a_configured_stream_deleted_behind_our_back_is_recreated_and_never_answered_from_core() {
    let service = ServiceBuilder::new().start().await;
    let js = js(service.nats_client().await);
    js.delete_stream("MARKET_DATA").await.unwrap();
    // Publishing right away: every answer is the new stream's ack or a retryable error.
    let mut acked = Vec::new();
    for i in 0..40 {
        let entry =
            format!(r#"{{"subject":"trade.x.spot.S","message":{{"i":{i}}},"msg_id":"m-{i}"}}"#);
        let (status, retry_after, body) = service.post_text("/api/v1/broker/publish", &entry).await;
        match status {
            200 => {
                assert_eq!(body["data"]["jetstream"], true, "{body}");
                assert_eq!(body["data"]["stream"], "MARKET_DATA");
                acked.push(body["data"]["sequence"].as_u64().unwrap());
            }
            503 => {
                assert_eq!(body["error_code"], "STREAM_UNAVAILABLE", "{body}");
                assert!(retry_after.is_some());
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(!acked.is_empty(), "the stream came back");
    let stream = js.get_stream("MARKET_DATA").await.unwrap();
    for seq in &acked {
        stream.get_raw_message(*seq).await.unwrap();
    }
    service.wait_ready(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_configured_stream_that_cannot_come_back_keeps_ready_failing() {
    let service = ServiceBuilder::new()
        .set("streams.CUSTOM", json!({ "subjects": ["custom.>"] }))
        .start()
        .await;
    let js = js(service.nats_client().await);
    js.delete_stream("CUSTOM").await.unwrap();
    // Someone else takes the subjects, so the stream cannot be re-created.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "THIEF".into(),
        subjects: vec!["custom.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let body = wait_for("ready names CUSTOM", Duration::from_secs(15), || async {
        let (status, body) = service.get("/ready").await;
        (status == 503 && body["data"]["components"]["stream:CUSTOM"].is_string()).then_some(body)
    })
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("CUSTOM"),
        "{body}"
    );
    js.delete_stream("THIEF").await.unwrap();
    service.wait_ready(Duration::from_secs(15)).await;
    let (_, _, body) = service
        .post_text(
            "/api/v1/broker/publish",
            r#"{"subject":"custom.a","message":1}"#,
        )
        .await;
    assert_eq!(body["data"]["stream"], "CUSTOM", "{body}");
}

#[tokio::test]
async fn a_known_stream_gone_answers_503_until_deleted_through_the_api() {
    let service = ServiceBuilder::new()
        .set("service.request_timeout", json!("2s"))
        .start()
        .await;
    let (status, body) = service
        .post(
            "/api/v1/broker/streams",
            &json!({ "name": "TEMP", "subjects": ["temp.>"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let client = service.nats_client().await;
    let mut sub = client.subscribe("temp.>").await.unwrap();
    server_sync(&client).await;
    js(client.clone()).delete_stream("TEMP").await.unwrap();
    // A core subscriber on its subjects makes the first publishes time out (2 s) rather
    // than meet no responders; once the stream is known missing the answer comes at once.
    let publish = || async {
        let started = std::time::Instant::now();
        let (status, retry_after, body) = service
            .post_text(
                "/api/v1/broker/publish",
                r#"{"subject":"temp.a","message":1,"msg_id":"x"}"#,
            )
            .await;
        let message = assert_error(status, &body, 503, "STREAM_UNAVAILABLE");
        assert!(message.contains("TEMP"), "{message}");
        assert_eq!(retry_after.as_deref(), Some("1"));
        (message, started.elapsed())
    };
    wait_for(
        "the stream known missing",
        Duration::from_secs(20),
        || async {
            let (message, _) = publish().await;
            message.contains("does not exist").then_some(())
        },
    )
    .await;
    let (message, took) = publish().await;
    assert!(message.contains("does not exist"), "{message}");
    assert!(took < Duration::from_secs(1), "answered at once: {took:?}");
    // Nothing went out as a plain core message in the meantime: what the subscriber saw were
    // JetStream publishes (they carry the ack inbox as reply subject) nobody stored.
    let seen = drain(&mut sub, Duration::from_millis(300)).await;
    assert!(seen.iter().all(|m| m.reply.is_some()), "{seen:?}");
    // A batch answers per entry, retryable.
    let (status, _, body) = service
        .post_text(
            "/api/v1/broker/publish/batch",
            r#"[{"subject":"temp.b","message":1}]"#,
        )
        .await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(
        body["data"]["results"][0]["error_code"],
        "STREAM_UNAVAILABLE"
    );
    assert_eq!(body["data"]["results"][0]["retryable"], true);
    // Deleting it through the API forgets it: its subjects are core NATS again.
    let (status, body) = service.delete("/api/v1/broker/streams/TEMP").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["forgotten"], true);
    let (status, _, body) = service
        .post_text(
            "/api/v1/broker/publish",
            r#"{"subject":"temp.c","message":1}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["jetstream"], false);
    let got = collect(&mut sub, 1, Duration::from_secs(5)).await;
    assert!(got[0].reply.is_none(), "a plain core message");
}

#[tokio::test]
async fn a_full_stream_answers_507_at_once_and_ready_names_it_until_room_comes_back() {
    let service = ServiceBuilder::new()
        .set(
            "streams.FULL",
            json!({ "subjects": ["full.>"], "max_msgs": 3, "discard": "new" }),
        )
        .start()
        .await;
    for i in 0..3 {
        let (status, _, body) = service
            .post_text(
                "/api/v1/broker/publish",
                &format!(r#"{{"subject":"full.a","message":{i}}}"#),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let started = std::time::Instant::now();
    let (status, retry_after, body) = service
        .post_text(
            "/api/v1/broker/publish",
            r#"{"subject":"full.a","message":4}"#,
        )
        .await;
    let message = assert_error(status, &body, 507, "STORAGE_FULL");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once"
    );
    assert!(
        message.contains("FULL") && message.contains("maximum messages"),
        "{message}"
    );
    assert!(retry_after.is_some());
    let (status, body) = service.get("/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["data"]["components"]["stream:FULL"].is_string(),
        "{body}"
    );
    let (status, body) = service.get("/api/v1/broker/health").await;
    assert_eq!(status, 503, "{body}");
    // Room comes back: the check sees it.
    let stream = js(service.nats_client().await)
        .get_stream("FULL")
        .await
        .unwrap();
    stream.purge().await.unwrap();
    service.wait_ready(Duration::from_secs(15)).await;
    let (status, _, body) = service
        .post_text(
            "/api/v1/broker/publish",
            r#"{"subject":"full.a","message":5}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_servers_storage_limit_answers_507_and_shows_in_health() {
    let service = ServiceBuilder::new()
        .set("nats.jetstream.max_storage", json!("256KB"))
        .start()
        .await;
    let payload = "x".repeat(4000);
    let mut full = None;
    for i in 0..200 {
        let (status, _, body) = service
            .post_text(
                "/api/v1/broker/publish",
                &format!(r#"{{"subject":"trade.a.b.c","message":"{payload}","msg_id":"{i}"}}"#),
            )
            .await;
        if status != 200 {
            full = Some((status, body));
            break;
        }
    }
    let (status, body) = full.expect("the store filled up");
    let message = assert_error(status, &body, 507, "STORAGE_FULL");
    assert!(message.contains("MARKET_DATA"), "{message}");
    let body = wait_for(
        "ready names MARKET_DATA",
        Duration::from_secs(15),
        || async {
            let (status, body) = service.get("/ready").await;
            (status == 503 && body["data"]["components"]["stream:MARKET_DATA"].is_string())
                .then_some(body)
        },
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("MARKET_DATA"));
    js(service.nats_client().await)
        .get_stream("MARKET_DATA")
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
    service.wait_ready(Duration::from_secs(20)).await;
}

// ---------------------------------------------------------------------------------------
// The router: JetStream sources never skip a stored message, transient output failures are
// retried without spending max_deliver, dead letters are stored, reloads make before they
// break, and a route task that dies is restarted.

const WAIT: Duration = Duration::from_secs(30);

/// A JetStream-sourced route from `IN` (`in.>`) to `OUT` (`out.>`), de-duplicated by `i`.
const JS_ROUTE: &str = r#"
routes:
  - name: js-copy
    from: "in.{x}"
    source:
      jetstream: { stream: IN, durable: js-copy, ack_wait: 5s }
    to:
      - subject: "out.{x}"
        jetstream: true
        msg_id: "{$.i}"
"#;

fn js(client: async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(client)
}

/// Publishes `{"i": n}` for `range` into `subject` through JetStream, each acked; retries
/// while the server is away (a restart), reconnecting when needed.
async fn publish_acked(service: &Service, subject: &str, range: std::ops::Range<u64>) {
    let mut client = service.nats_client().await;
    let mut context = js(client.clone());
    for i in range {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "publishing {i} stalled"
            );
            let body = json!({ "i": i }).to_string();
            let acked = match context.publish(subject.to_string(), body.into()).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            if acked {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            if client.connection_state() != async_nats::connection::State::Connected {
                if let Ok(c) = async_nats::connect(service.nats_url()).await {
                    client = c;
                    context = js(client.clone());
                }
            }
        }
    }
}

/// The distinct `i` values stored in `stream`.
async fn stored_ids(service: &Service, stream: &str) -> std::collections::BTreeSet<u64> {
    let context = js(service.nats_client().await);
    let mut stream = context.get_stream(stream).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut seen = std::collections::BTreeSet::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            seen.insert(v["i"].as_u64().unwrap());
        }
    }
    seen
}

async fn wait_stored(service: &Service, stream: &str, n: u64) {
    let context = js(service.nats_client().await);
    wait_for(&format!("{n} messages in {stream}"), WAIT, || async {
        let mut s = context.get_stream(stream).await.ok()?;
        (s.info().await.ok()?.state.messages >= n).then_some(())
    })
    .await;
}

fn assert_all(seen: &std::collections::BTreeSet<u64>, n: u64) {
    let expected: std::collections::BTreeSet<u64> = (0..n).collect();
    let missing: Vec<_> = expected.difference(seen).collect();
    assert!(missing.is_empty(), "{} missing: {missing:?}", missing.len());
}

async fn route_counter(service: &Service, route: &str, counter: &str) -> u64 {
    let (_, body) = service.get(&format!("/api/v1/routes/{route}")).await;
    body["data"]["counters"][counter].as_u64().unwrap_or(0)
}

/// Item 1: the durable consumer deleted through the JetStream API in the middle of the
/// traffic is re-created where the route stood: every stored input reaches the output.
#[tokio::test]
async fn a_deleted_consumer_is_recreated_where_the_route_stood() {
    let service = ServiceBuilder::new()
        .set("streams.IN", json!({ "subjects": ["in.>"] }))
        .set("streams.OUT", json!({ "subjects": ["out.>"] }))
        .route_file("js.yaml", JS_ROUTE)
        .start()
        .await;
    const N: u64 = 2000;
    publish_acked(&service, "in.a", 0..N / 2).await;
    let context = js(service.nats_client().await);
    context
        .get_stream("IN")
        .await
        .unwrap()
        .delete_consumer("js-copy")
        .await
        .unwrap();
    publish_acked(&service, "in.a", N / 2..N).await;
    wait_stored(&service, "OUT", N).await;
    assert_all(&stored_ids(&service, "OUT").await, N);
}

/// Item 1: a memory-stored input stream and its consumer vanish with a killed nats-server;
/// the route counts as live only once its consumer exists again, and every message acked
/// into the re-created stream reaches the output.
#[tokio::test]
async fn a_memory_input_stream_lost_with_the_server_loses_nothing_after_the_restart() {
    let service = ServiceBuilder::new()
        .set(
            "streams.IN",
            json!({ "subjects": ["in.>"], "storage": "memory" }),
        )
        .set("streams.OUT", json!({ "subjects": ["out.>"] }))
        .route_file("js.yaml", JS_ROUTE)
        .start()
        .await;
    publish_acked(&service, "in.a", 0..500).await;
    wait_stored(&service, "OUT", 500).await;
    let pid = service.nats_pid().await.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    wait_for("a new child", WAIT, || async {
        service.nats_pid().await.filter(|p| *p != pid)
    })
    .await;
    // The moment /ready says 200 again, the route's consumer exists.
    service.wait_ready(WAIT).await;
    let context = js(service.nats_client().await);
    let stream = context.get_stream("IN").await.unwrap();
    stream
        .consumer_info("js-copy")
        .await
        .expect("ready only once the route consumes again");
    // Messages acked into the new (empty) memory stream all come out.
    publish_acked(&service, "in.a", 500..2000).await;
    wait_stored(&service, "OUT", 2000).await;
    assert_all(&stored_ids(&service, "OUT").await, 2000);
}

/// Item 3: while the output stream has no room, the route keeps its messages and sends them
/// again (no dead letter, no redelivery spent); once room comes back every one arrives.
#[tokio::test]
async fn an_output_without_room_is_retried_not_dead_lettered() {
    let service = ServiceBuilder::new()
        .set("streams.IN", json!({ "subjects": ["in.>"] }))
        .set(
            "streams.OUT",
            json!({ "subjects": ["out.>"], "max_msgs": 50, "discard": "new" }),
        )
        .route_file("js.yaml", JS_ROUTE)
        .start()
        .await;
    publish_acked(&service, "in.a", 0..100).await;
    wait_stored(&service, "OUT", 50).await;
    wait_for("retries", WAIT, || async {
        (route_counter(&service, "js-copy", "retried").await >= 3).then_some(())
    })
    .await;
    let context = js(service.nats_client().await);
    let mut dead = context.get_stream("DEAD_LETTERS").await.unwrap();
    assert_eq!(
        dead.info().await.unwrap().state.messages,
        0,
        "nothing dead-lettered"
    );
    // The output's stream shows as refusing writes meanwhile.
    let (status, body) = service.get("/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["data"]["components"]["stream:OUT"].is_string(),
        "{body}"
    );
    let first: std::collections::BTreeSet<u64> = stored_ids(&service, "OUT").await;
    context
        .get_stream("OUT")
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
    wait_for("the rest stored", WAIT, || async {
        let rest = stored_ids(&service, "OUT").await;
        (first.len() + rest.len() >= 100).then_some(())
    })
    .await;
    let mut all = first;
    all.extend(stored_ids(&service, "OUT").await);
    assert_all(&all, 100);
    // No delivery was spent on the retries.
    let info = context
        .get_stream("IN")
        .await
        .unwrap()
        .consumer_info("js-copy")
        .await
        .unwrap();
    assert_eq!(info.num_redelivered, 0, "{info:?}");
    wait_for("consumer drained", WAIT, || async {
        let info = context
            .get_stream("IN")
            .await
            .ok()?
            .consumer_info("js-copy")
            .await
            .ok()?;
        (info.num_ack_pending == 0).then_some(())
    })
    .await;
    assert_eq!(dead.info().await.unwrap().state.messages, 0);
    service.wait_ready(WAIT).await;
}

/// Item 3: an output that can never be published (larger than its stream's max_msg_size)
/// is dead-lettered into DEAD_LETTERS, stored, with the error said once; the input is
/// terminated only after that.
#[tokio::test]
async fn an_output_that_can_never_succeed_is_dead_lettered_and_stored() {
    let service = ServiceBuilder::new()
        .set("streams.IN", json!({ "subjects": ["in.>"] }))
        .set(
            "streams.OUT",
            json!({ "subjects": ["out.>"], "max_msg_size": 8 }),
        )
        .route_file("js.yaml", JS_ROUTE)
        .start()
        .await;
    publish_acked(&service, "in.a", 0..3).await;
    wait_stored(&service, "DEAD_LETTERS", 3).await;
    let context = js(service.nats_client().await);
    let dead = context.get_stream("DEAD_LETTERS").await.unwrap();
    let letter = dead.get_raw_message(1).await.unwrap();
    let headers = letter.headers;
    assert_eq!(headers.get("Prism-Route").unwrap().as_str(), "js-copy");
    assert_eq!(
        headers.get("Prism-Original-Subject").unwrap().as_str(),
        "in.a"
    );
    let error = headers.get("Prism-Error").unwrap().as_str().to_string();
    assert!(error.contains("too large"), "{error}");
    assert_eq!(
        error.matches("failed").count(),
        1,
        "the error is said once: {error}"
    );
    assert_eq!(letter.subject.as_str(), "deadletter.js-copy");
    wait_for("inputs terminated", WAIT, || async {
        let info = context
            .get_stream("IN")
            .await
            .ok()?
            .consumer_info("js-copy")
            .await
            .ok()?;
        (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
    })
    .await;
    assert_eq!(route_counter(&service, "js-copy", "dead_lettered").await, 3);
}

const CORE_V1: &str = r#"
routes:
  - name: switch
    from: "mb.{n}"
    to:
      - subject: "mbout.{n}"
"#;

/// Item 8: reloads that change a core route's source (here its queue group) under steady
/// traffic lose nothing: the new subscription is live before the old one goes.
#[tokio::test]
async fn reloads_that_change_a_core_source_lose_nothing() {
    let service = ServiceBuilder::new()
        .route_file("core.yaml", CORE_V1)
        .start()
        .await;
    let client = service.nats_client().await;
    let mut sub = client.subscribe("mbout.>").await.unwrap();
    server_sync(&client).await;
    let sender = client.clone();
    const N: u64 = 3000;
    let traffic = tokio::spawn(async move {
        // About 1,500 messages a second for two seconds.
        for i in 0..N {
            sender
                .publish(format!("mb.{i}"), json!({ "i": i }).to_string().into())
                .await
                .unwrap();
            if i % 15 == 14 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        sender.flush().await.unwrap();
    });
    for round in 0..5 {
        let text = CORE_V1.replace(
            "    to:",
            &format!("    source: {{ core: {{ queue_group: group-{round} }} }}\n    to:"),
        );
        std::fs::write(service.builder.routes_dir().join("core.yaml"), text).unwrap();
        let (status, body) = service.post("/api/v1/routes/reload", &json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["started"], json!(["switch"]), "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    traffic.await.unwrap();
    let got = collect(&mut sub, N as usize, WAIT).await;
    let mut seen = std::collections::BTreeSet::new();
    for m in &got {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        seen.insert(v["i"].as_u64().unwrap());
    }
    // Duplicates around a switch are allowed (and counted); losses are not.
    let extra = drain(&mut sub, Duration::from_millis(500)).await;
    for m in &extra {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        seen.insert(v["i"].as_u64().unwrap());
    }
    assert_all(&seen, N);
}

/// A route task that dies (a panic, injected in debug builds) is started again and keeps
/// routing; the other routes never stop; the restart is counted.
#[tokio::test]
async fn a_route_task_that_panics_is_restarted_and_other_routes_keep_routing() {
    let service = ServiceBuilder::new()
        .env("PRISM_FAULT_PANIC_SUBJECT", "boom.now")
        .route_file(
            "two.yaml",
            r#"
routes:
  - name: fragile
    from: "boom.{x}"
    to: [{ subject: "boom-out.{x}" }]
  - name: steady
    from: "calm.{x}"
    to: [{ subject: "calm-out.{x}" }]
"#,
        )
        .start()
        .await;
    let client = service.nats_client().await;
    let mut out = client.subscribe("boom-out.>").await.unwrap();
    let mut calm = client.subscribe("calm-out.>").await.unwrap();
    server_sync(&client).await;
    client.publish("boom.now", "{}".into()).await.unwrap();
    client.publish("calm.a", "{}".into()).await.unwrap();
    assert_eq!(collect(&mut calm, 1, WAIT).await.len(), 1);
    let metrics = wait_for("restart counted", WAIT, || async {
        let text = service
            .http
            .get(service.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .any(|l| l.starts_with("prism_route_task_restarts_total{route=\"fragile\"} 1"))
            .then_some(text)
    })
    .await;
    assert!(metrics.contains("prism_route_task_restarts_total"));
    assert!(service.log().contains("panicked"));
    service.wait_ready(WAIT).await;
    // The restarted task routes again.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "fragile never routed again"
        );
        client.publish("boom.later", "{}".into()).await.unwrap();
        if !collect(&mut out, 1, Duration::from_millis(300))
            .await
            .is_empty()
        {
            break;
        }
    }
}

/// Item 9: ports are never raced for. Eight services start at once, every port left to the
/// OS or nats-server (0) and read back: all become ready, on distinct ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_started_together_never_race_for_a_port() {
    let starts = (0..8).map(|_| ServiceBuilder::new().start());
    let services = futures::future::join_all(starts).await;
    let mut ports = std::collections::BTreeSet::new();
    for service in &services {
        for port in [
            service.api_port(),
            service.nats_port(),
            service.nats_http_port(),
        ] {
            assert!(ports.insert(port), "port {port} handed out twice");
        }
        let (status, body) = service.get("/ready").await;
        assert_eq!(status, 200, "{body}");
    }
}

/// The supervised child's pid once `/api/v1/nats/info` reports it running with a pid other
/// than `old`.
async fn new_child(service: &Service, old: u32) -> Option<u32> {
    let (_, info) = service.get("/api/v1/nats/info").await;
    let pid = info["data"]["pid"].as_u64()? as u32;
    (info["data"]["status"] == "running" && pid != old).then_some(pid)
}

/// A persisted REST publish answered 200 (stored), or the status of the failure.
async fn publish_stored(service: &Service, i: u64) -> Result<(), u16> {
    let r = service
        .http
        .post(service.url("/api/v1/broker/publish"))
        .json(&json!({ "subject": "trade.binance.spot.BTC-USDT", "message": { "i": i }, "persist": true }))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map_err(|_| 0u16)?;
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    if status == 200 {
        assert_eq!(body["data"]["jetstream"], true, "{body}");
        Ok(())
    } else {
        Err(status)
    }
}

/// Item 6: with the default backoff (250 ms doubling, capped at 2 s) the child is back
/// within 5 s after each of five `kill -9` in a row, the service publishes again within
/// 5 s of the first, and the loop is visible: counted, `crash_looping`, health degraded
/// naming it, the metrics.
#[tokio::test]
async fn consecutive_kills_are_each_recovered_within_5s_and_the_loop_is_reported() {
    const KILLS: usize = 5;
    let service = ServiceBuilder::new()
        .set("nats.restart", json!({}))
        .start()
        .await;
    publish_stored(&service, 0).await.unwrap();
    let mut pid = service.nats_pid().await.unwrap();
    let mut recoveries = Vec::new();
    for kill in 0..KILLS {
        let killed_at = std::time::Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        pid = wait_for("the child restarted", WAIT, || new_child(&service, pid)).await;
        let back = killed_at.elapsed();
        if kill == 0 {
            // A single crash: publishing (a stored message) works again within 5 s.
            let stored = wait_for("a stored publish", WAIT, || async {
                publish_stored(&service, 1).await.ok()
            })
            .await;
            let publishing = killed_at.elapsed();
            eprintln!("first kill: child back after {back:?}, publishing after {publishing:?}");
            assert!(publishing < Duration::from_secs(5), "{publishing:?}");
            let () = stored;
        }
        recoveries.push(back);
    }
    eprintln!("child back after each kill: {recoveries:?}");
    for (i, back) in recoveries.iter().enumerate() {
        assert!(
            *back < Duration::from_secs(5),
            "kill {i}: back after {back:?} (all: {recoveries:?})"
        );
    }
    service.wait_ready(WAIT).await;
    publish_stored(&service, 2).await.unwrap();

    let (_, info) = service.get("/api/v1/nats/info").await;
    let supervision = &info["data"]["supervision"];
    assert_eq!(info["data"]["restarts"], KILLS, "{info}");
    assert_eq!(supervision["recent_crashes"], KILLS, "{info}");
    assert_eq!(supervision["crash_looping"], true, "{info}");
    assert_eq!(supervision["hang_restarts"], 0, "{info}");
    let (status, health) = service.get("/api/v1/broker/health").await;
    assert_eq!(status, 200, "degraded, not unhealthy: {health}");
    assert_eq!(health["data"]["status"], "degraded", "{health}");
    let check = &health["data"]["checks"]["nats_server"];
    assert_eq!(check["status"], "degraded", "{health}");
    assert!(
        check["detail"]["reason"]
            .as_str()
            .unwrap()
            .starts_with(&format!("crash-looping: {KILLS} crashes")),
        "{health}"
    );
    assert!(health["message"].as_str().unwrap().contains("nats_server"));
    let metrics = exposition::scrape(&service).await;
    assert_eq!(metrics.value("prism_nats_server_crash_looping", &[]), 1.0);
    assert_eq!(
        metrics.value("prism_nats_server_recent_crashes", &[]),
        KILLS as f64
    );
    assert_eq!(
        metrics.value("prism_nats_server_restarts_total", &[]),
        KILLS as f64
    );
    assert_eq!(metrics.value("prism_nats_jetstream_answering", &[]), 1.0);
    assert!(service.log().contains("nats-server is crash-looping"));
}

/// Item 4: a child that stops answering (SIGSTOP: its JetStream hangs as with a full
/// disk) is reported by `/ready` naming jetstream, killed once silent for
/// `nats.hang_timeout` and restarted; the service publishes again and the hang restart is
/// counted and logged.
#[tokio::test]
async fn a_hung_child_is_restarted_after_the_hang_timeout_and_publishing_resumes() {
    const HANG: Duration = Duration::from_secs(5);
    let service = ServiceBuilder::new()
        .set("nats.hang_timeout", json!("5s"))
        .start()
        .await;
    publish_stored(&service, 0).await.unwrap();
    let pid = service.nats_pid().await.unwrap();
    let _resume = Resume(pid);
    let stopped_at = std::time::Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();

    // While it hangs: not ready, naming jetstream.
    let body = wait_for("/ready names jetstream", HANG, || async {
        let r = service.http.get(service.url("/ready")).send().await.ok()?;
        let body: serde_json::Value = r.json().await.ok()?;
        body["data"]["components"]["jetstream"]
            .is_string()
            .then_some(body)
    })
    .await;
    let reason = body["data"]["components"]["jetstream"].as_str().unwrap();
    assert!(reason.contains("has not answered"), "{body}");
    assert_eq!(body["error_code"], "NATS_CONNECTION_ERROR");
    let (status, health) = service.get("/api/v1/broker/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["data"]["checks"]["jetstream"]["status"], "unhealthy");

    // Killed after the hang timeout (its last answer was at most a probe before the stop),
    // and a new child started.
    let new_pid = wait_for("a new child", HANG + Duration::from_secs(10), || {
        new_child(&service, pid)
    })
    .await;
    let restarted = stopped_at.elapsed();
    eprintln!("hung child replaced after {restarted:?}");
    assert!(!pid_alive(pid), "the hung child is gone");
    assert!(
        restarted >= HANG - Duration::from_secs(1),
        "not killed before the hang timeout: {restarted:?}"
    );
    assert!(
        restarted < HANG + Duration::from_secs(8),
        "replaced within the hang timeout, a probe and a start: {restarted:?}"
    );
    assert_ne!(new_pid, pid);
    service.wait_ready(WAIT).await;
    publish_stored(&service, 1).await.unwrap();

    let (_, info) = service.get("/api/v1/nats/info").await;
    let supervision = &info["data"]["supervision"];
    assert_eq!(supervision["hang_restarts"], 1, "{info}");
    assert_eq!(supervision["recent_crashes"], 1, "{info}");
    assert_eq!(supervision["jetstream_answering"], true, "{info}");
    let metrics = exposition::scrape(&service).await;
    assert_eq!(
        metrics.value("prism_nats_server_hang_restarts_total", &[]),
        1.0
    );
    let log = service.log();
    assert!(log.contains("jetstream stopped answering"), "{log}");
    assert!(log.contains("hung nats-server killed"), "{log}");
}

/// Sends SIGCONT to a stopped process when dropped, so a failing test leaves no stopped
/// nats-server behind.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0 as i32), Signal::SIGCONT);
    }
}

/// A configured stream whose ensure failed (in a cluster: "no suitable peers for
/// placement" while it formed) and that then exists (another node created it) is ensured
/// again by the next check: its failure does not stick and readiness comes back.
#[tokio::test]
async fn a_configured_stream_that_failed_to_ensure_and_then_exists_is_ensured_again() {
    let server = NatsServer::start().await;
    let js = js(async_nats::connect(server.url()).await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "BLOCK".into(),
        subjects: vec!["late.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let service = ServiceBuilder::new()
        .set("nats.auto_start", json!(false))
        .set("nats.url", json!(server.url()))
        .set("streams.LATE", json!({ "subjects": ["late.>"] }))
        .start_listening()
        .await;
    let body = wait_for("ready names LATE", WAIT, || async {
        let (status, body) = service.get("/ready").await;
        (status == 503 && body["data"]["components"]["stream:LATE"].is_string()).then_some(body)
    })
    .await;
    assert!(
        body["data"]["components"]["stream:LATE"]
            .as_str()
            .unwrap()
            .contains("overlap"),
        "{body}"
    );
    // Someone else makes it exist: the next check ensures it and readiness comes back.
    js.delete_stream("BLOCK").await.unwrap();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "LATE".into(),
        subjects: vec!["late.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    service.wait_ready(WAIT).await;
    assert!(
        service
            .log()
            .contains("stream ensured after an earlier failure"),
        "{}",
        service.log()
    );
    let (status, body) = service
        .post(
            "/api/v1/broker/publish",
            &json!({ "subject": "late.x", "message": 1, "persist": true }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["stream"], "LATE", "{body}");
}
