//! `/metrics` against the real binary and real nats-server: REST request counters move by
//! exactly the requests sent, the exposition parses strictly with no duplicate series, NATS
//! restarts and reconnects agree with `/api/v1/nats/info`, varz/jsz gauges are exported when
//! supervised, and stream / durable consumer gauges follow real JetStream traffic in both
//! supervised and external mode. Refresh-driven values are awaited against deadlines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/metrics.rs"]
mod exposition;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use common::*;
use exposition::{scrape, wait_metrics, Exposition};
use futures::StreamExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

/// Refreshes run every 5 s; snapshots of the child every 5 s too.
const REFRESH_DEADLINE: Duration = Duration::from_secs(20);

const REQUESTS: &str = "prism_http_requests_total";

fn requests(e: &Exposition, endpoint: &str, method: &str, status: &str) -> f64 {
    e.value(
        REQUESTS,
        &[
            ("endpoint", endpoint),
            ("method", method),
            ("status", status),
        ],
    )
}

#[tokio::test]
async fn rest_requests_are_counted_by_endpoint_method_and_status() {
    let service = ServiceBuilder::new().start().await;
    let before = scrape(&service).await;

    for _ in 0..3 {
        assert_eq!(service.get("/health").await.0, 200);
    }
    for _ in 0..2 {
        assert_eq!(service.get("/ready").await.0, 200);
    }
    for path in [
        "/no/such/path",
        "/api/v1/nope",
        "/api/v1/nats/info/extra",
        "/x",
    ] {
        assert_eq!(service.get(path).await.0, 404, "{path}");
    }
    assert_eq!(service.get("/api/v1/nats/info").await.0, 200);
    let post = service
        .http
        .post(service.url("/health"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    let post_status = post.to_string();

    let after = scrape(&service).await;
    let delta = |endpoint: &str, method: &str, status: &str| {
        requests(&after, endpoint, method, status) - requests(&before, endpoint, method, status)
    };
    assert_eq!(delta("/health", "GET", "200"), 3.0);
    assert_eq!(delta("/ready", "GET", "200"), 2.0);
    assert_eq!(delta("unmatched", "GET", "404"), 4.0);
    assert_eq!(delta("/api/v1/nats/info", "GET", "200"), 1.0);
    assert_eq!(delta("/health", "POST", &post_status), 1.0);
    // The first scrape itself, counted once it had answered.
    assert_eq!(delta("/metrics", "GET", "200"), 1.0);
    // Nothing else moved: 3 + 2 + 4 + 1 + 1 + 1.
    assert_eq!(after.sum(REQUESTS, &[]) - before.sum(REQUESTS, &[]), 12.0);

    // The latency histogram saw the same requests.
    let latency = |e: &Exposition, endpoint: &str| {
        e.value(
            "prism_http_request_duration_seconds_count",
            &[("endpoint", endpoint), ("method", "GET")],
        )
    };
    assert_eq!(
        latency(&after, "/health") - latency(&before, "/health"),
        3.0
    );
    assert_eq!(
        latency(&after, "unmatched") - latency(&before, "unmatched"),
        4.0
    );
    // Raw paths never become label values.
    assert!(!after.text.contains("no/such/path"));
    assert!(!after.text.contains("info/extra"));
}

#[tokio::test]
async fn exposition_parses_cleanly_with_no_duplicate_series() {
    let service = ServiceBuilder::new().start().await;
    // Wait for a refresh so the derived families are in the exposition too.
    let e = wait_metrics(&service, "first stats refresh", REFRESH_DEADLINE, |e| {
        (e.value("prism_stats_refreshes_total", &[("outcome", "ok")]) >= 1.0
            && e.has_family("prism_nats_server_connections"))
        .then(|| e.clone())
    })
    .await;

    let allowed = [
        "route",
        "stream",
        "consumer",
        "endpoint",
        "method",
        "status",
        "outcome",
        "source",
        "collector",
        "le",
    ];
    let compat = |name: &str| {
        prism_broker::stats::metrics::COMPAT_FAMILIES
            .iter()
            .find(|c| c.name == name)
    };
    for s in &e.series {
        // Ours, or the Python message-broker's names (copies of ours, tests/marketprism.rs).
        let old = compat(&s.name);
        assert!(s.name.starts_with("prism_") || old.is_some(), "{}", s.name);
        for label in s.labels.keys() {
            let renamed = old.and_then(|c| c.label).map(|(_, theirs)| theirs);
            assert!(
                allowed.contains(&label.as_str()) || renamed == Some(label.as_str()),
                "{} has label {label}",
                s.name
            );
        }
    }
    for (family, kind) in &e.types {
        assert!(!e.help[family].is_empty(), "{family} has no help");
        // Counters end in _total, nothing else does; the Python service's two levels
        // named _total are untyped.
        let untyped_total = kind == "untyped" && compat(family).is_some();
        assert_eq!(
            kind == "counter" || untyped_total,
            family.ends_with("_total"),
            "{family} is a {kind}"
        );
    }
    for family in [
        "prism_messages_published_total",
        "prism_messages_consumed_total",
        "prism_message_errors_total",
        "prism_nats_server_up",
        "prism_nats_server_restarts_total",
        "prism_nats_client_reconnects_total",
        "prism_nats_server_connections",
        "prism_nats_server_in_messages",
        "prism_nats_server_out_bytes",
        "prism_nats_jetstream_memory_bytes",
        "prism_nats_jetstream_storage_bytes",
        "prism_http_requests_total",
        "prism_http_request_duration_seconds",
        "prism_route_reloads_total",
        "prism_routes_version",
        "prism_stats_refreshes_total",
    ] {
        assert!(e.types.contains_key(family), "{family} missing");
    }

    // An independent parser reads the same numbers (it cannot read label values that
    // contain braces, such as route patterns; those are left out of the comparison).
    let other = prometheus_parse::Scrape::parse(e.text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let mut compared = 0;
    for sample in &other.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            _ => continue,
        };
        let labels: Vec<(&str, &str)> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            e.get(&sample.metric, &labels),
            Some(value),
            "{}",
            sample.metric
        );
        compared += 1;
    }
    assert!(compared >= 15, "{compared}");
}

