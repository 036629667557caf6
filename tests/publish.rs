//! REST publishing against a real service and nats-server: one path for single and batch
//! publishes (same bytes), a 200 only with a stream's ack for every subject a stream is meant
//! to capture, retryable 503s when the stream does not answer, 507 when it has no room, and
//! configured streams deleted behind the broker's back re-created.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

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
    let (status, _, body) = service.post_text("/api/v1/broker/publish", &entry).await;
    assert_eq!(status, 200, "{body}");
    let batch = format!(
        r#"{{"messages":[{}]}}"#,
        entry.replace("ticks.one", "ticks.two")
    );
    let (status, _, body) = service
        .post_text("/api/v1/broker/publish/batch", &batch)
        .await;
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
    let (_, _, one) = service.post_text("/api/v1/broker/publish", stored).await;
    let (_, _, many) = service
        .post_text("/api/v1/broker/publish/batch", &format!("[{stored}]"))
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
    let (status, _, body) = service
        .post_text(
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
    let (_, _, core) = service
        .post_text(
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
    let (status, _, body) = service
        .post_text(
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
    let (status, _, body) = service
        .post_text(
            "/api/v1/broker/publish",
            r#"{"subject":"trade.a.b.c","message":1,"persist":true}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["jetstream"], true);
    // In a batch, per entry.
    let (status, _, body) = service
        .post_text(
            "/api/v1/broker/publish/batch",
            r#"[{"subject":"core.y","message":1,"persist":true},{"subject":"core.z","message":1}]"#,
        )
        .await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["data"]["results"][0]["error_code"], "STREAM_NOT_FOUND");
    assert_eq!(body["data"]["results"][1]["jetstream"], false);
}

#[tokio::test]
async fn messages_to_subjects_no_stream_captures_still_go_out_on_core_nats() {
    let service = ServiceBuilder::new().start().await;
    let client = service.nats_client().await;
    let mut sub = client.subscribe("plain.>").await.unwrap();
    server_sync(&client).await;
    let (status, _, body) = service
        .post_text(
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
