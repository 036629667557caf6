//! The REST API and the StreamActor, black-box: the real binary, a real nats-server, HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

fn stream_names(body: &Value) -> BTreeSet<String> {
    body["data"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn openapi_document_and_registered_routes_agree() {
    let service = ServiceBuilder::new().start().await;
    let (status, doc) = service.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let registered: BTreeSet<(String, String)> = prism_broker::api::registered()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unregistered: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "registered but not documented: {undocumented:?}"
    );
    assert!(
        unregistered.is_empty(),
        "documented but not registered: {unregistered:?}"
    );
    // And each one really answers (no 404/405 from the router for a registered route).
    for (method, path) in &registered {
        let path = path.replace("{name}", "MARKET_DATA");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        if method != reqwest::Method::GET {
            continue;
        }
        let (status, body) = service.send(method, &path, None, None).await;
        let unrouted =
            body["error_code"] == "NOT_FOUND" || body["error_code"] == "METHOD_NOT_ALLOWED";
        assert!(!unrouted, "{path}: {status} {body}");
    }
}

#[tokio::test]
async fn default_and_configured_streams_are_ensured_with_their_limits() {
    let service = ServiceBuilder::new()
        .set(
            "streams.CUSTOM_STREAM",
            json!({ "subjects": ["custom.>"], "max_age": 7200, "max_msgs": 500000, "storage": "memory" }),
        )
        .start()
        .await;
    let (status, body) = service.get("/api/v1/streams").await;
    assert_eq!(status, 200, "{body}");
    let names = stream_names(&body);
    for name in [
        "MARKET_DATA",
        "SYSTEM_EVENTS",
        "SERVICE_LOGS",
        "CUSTOM_STREAM",
    ] {
        assert!(names.contains(name), "{names:?}");
    }
    let (_, market) = service.get("/api/v1/broker/streams/MARKET_DATA").await;
    let m = &market["data"];
    assert_eq!(m["max_age"], 3600.0);
    assert_eq!(m["max_msgs"], 1_000_000);
    assert_eq!(m["storage"], "file");
    assert!(m["subjects"]
        .as_array()
        .unwrap()
        .contains(&json!("trade.>")));
    for field in [
        "messages",
        "bytes",
        "first_seq",
        "last_seq",
        "consumer_count",
    ] {
        assert!(m[field].is_u64(), "{field} in {m}");
    }
    // The server itself holds the right units (nanoseconds on the wire).
    let js = async_nats::jetstream::new(service.nats_client().await);
    let mut stream = js.get_stream("SYSTEM_EVENTS").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(86_400));
    assert_eq!(info.config.max_messages, 100_000);
    let mut custom = js.get_stream("CUSTOM_STREAM").await.unwrap();
    let info = custom.info().await.unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(7200));
    assert_eq!(
        info.config.storage,
        async_nats::jetstream::stream::StorageType::Memory
    );
}