#[tokio::test]
async fn nats_restart_after_kill_9_is_counted_and_agrees_with_nats_info() {
    let service = ServiceBuilder::new()
        .set(
            "nats.restart",
            json!({ "initial_backoff": "1s", "max_backoff": "2s" }),
        )
        .start()
        .await;
    let before = scrape(&service).await;
    assert_eq!(before.get("prism_nats_server_up", &[]), Some(1.0));
    assert_eq!(before.get("prism_nats_client_connected", &[]), Some(1.0));
    assert_eq!(
        before.get("prism_nats_server_restarts_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        before.get("prism_nats_client_reconnects_total", &[]),
        Some(0.0)
    );

    let pid = service.nats_pid().await.unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    wait_metrics(&service, "server_up 0", Duration::from_secs(5), |e| {
        (e.get("prism_nats_server_up", &[]) == Some(0.0)).then_some(())
    })
    .await;
    service.wait_ready(Duration::from_secs(15)).await;
    wait_metrics(&service, "restart counted", Duration::from_secs(10), |e| {
        (e.get("prism_nats_server_up", &[]) == Some(1.0)
            && e.get("prism_nats_server_restarts_total", &[]) == Some(1.0)
            && e.value("prism_nats_client_reconnects_total", &[]) >= 1.0)
            .then_some(())
    })
    .await;

    let (_, info) = service.get("/api/v1/nats/info").await;
    let after = scrape(&service).await;
    assert_eq!(
        after.get("prism_nats_server_restarts_total", &[]),
        info["data"]["restarts"].as_f64()
    );
    assert_eq!(
        after.get("prism_nats_client_reconnects_total", &[]),
        info["data"]["client_reconnects"].as_f64()
    );
}

#[tokio::test]
async fn varz_and_jsz_gauges_are_exported_when_supervised() {
    let service = ServiceBuilder::new().start().await;
    let client = async_nats::connect(service.nats_url()).await.unwrap();
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "VARZ_PROBE".into(),
        subjects: vec!["varz.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    for i in 0..10 {
        js.publish(format!("varz.{i}"), "x".repeat(100).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Snapshots and the JetStream part of a refresh land at different moments: wait for
    // all of them rather than for the first.
    let e = wait_metrics(&service, "varz and jsz figures", REFRESH_DEADLINE, |e| {
        (e.value("prism_nats_server_connections", &[]) >= 2.0
            && e.value("prism_nats_server_in_messages", &[]) >= 10.0
            && e.value("prism_nats_server_in_bytes", &[]) >= 1000.0
            && e.value("prism_nats_jetstream_storage_bytes", &[]) > 0.0
            && e.value("prism_nats_jetstream_streams", &[]) >= 1.0
            && e.value("prism_stats_refreshes_total", &[("outcome", "ok")]) >= 1.0)
            .then(|| e.clone())
    })
    .await;
    assert!(e.value("prism_nats_server_memory_bytes", &[]) > 0.0);
    assert!(e.value("prism_nats_server_out_messages", &[]) > 0.0);
    assert!(e.value("prism_stats_last_refresh_timestamp_seconds", &[]) > 1.7e9);
}

/// Publishes `n` JetStream-acked messages on `trade.binance.spot.btcusdt`.
async fn publish_trades(js: &jetstream::Context, n: usize) {
    for i in 0..n {
        let payload = json!({ "exchange": "binance", "symbol": "BTCUSDT", "price": 60000 + i });
        js.publish(
            "trade.binance.spot.btcusdt",
            serde_json::to_vec(&payload).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

/// MARKET_DATA as the service's defaults describe it (or the one the service made).
async fn market_data(js: &jetstream::Context) -> stream::Stream {
    js.get_or_create_stream(stream::Config {
        name: "MARKET_DATA".into(),
        subjects: vec!["market.>".into(), "trade.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn stream_gauge(e: &Exposition, name: &str, stream: &str) -> Option<f64> {
    e.get(name, &[("stream", stream)])
}

fn consumer_gauge(e: &Exposition, name: &str, consumer: &str) -> Option<f64> {
    e.get(name, &[("stream", "MARKET_DATA"), ("consumer", consumer)])
}

#[tokio::test]
async fn stream_and_durable_consumer_gauges_follow_real_traffic() {
    let service = ServiceBuilder::new().start().await;
    let client = async_nats::connect(service.nats_url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let stream = market_data(&js).await;
    let base = wait_metrics(&service, "MARKET_DATA gauges", REFRESH_DEADLINE, |e| {
        stream_gauge(e, "prism_stream_messages", "MARKET_DATA")
    })
    .await;

    publish_trades(&js, 25).await;
    let e = wait_metrics(&service, "25 more messages", REFRESH_DEADLINE, |e| {
        (stream_gauge(e, "prism_stream_messages", "MARKET_DATA") == Some(base + 25.0))
            .then(|| e.clone())
    })
    .await;
    assert!(stream_gauge(&e, "prism_stream_bytes", "MARKET_DATA").unwrap() > 25.0 * 40.0);
    assert_eq!(
        stream_gauge(&e, "prism_stream_consumers", "MARKET_DATA"),
        Some(0.0)
    );

    // A durable pull consumer gets pending / ack-pending series; an ephemeral one does not.
    let durable = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("prism-metrics-test".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let _ephemeral = stream
        .create_consumer(consumer::pull::Config::default())
        .await
        .unwrap();
    let total = base + 25.0;
    wait_metrics(&service, "durable pending", REFRESH_DEADLINE, |e| {
        (stream_gauge(e, "prism_stream_consumers", "MARKET_DATA") == Some(2.0)
            && consumer_gauge(e, "prism_consumer_pending_messages", "prism-metrics-test")
                == Some(total)
            && consumer_gauge(
                e,
                "prism_consumer_ack_pending_messages",
                "prism-metrics-test",
            ) == Some(0.0))
        .then_some(())
    })
    .await;
    let e = scrape(&service).await;
    let consumer_series = e
        .series
        .iter()
        .filter(|s| s.name == "prism_consumer_pending_messages")
        .count();
    assert_eq!(consumer_series, 1, "only the durable has series");

    // Take 10 without acking: 10 ack-pending, the rest still pending.
    let mut batch = durable.fetch().max_messages(10).messages().await.unwrap();
    let mut held = Vec::new();
    while let Some(message) = batch.next().await {
        held.push(message.unwrap());
    }
    assert_eq!(held.len(), 10);
    wait_metrics(&service, "10 ack-pending", REFRESH_DEADLINE, |e| {
        (consumer_gauge(
            e,
            "prism_consumer_ack_pending_messages",
            "prism-metrics-test",
        ) == Some(10.0)
            && consumer_gauge(e, "prism_consumer_pending_messages", "prism-metrics-test")
                == Some(total - 10.0))
        .then_some(())
    })
    .await;
    for message in &held {
        message.double_ack().await.unwrap();
    }
    wait_metrics(&service, "acks seen", REFRESH_DEADLINE, |e| {
        (consumer_gauge(
            e,
            "prism_consumer_ack_pending_messages",
            "prism-metrics-test",
        ) == Some(0.0))
        .then_some(())
    })
    .await;

    // A deleted consumer's series go away.
    stream.delete_consumer("prism-metrics-test").await.unwrap();
    wait_metrics(&service, "consumer series removed", REFRESH_DEADLINE, |e| {
        consumer_gauge(e, "prism_consumer_pending_messages", "prism-metrics-test")
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn external_mode_reads_jetstream_figures_from_the_api() {
    let nats = NatsServer::start().await;
    let service = ServiceBuilder::new()
        .set("nats.auto_start", json!(false))
        .set("nats.url", json!(nats.url()))
        .start()
        .await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    market_data(&js).await;
    publish_trades(&js, 7).await;

    let e = wait_metrics(&service, "stream gauges", REFRESH_DEADLINE, |e| {
        (stream_gauge(e, "prism_stream_messages", "MARKET_DATA") == Some(7.0)
            && e.value("prism_nats_jetstream_storage_bytes", &[]) > 0.0)
            .then(|| e.clone())
    })
    .await;
    // The five default streams the service ensures (KLINES among them).
    assert_eq!(e.get("prism_nats_jetstream_streams", &[]), Some(5.0));
    assert_eq!(e.get("prism_nats_server_up", &[]), Some(1.0));
    assert_eq!(e.get("prism_nats_server_restarts_total", &[]), Some(0.0));
    // No monitoring port in external mode: the varz gauges are absent, not zero.
    assert!(!e.has_family("prism_nats_server_connections"));
    assert!(!e.has_family("prism_nats_server_in_messages"));
}

const COPY_AND_FAIL: &str = r#"
routes:
  - name: copy
    from: "copy.{n}"
    to:
      - subject: "copied.{n}"
  - name: strict
    from: "strict.{n}"
    transform:
      - to_number: [price]
    to:
      - subject: "strict-out.{n}"
"#;

#[tokio::test]
async fn status_and_metrics_agree_and_route_counters_move_exactly() {
    let service = ServiceBuilder::new()
        .route_file("routes.yaml", COPY_AND_FAIL)
        .start()
        .await;
    let client = service.nats_client().await;
    let mut copied = client.subscribe("copied.*").await.unwrap();
    let mut dead = client.subscribe("deadletter.>").await.unwrap();
    server_sync(&client).await;
    // Router traffic: 30 copies, 5 good strict messages, 4 that fail and are dead-lettered.
    for i in 0..30 {
        client
            .publish(format!("copy.{i}"), "{}".into())
            .await
            .unwrap();
    }
    for i in 0..5 {
        client
            .publish(format!("strict.{i}"), r#"{"price":"1.5"}"#.into())
            .await
            .unwrap();
    }
    for i in 0..4 {
        client
            .publish(format!("strict.bad{i}"), r#"{"price":"x"}"#.into())
            .await
            .unwrap();
    }
    server_sync(&client).await;
    assert_eq!(
        collect(&mut copied, 30, Duration::from_secs(10))
            .await
            .len(),
        30
    );
    assert_eq!(
        collect(&mut dead, 4, Duration::from_secs(10)).await.len(),
        4
    );
    // API traffic: 7 published, 2 refused by validation (not counted), 1 batch entry failing.
    for i in 0..7 {
        let (status, _) = service
            .post(
                "/api/v1/broker/publish",
                &json!({ "subject": format!("api.{i}"), "message": i }),
            )
            .await;
        assert_eq!(status, 200);
    }
    for _ in 0..2 {
        service
            .post(
                "/api/v1/broker/publish",
                &json!({ "subject": "a b", "message": 1 }),
            )
            .await;
    }
    let (status, _) = service
        .post(
            "/api/v1/broker/publish/batch",
            &json!([{ "subject": "api.x", "message": 1 }, { "subject": "bad subject", "message": 1 }]),
        )
        .await;
    assert_eq!(status, 207);

    let e = wait_metrics(
        &service,
        "router counters settled",
        Duration::from_secs(10),
        |e| {
            // Outputs are counted just after they are handed to the connection.
            let settled = e.get("prism_route_messages_matched_total", &[("route", "strict")])
                == Some(9.0)
                && e.get("prism_messages_published_total", &[("source", "router")]) >= Some(35.0)
                && e.get(
                    "prism_route_messages_dead_lettered_total",
                    &[("route", "strict")],
                ) >= Some(4.0);
            settled.then(|| e.clone())
        },
    )
    .await;
    let route = |name: &str, route: &str| e.get(name, &[("route", route)]).unwrap_or(-1.0);
    assert_eq!(route("prism_route_messages_matched_total", "copy"), 30.0);
    assert_eq!(route("prism_route_messages_published_total", "copy"), 30.0);
    assert_eq!(route("prism_route_messages_published_total", "strict"), 5.0);
    assert_eq!(route("prism_route_messages_errored_total", "strict"), 4.0);
    assert_eq!(
        route("prism_route_messages_dead_lettered_total", "strict"),
        4.0
    );
    assert_eq!(
        e.get("prism_messages_published_total", &[("source", "api")]),
        Some(8.0)
    );
    assert_eq!(
        e.get("prism_messages_published_total", &[("source", "router")]),
        Some(35.0)
    );
    assert_eq!(e.get("prism_messages_consumed_total", &[]), Some(39.0));

    // The status endpoint reads the same counters.
    let (_, status) = service.get("/api/v1/status").await;
    let stats = &status["data"]["message_stats"];
    let published = e
        .get("prism_messages_published_total", &[("source", "api")])
        .unwrap()
        + e.get("prism_messages_published_total", &[("source", "router")])
            .unwrap();
    let errors = e
        .get("prism_message_errors_total", &[("source", "api")])
        .unwrap()
        + e.get("prism_message_errors_total", &[("source", "router")])
            .unwrap();
    assert_eq!(
        errors, 5.0,
        "one failed batch entry and four route failures"
    );
    assert_eq!(stats["published"].as_f64().unwrap(), published);
    assert_eq!(
        stats["consumed"].as_f64().unwrap(),
        e.get("prism_messages_consumed_total", &[]).unwrap()
    );
    assert_eq!(stats["errors"].as_f64().unwrap(), errors);
    assert_eq!(
        status["data"]["statistics"]["messages_published"]
            .as_f64()
            .unwrap(),
        published
    );
    // And the routes API shows them too.
    let (_, copy) = service.get("/api/v1/routes/copy").await;
    assert_eq!(copy["data"]["counters"]["published"], 30);
}
