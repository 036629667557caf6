//! REST publishing against a real service and nats-server: one path for single and batch
//! publishes (same bytes), a 200 only with a stream's ack for every subject a stream is meant
//! to capture, retryable 503s when the stream does not answer, 507 when it has no room, and
//! configured streams deleted behind the broker's back re-created.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Status, `Retry-After` and JSON body of a raw POST.
async fn post_raw(service: &Service, path: &str, body: &str) -> (u16, Option<String>, Value) {
    let r = service
        .http
        .post(service.url(path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry_after, r.json().await.unwrap_or(Value::Null))
}

fn jetstream(client: async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(client)
}

#[tokio::test]
async fn single_and_batch_publishes_send_the_same_bytes() {
    let service = ServiceBuilder::new().start().await;
    let client = service.nats_client().await;
    let mut sub = client.subscribe("ticks.>").await.unwrap();
    server_sync(&client).await;
    let message = r#"{"b": 1, "a": 2.50, "s": "x  y"}"#;
    let entry = format!(r#"{{"subject":"ticks.one","message":{message},"headers":{{"H":"v"}}}}"#);
    let (status, _, body) = post_raw(&service, "/api/v1/broker/publish", &entry).await;
    assert_eq!(status, 200, "{body}");
    let batch = format!(
        r#"{{"messages":[{}]}}"#,
        entry.replace("ticks.one", "ticks.two")
    );
    let (status, _, body) = post_raw(&service, "/api/v1/broker/publish/batch", &batch).await;
    assert_eq!(status, 200, "{body}");
    let got = collect(&mut sub, 2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2);
    for msg in &got {
        assert_eq!(&msg.payload[..], br#"{"b":1,"a":2.50,"s":"x  y"}"#);
        assert_eq!(
            msg.headers.as_ref().unwrap().get("H").unwrap().as_str(),
            "v"
        );
    }
    // Stored bytes are the same too.
    let stored = r#"{"subject":"trade.a.b.c","message":{"p": 1.10}}"#;
    let (_, _, one) = post_raw(&service, "/api/v1/broker/publish", stored).await;
    let (_, _, many) = post_raw(
        &service,
        "/api/v1/broker/publish/batch",
        &format!("[{stored}]"),
    )
    .await;
    let stream = jetstream(client).get_stream("MARKET_DATA").await.unwrap();
    for seq in [
        one["data"]["sequence"].as_u64().unwrap(),
        many["data"]["results"][0]["sequence"].as_u64().unwrap(),
    ] {
        let msg = stream.get_raw_message(seq).await.unwrap();
        assert_eq!(&msg.payload[..], br#"{"p":1.10}"#);
    }
}

#[tokio::test]
async fn the_answer_carries_the_fields_of_the_python_service() {
    let service = ServiceBuilder::new().start().await;
    let (status, _, body) = post_raw(
        &service,
        "/api/v1/broker/publish",
        r#"{"subject":"trade.binance.spot.BTC-USDT","message":{"price":"1"}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["stream"], "MARKET_DATA");
    assert_eq!(data["message_id"], data["sequence"]);
    assert_eq!(data["message_size"], 13);
    let at = data["published_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    let (_, _, core) = post_raw(
        &service,
        "/api/v1/broker/publish",
        r#"{"subject":"core.x","message":"abc"}"#,
    )
    .await;
    assert_eq!(core["data"]["jetstream"], false);
    assert_eq!(core["data"]["message_id"], Value::Null);
    assert_eq!(core["data"]["message_size"], 3);
}

#[tokio::test]
async fn persist_true_never_falls_back_to_core_nats() {
    let service = ServiceBuilder::new().start().await;
    let client = service.nats_client().await;
    let mut sub = client.subscribe("core.>").await.unwrap();
    server_sync(&client).await;
    let (status, _, body) = post_raw(
        &service,
        "/api/v1/broker/publish",
        r#"{"subject":"core.x","message":1,"persist":true}"#,
    )
    .await;
    let message = assert_error(status, &body, 404, "STREAM_NOT_FOUND");
    assert!(message.contains("core.x"), "{message}");
    assert!(
        drain(&mut sub, Duration::from_millis(300)).await.is_empty(),
        "nothing was sent"
    );
    let (status, _, body) = post_raw(
        &service,
        "/api/v1/broker/publish",
        r#"{"subject":"trade.a.b.c","message":1,"persist":true}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["jetstream"], true);
    // In a batch, per entry.
    let (status, _, body) = post_raw(
        &service,
        "/api/v1/broker/publish/batch",
        r#"[{"subject":"core.y","message":1,"persist":true},{"subject":"core.z","message":1}]"#,
    )
    .await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["data"]["results"][0]["error_code"], "STREAM_NOT_FOUND");
    assert_eq!(body["data"]["results"][1]["jetstream"], false);
}

#[tokio::test]
async fn a_configured_stream_deleted_behind_our_back_is_recreated_and_never_answered_from_core() {
    let service = ServiceBuilder::new().start().await;
    let js = jetstream(service.nats_client().await);
    js.delete_stream("MARKET_DATA").await.unwrap();
    // Publishing right away: every answer is the new stream's ack or a retryable error.
    let mut acked = Vec::new();
    for i in 0..40 {
        let entry =
            format!(r#"{{"subject":"trade.x.spot.S","message":{{"i":{i}}},"msg_id":"m-{i}"}}"#);
        let (status, retry_after, body) =
            post_raw(&service, "/api/v1/broker/publish", &entry).await;
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
    let js = jetstream(service.nats_client().await);
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
    let (_, _, body) = post_raw(
        &service,
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
    jetstream(client.clone())
        .delete_stream("TEMP")
        .await
        .unwrap();
    // A core subscriber on its subjects makes the first publishes time out (2 s) rather
    // than meet no responders; once the stream is known missing the answer comes at once.
    let publish = || async {
        let started = std::time::Instant::now();
        let (status, retry_after, body) = post_raw(
            &service,
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
    let (status, _, body) = post_raw(
        &service,
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
    let (status, _, body) = post_raw(
        &service,
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
        let (status, _, body) = post_raw(
            &service,
            "/api/v1/broker/publish",
            &format!(r#"{{"subject":"full.a","message":{i}}}"#),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let started = std::time::Instant::now();
    let (status, retry_after, body) = post_raw(
        &service,
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
    let stream = jetstream(service.nats_client().await)
        .get_stream("FULL")
        .await
        .unwrap();
    stream.purge().await.unwrap();
    service.wait_ready(Duration::from_secs(15)).await;
    let (status, _, body) = post_raw(
        &service,
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
        let (status, _, body) = post_raw(
            &service,
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
    jetstream(service.nats_client().await)
        .get_stream("MARKET_DATA")
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
    service.wait_ready(Duration::from_secs(20)).await;
}

#[tokio::test]
async fn messages_to_subjects_no_stream_captures_still_go_out_on_core_nats() {
    let service = ServiceBuilder::new().start().await;
    let client = service.nats_client().await;
    let mut sub = client.subscribe("plain.>").await.unwrap();
    server_sync(&client).await;
    let (status, _, body) = post_raw(
        &service,
        "/api/v1/broker/publish",
        r#"{"subject":"plain.a","message":"hi"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["jetstream"], false);
    let got = collect(&mut sub, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "the core message arrives");
    assert_eq!(&got[0].payload[..], b"hi");
}