#[tokio::test]
async fn a_stream_with_a_different_config_is_updated_and_a_refused_one_is_reported() {
    let nats = NatsServer::start().await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "MARKET_DATA".into(),
        subjects: vec!["market.>".into()],
        max_messages: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "SOMEONE_ELSES".into(),
        subjects: vec!["custom.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let service = ServiceBuilder::new()
        .set("nats.auto_start", json!(false))
        .set("nats.url", json!(nats.url()))
        .set("streams.CUSTOM", json!({ "subjects": ["custom.>"] }))
        .start_unready();
    // MARKET_DATA is brought in line with the config.
    wait_for("MARKET_DATA updated", Duration::from_secs(15), || async {
        let mut s = js.get_stream("MARKET_DATA").await.ok()?;
        let info = s.info().await.ok()?;
        (info.config.max_messages == 1_000_000 && info.config.subjects.len() == 9).then_some(())
    })
    .await;
    // CUSTOM overlaps a stream the server already has: refused, reported, service runs on.
    let body = wait_for(
        "ready names the refused stream",
        Duration::from_secs(15),
        || async {
            let (status, body) = service.get("/ready").await;
            (status == 503 && body["data"]["components"].get("stream:CUSTOM").is_some())
                .then_some(body)
        },
    )
    .await;
    assert_eq!(body["error_code"], "NATS_CONNECTION_ERROR");
    let (status, health) = service.get("/api/v1/broker/health").await;
    assert_eq!(status, 503);
    assert_eq!(health["error_code"], "SERVICE_UNAVAILABLE");
    let configured = health["data"]["checks"]["streams"]["detail"]["configured"]
        .as_array()
        .unwrap();
    let custom = configured.iter().find(|s| s["name"] == "CUSTOM").unwrap();
    assert_eq!(custom["ok"], false);
    assert!(!custom["error"].as_str().unwrap().is_empty());
    // Everything else still works.
    let (status, _) = service
        .post(
            "/api/v1/broker/publish",
            &json!({ "subject": "market.a.b", "message": 1 }),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn create_stream_rejects_bad_input_naming_the_field() {
    let service = ServiceBuilder::new().start().await;
    let cases = [
        (json!({ "subjects": ["a.>"] }), "name"),
        (json!({ "name": "A", "subjects": [] }), "subjects"),
        (json!({ "name": "A" }), "subjects"),
        (json!({ "name": "A", "subjects": "a.>" }), "subjects"),
        (json!({ "name": "has space", "subjects": ["a.>"] }), "name"),
        (json!({ "name": "has.dot", "subjects": ["a.>"] }), "name"),
        (json!({ "name": "wild*", "subjects": ["a.>"] }), "name"),
        (json!({ "name": "gt>", "subjects": ["a.>"] }), "name"),
        (
            json!({ "name": "A", "subjects": ["a.>"], "retention": "forever" }),
            "retention",
        ),
        (
            json!({ "name": "A", "subjects": ["a.>"], "storage": "tape" }),
            "storage",
        ),
        (
            json!({ "name": "A", "subjects": ["a.>"], "max_msgs": -5 }),
            "max_msgs",
        ),
        (
            json!({ "name": "A", "subjects": ["a.>"], "max_bytes": -1 }),
            "max_bytes",
        ),
        (json!({ "name": "A", "subjects": ["a..b"] }), "subjects[0]"),
        // The supervised server is not clustered: one replica only.
        (
            json!({ "name": "A", "subjects": ["a.>"], "replicas": 3 }),
            "replicas: 3 replicas need a cluster",
        ),
        (
            json!({ "name": "A", "subjects": ["a.>"], "replicas": 0 }),
            "replicas: must be between 1 and 5",
        ),
        (
            json!({ "name": "A", "subjects": ["a.>"], "colour": "red" }),
            "colour",
        ),
        (json!(["not", "an", "object"]), "object"),
    ];
    for (body, field) in cases {
        let (status, reply) = service.post("/api/v1/broker/streams", &body).await;
        let message = assert_error(status, &reply, 400, "INVALID_STREAM_DATA");
        assert!(message.contains(field), "{body} -> {message}");
    }
    let (status, reply) = service
        .post_raw("/api/v1/broker/streams", b"{not json".to_vec())
        .await;
    let message = assert_error(status, &reply, 400, "INVALID_STREAM_DATA");
    assert!(message.contains("JSON"), "{message}");
    // Nothing was created by any of them: only the five default streams are there.
    let (_, list) = service.get("/api/v1/broker/streams").await;
    assert_eq!(stream_names(&list).len(), 5);
}

#[tokio::test]
async fn stream_lifecycle_idempotence_conflicts_and_not_found() {
    let service = ServiceBuilder::new().start().await;
    let spec =
        json!({ "name": "ORDERS", "subjects": ["orders.>"], "max_age": "1h", "max_msgs": 1000 });
    let (status, created) = service.post("/api/v1/broker/streams", &spec).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["data"]["name"], "ORDERS");
    assert_eq!(created["data"]["max_age"], 3600.0);
    // Identical again: 200, not a conflict.
    let (status, again) = service.post("/api/v1/broker/streams", &spec).await;
    assert_eq!(status, 200, "{again}");
    assert!(again["message"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    // Same name, different config: 409.
    let (status, body) = service
        .post(
            "/api/v1/broker/streams",
            &json!({ "name": "ORDERS", "subjects": ["orders.>"], "max_msgs": 5 }),
        )
        .await;
    let message = assert_error(status, &body, 409, "STREAM_CREATION_ERROR");
    assert!(message.contains("max_msgs"), "{message}");
    // Overlapping another stream: 409 naming it.
    let (status, body) = service
        .post(
            "/api/v1/broker/streams",
            &json!({ "name": "TRADES2", "subjects": ["trade.binance.>"] }),
        )
        .await;
    let message = assert_error(status, &body, 409, "STREAM_CREATION_ERROR");
    assert!(message.contains("MARKET_DATA"), "{message}");
    // Update: given fields change, others stay.
    let (status, updated) = service
        .put(
            "/api/v1/broker/streams/ORDERS",
            &json!({ "max_msgs": 2000 }),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["max_msgs"], 2000);
    assert_eq!(updated["data"]["max_age"], 3600.0);
    let (status, body) = service
        .put("/api/v1/broker/streams/NOPE", &json!({ "max_msgs": 1 }))
        .await;
    assert_error(status, &body, 404, "STREAM_NOT_FOUND");
    let (status, body) = service
        .put(
            "/api/v1/broker/streams/ORDERS",
            &json!({ "subjects": ["system.x"] }),
        )
        .await;
    let message = assert_error(status, &body, 409, "STREAM_CREATION_ERROR");
    assert!(message.contains("SYSTEM_EVENTS"), "{message}");
    // Unknown streams.
    let (status, body) = service.get("/api/v1/broker/streams/NOPE").await;
    assert_error(status, &body, 404, "STREAM_NOT_FOUND");
    let (status, body) = service.delete("/api/v1/broker/streams/NOPE").await;
    assert_error(status, &body, 404, "STREAM_NOT_FOUND");
    // Streams from the config are not deleted through the API.
    let (status, body) = service.delete("/api/v1/broker/streams/MARKET_DATA").await;
    assert_error(status, &body, 409, "INVALID_PARAMETERS");
    // Delete, then it is gone.
    let (status, deleted) = service.delete("/api/v1/broker/streams/ORDERS").await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["data"]["name"], "ORDERS");
    let (status, body) = service.get("/api/v1/broker/streams/ORDERS").await;
    assert_error(status, &body, 404, "STREAM_NOT_FOUND");
}

#[tokio::test]
async fn publish_through_jetstream_with_ack_sequence_and_dedup() {
    let service = ServiceBuilder::new().start().await;
    let message = json!({ "symbol": "BTC-USDT", "price": "67234.56" });
    let (status, first) = service
        .post(
            "/api/v1/broker/publish",
            &json!({ "subject": "trade.binance.spot.BTC-USDT", "message": message, "msg_id": "t-1" }),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    let data = &first["data"];
    assert_eq!(data["jetstream"], true);
    assert_eq!(data["stream"], "MARKET_DATA");
    assert_eq!(data["duplicate"], false);
    let seq = data["sequence"].as_u64().unwrap();
    let (_, again) = service
        .post(
            "/api/v1/broker/publish",
            &json!({ "subject": "trade.binance.spot.BTC-USDT", "message": message, "msg_id": "t-1" }),
        )
        .await;
    assert_eq!(again["data"]["duplicate"], true, "{again}");
    assert_eq!(again["data"]["sequence"].as_u64().unwrap(), seq);
    // The alias works too, and the stored message is the compact JSON.
    let (status, _) = service
        .post(
            "/api/v1/publish",
            &json!({ "subject": "trade.okx.spot.ETH", "message": [1, 2] }),
        )
        .await;
    assert_eq!(status, 200);
    let js = async_nats::jetstream::new(service.nats_client().await);
    let stream = js.get_stream("MARKET_DATA").await.unwrap();
    let stored = stream.get_raw_message(seq).await.unwrap();
    assert_eq!(&stored.payload[..], message.to_string().as_bytes());
    let (_, info) = service.get("/api/v1/broker/streams/MARKET_DATA").await;
    assert_eq!(info["data"]["messages"], 2);
    assert_eq!(info["data"]["last_seq"], 2);
}

#[tokio::test]
async fn publish_on_core_nats_delivers_raw_strings_and_headers() {
    let service = ServiceBuilder::new().start().await;
    let client = service.nats_client().await;
    let mut sub = client.subscribe("ticks.>").await.unwrap();
    server_sync(&client).await;
    let (status, body) = service
        .post(
            "/api/v1/broker/publish",
            &json!({ "subject": "ticks.x", "message": "Hello World", "headers": { "X-Source": "test" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["jetstream"], false);
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.payload[..], b"Hello World");
    assert_eq!(
        msg.headers.unwrap().get("X-Source").unwrap().as_str(),
        "test"
    );
    service
        .post(
            "/api/v1/broker/publish",
            &json!({ "subject": "ticks.y", "message": { "a": 1 } }),
        )
        .await;
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.payload[..], br#"{"a":1}"#);
}

#[tokio::test]
async fn publish_rejects_bad_messages() {
    let service = ServiceBuilder::new()
        .set("service.max_request_size", json!("64KB"))
        .start()
        .await;
    let cases = [
        json!({ "message": 1 }),
        json!({ "subject": "", "message": 1 }),
        json!({ "subject": "a.*", "message": 1 }),
        json!({ "subject": "a.>", "message": 1 }),
        json!({ "subject": "a b", "message": 1 }),
        json!({ "subject": "a..b", "message": 1 }),
        json!({ "subject": ".a", "message": 1 }),
        json!({ "subject": "a.b" }),
        json!({ "subject": 5, "message": 1 }),
        json!({ "subject": "a.b", "message": 1, "headers": "x" }),
        json!("just a string"),
    ];
    for body in cases {
        let (status, reply) = service.post("/api/v1/broker/publish", &body).await;
        assert_error(status, &reply, 400, "INVALID_MESSAGE_DATA");
    }
    let (status, reply) = service
        .post_raw("/api/v1/broker/publish", b"nope".to_vec())
        .await;
    assert_error(status, &reply, 400, "INVALID_MESSAGE_DATA");
    let big = json!({ "subject": "a.b", "message": "x".repeat(70 * 1024) });
    let (status, reply) = service.post("/api/v1/broker/publish", &big).await;
    assert_error(status, &reply, 413, "PAYLOAD_TOO_LARGE");
    let (_, status_body) = service.get("/api/v1/status").await;
    assert_eq!(status_body["data"]["message_stats"]["published"], 0);
}

#[tokio::test]
async fn batch_publish_results_per_entry() {
    let service = ServiceBuilder::new().start().await;
    let messages: Vec<Value> = (0..50)
        .map(|i| json!({ "subject": format!("trade.binance.spot.S{i}"), "message": { "i": i } }))
        .collect();
    let (status, body) = service
        .post(
            "/api/v1/broker/publish/batch",
            &json!({ "messages": messages }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["data"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 50);
    let seqs: Vec<u64> = results
        .iter()
        .map(|r| r["sequence"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "order kept: {seqs:?}");
    // Some bad entries: 207 with an error per failing entry, the rest published.
    let mixed = json!([
        { "subject": "trade.a.b.c", "message": 1 },
        { "subject": "bad subject", "message": 1 },
        { "subject": "core.only", "message": "x" },
        { "message": 2 },
    ]);
    let (status, body) = service.post("/api/v1/broker/publish/batch", &mixed).await;
    assert_eq!(status, 207, "{body}");
    let results = body["data"]["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "success");
    assert_eq!(results[1]["error_code"], "INVALID_MESSAGE_DATA");
    assert_eq!(results[2]["jetstream"], false);
    assert_eq!(results[3]["status"], "error");
    assert_eq!(body["data"]["failed"], 2);
    // Malformed batches.
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({ "subject": "a.b", "message": 1 }))
        .collect();
    for bad in [
        json!({ "messages": [] }),
        json!({ "msgs": [] }),
        json!(5),
        json!(too_many),
    ] {
        let (status, reply) = service.post("/api/v1/broker/publish/batch", &bad).await;
        assert_error(status, &reply, 400, "INVALID_MESSAGE_DATA");
    }
    let (_, status_body) = service.get("/api/v1/status").await;
    assert_eq!(status_body["data"]["message_stats"]["published"], 52);
    assert_eq!(status_body["data"]["message_stats"]["errors"], 2);
}

#[tokio::test]
async fn status_endpoints_carry_live_values() {
    let service = ServiceBuilder::new()
        .set("service.environment", json!("staging"))
        .start()
        .await;
    for i in 0..3 {
        service
            .post(
                "/api/v1/broker/publish",
                &json!({ "subject": format!("system.event.{i}"), "message": i }),
            )
            .await;
    }
    // Stream figures come from the status snapshot, refreshed about every second.
    let body = wait_for(
        "3 messages in the status snapshot",
        Duration::from_secs(10),
        || async {
            let (status, body) = service.get("/api/v1/status").await;
            assert_eq!(status, 200, "{body}");
            let system_messages = body["data"]["jetstream_streams"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == "SYSTEM_EVENTS")?["messages"]
                .as_u64();
            (system_messages == Some(3)).then_some(body)
        },
    )
    .await;
    let d = &body["data"];
    assert_eq!(d["snapshot"]["stale"], false, "{d}");
    assert_eq!(d["service"], "prism-broker");
    assert_eq!(d["status"], "running");
    assert_eq!(d["environment"], "staging");
    assert_eq!(d["version"], env!("CARGO_PKG_VERSION"));
    assert!(d["uptime_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(d["message_stats"]["published"], 3);
    assert_eq!(d["statistics"]["messages_published"], 3);
    assert_eq!(d["nats_info"]["client_connected"], true);
    assert_eq!(
        d["nats_info"]["server_version"],
        d["nats_server"]["server_info"]["version"]
    );
    let system = d["jetstream_streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "SYSTEM_EVENTS")
        .unwrap();
    assert_eq!(system["messages"], 3);
    assert!(system["bytes"].as_u64().unwrap() > 0);

    let (_, info) = service.get("/api/v1/nats/info").await;
    let server = &info["data"]["server_info"];
    assert!(server["server_id"].as_str().unwrap().len() > 10);
    assert!(server["version"].as_str().unwrap().starts_with("2."));
    assert!(server["connections"].as_u64().unwrap() >= 1);
    assert!(server["in_msgs"].as_u64().unwrap() >= 3);
    for field in ["out_msgs", "in_bytes", "out_bytes"] {
        assert!(server[field].is_u64(), "{field}");
    }

    let (status, broker) = service.get("/api/v1/broker/status").await;
    assert_eq!(status, 200);
    assert_eq!(broker["data"]["nats"]["mode"], "supervised");
    assert_eq!(broker["data"]["streams"]["ensured"], true);
    let (status, health) = service.get("/api/v1/broker/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["data"]["status"], "healthy");
    assert_eq!(health["data"]["checks"]["jetstream"]["status"], "healthy");
    assert!(
        health["data"]["checks"]["jetstream"]["detail"]["streams"]
            .as_u64()
            .unwrap()
            >= 3
    );
}

#[tokio::test]
async fn nats_down_gives_503_quickly_never_500_or_a_hang() {
    let service = ServiceBuilder::new()
        .set(
            "nats.restart",
            json!({ "initial_backoff": "20s", "max_backoff": "20s" }),
        )
        .start()
        .await;
    let pid = service.nats_pid().await.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    // Once the service knows the server is gone (readiness names it; its connections may
    // take a moment longer to notice), every endpoint that needs NATS answers 503 at once.
    wait_for(
        "the service sees the loss",
        Duration::from_secs(5),
        || async {
            let (status, body) = service.get("/ready").await;
            (status == 503 && body["data"]["components"]["nats_server"].is_string()).then_some(())
        },
    )
    .await;
    let started = Instant::now();
    let (status, body) = service
        .post(
            "/api/v1/broker/publish",
            &json!({ "subject": "trade.a.b.c", "message": 1 }),
        )
        .await;
    assert_error(status, &body, 503, "NATS_CONNECTION_ERROR");
    let (status, body) = service
        .post(
            "/api/v1/broker/publish/batch",
            &json!([{ "subject": "trade.a.b.c", "message": 1 }]),
        )
        .await;
    assert_error(status, &body, 503, "NATS_CONNECTION_ERROR");
    for path in ["/api/v1/streams", "/api/v1/broker/streams/MARKET_DATA"] {
        let (status, body) = service.get(path).await;
        assert_error(status, &body, 503, "NATS_CONNECTION_ERROR");
    }
    let (status, body) = service
        .post(
            "/api/v1/broker/streams",
            &json!({ "name": "X", "subjects": ["x.>"] }),
        )
        .await;
    assert_error(status, &body, 503, "NATS_CONNECTION_ERROR");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let (status, _) = service.get("/api/v1/status").await;
    assert_eq!(status, 200, "status still answers");
}

#[tokio::test]
async fn streams_are_re_ensured_and_publishing_works_after_a_nats_restart() {
    let service = ServiceBuilder::new()
        .set(
            "streams.VOLATILE",
            json!({ "subjects": ["volatile.>"], "storage": "memory" }),
        )
        .start()
        .await;
    let (status, _) = service
        .post(
            "/api/v1/broker/publish",
            &json!({ "subject": "volatile.a", "message": 1 }),
        )
        .await;
    assert_eq!(status, 200);
    let pid = service.nats_pid().await.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    wait_for("new child", Duration::from_secs(15), || async {
        service.nats_pid().await.filter(|p| *p != pid)
    })
    .await;
    service.wait_ready(Duration::from_secs(15)).await;
    // The memory stream vanished with the server and was created again.
    let (status, body) = service.get("/api/v1/broker/streams/VOLATILE").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["messages"], 0);
    let (status, body) = service
        .post(
            "/api/v1/broker/publish",
            &json!({ "subject": "volatile.b", "message": 2 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["stream"], "VOLATILE");
    let (status, body) = service
        .post(
            "/api/v1/broker/publish",
            &json!({ "subject": "trade.a.b.c", "message": 3 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["stream"], "MARKET_DATA");
}

#[tokio::test]
async fn api_token_guards_mutations_only() {
    let service = ServiceBuilder::new()
        .env("PRISM_API_TOKEN", "s3cret")
        .start()
        .await;
    let msg = json!({ "subject": "a.b", "message": 1 });
    let (status, body) = service.post("/api/v1/broker/publish", &msg).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, body) = service
        .send(
            reqwest::Method::POST,
            "/api/v1/broker/publish",
            Some(&msg),
            Some("wrong"),
        )
        .await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, _) = service
        .send(
            reqwest::Method::POST,
            "/api/v1/broker/publish",
            Some(&msg),
            Some("s3cret"),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = service.delete("/api/v1/broker/streams/MARKET_DATA").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, body) = service
        .post(
            "/api/v1/broker/streams",
            &json!({ "name": "A", "subjects": ["a.>"] }),
        )
        .await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    for path in ["/api/v1/status", "/api/v1/streams", "/health", "/ready"] {
        assert_eq!(service.get(path).await.0, 200, "{path}");
    }
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_use_the_envelope() {
    let service = ServiceBuilder::new().start().await;
    let (status, body) = service.get("/api/v1/nothing").await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = service.get("/").await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = service.delete("/api/v1/status").await;
    let message = assert_error(status, &body, 405, "METHOD_NOT_ALLOWED");
    assert!(message.contains("GET"), "{message}");
    let (status, body) = service
        .send(
            reqwest::Method::PATCH,
            "/api/v1/broker/streams/X",
            None,
            None,
        )
        .await;
    let message = assert_error(status, &body, 405, "METHOD_NOT_ALLOWED");
    assert!(
        message.contains("PUT") && message.contains("DELETE"),
        "{message}"
    );
    let (status, body) = service.get("/api/v1/broker/publish").await;
    assert_error(status, &body, 405, "METHOD_NOT_ALLOWED");
}
