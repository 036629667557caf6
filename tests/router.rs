//! The live router, end to end: the real binary, a real nats-server, real traffic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(500);

fn payload(msg: &async_nats::Message) -> Value {
    serde_json::from_slice(&msg.payload).unwrap()
}

async fn publish_json(client: &async_nats::Client, subject: &str, body: &Value) {
    client
        .publish(subject.to_string(), body.to_string().into())
        .await
        .unwrap();
}

/// The counters of `route` from `GET /api/v1/routes/{route}`.
async fn counters(service: &Service, route: &str) -> Value {
    let (status, body) = service.get(&format!("/api/v1/routes/{route}")).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["counters"].clone()
}

/// The counters of `route` once `counter` reached at least `at_least`. A route counts an
/// output right after handing it to the connection, so a test that already received the
/// output may read the counter a moment before it moves.
async fn counters_after(service: &Service, route: &str, counter: &str, at_least: u64) -> Value {
    wait_for(
        &format!("{route}.{counter} >= {at_least}"),
        WAIT,
        || async {
            let c = counters(service, route).await;
            (c[counter].as_u64().unwrap_or(0) >= at_least).then_some(c)
        },
    )
    .await
}

#[tokio::test]
async fn shipped_routes_produce_exactly_the_expected_outputs() {
    let service = ServiceBuilder::new().shipped_rules().start().await;
    let client = service.nats_client().await;
    let mut canonical = client.subscribe("canonical.trade.>").await.unwrap();
    let mut top = client.subscribe("top_of_book.>").await.unwrap();
    let mut levels = client.subscribe("book_level.>").await.unwrap();
    let mut alerts = client.subscribe("system.alert.>").await.unwrap();
    let mut dead = client.subscribe("deadletter.>").await.unwrap();
    server_sync(&client).await;

    let js = jetstream::new(client.clone());
    for (subject, headers, body) in samples() {
        let mut map = async_nats::HeaderMap::new();
        if let Some(Value::Object(h)) = headers {
            for (k, v) in h {
                map.insert(k.as_str(), v.as_str().unwrap());
            }
        }
        // Collectors publish into MARKET_DATA; the router sees them on core NATS as well.
        js.publish_with_headers(subject, map, body.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // A liquidation large enough to alert, and a legacy subject.
    let big = json!({ "exchange": "binance", "market_type": "perpetual", "symbol": "BTC-USDT",
        "liquidation_id": "big-1", "side": "sell", "price": 67011.4, "quantity": 10.0,
        "notional_value": 670114.0, "ts_ms": 1795290133414u64 });
    js.publish(
        "liquidation.binance.perpetual.BTC-USDT",
        big.to_string().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let legacy = json!({ "symbol": "SOL-USDT", "price": "150.5", "quantity": "2", "side": "buy",
        "trade_id": "77", "exchange": "okx", "market_type": "spot", "ts_ms": 1795290133500u64 });
    publish_json(&client, "market.okx.SOL-USDT.trade", &legacy).await;

    // Three sample trades plus the legacy one mapped onto trade.okx.spot.SOL-USDT.
    let trades = collect(&mut canonical, 4, WAIT).await;
    let subjects: BTreeSet<String> = trades.iter().map(|m| m.subject.to_string()).collect();
    assert_eq!(
        subjects,
        BTreeSet::from([
            "canonical.trade.binance.spot.BTC-USDT".to_string(),
            "canonical.trade.binance.spot.ETH-USDT".to_string(),
            "canonical.trade.okx.perpetual.BTC-USDT".to_string(),
            "canonical.trade.okx.spot.SOL-USDT".to_string(),
        ])
    );
    let btc = trades
        .iter()
        .find(|m| m.subject.as_str() == "canonical.trade.binance.spot.BTC-USDT")
        .unwrap();
    let t = payload(btc);
    assert_eq!(t["price"], json!(67234.56));
    assert_eq!(t["quantity"], json!(0.0125));
    assert_eq!(t["venue"], "binance.spot");
    assert_eq!(t["event_ts_ms"], 1795290133198u64);
    assert!(t.get("publisher").is_none() && t.get("data_source").is_none());
    assert_eq!(
        btc.headers
            .as_ref()
            .unwrap()
            .get("Nats-Msg-Id")
            .unwrap()
            .as_str(),
        "binance:BTC-USDT:5123456789"
    );
    // Two order books: two tops; the spot one also gives its three bid levels.
    let tops = collect(&mut top, 2, WAIT).await;
    assert_eq!(tops.len(), 2);
    let spot_top = tops
        .iter()
        .find(|m| m.subject.as_str() == "top_of_book.binance.spot.BTC-USDT")
        .map(payload)
        .unwrap();
    assert_eq!(spot_top["bid_price"], json!(67234.56), "{spot_top}");
    assert_eq!(collect(&mut levels, 3, WAIT).await.len(), 3);
    // Only the large liquidation alerts, and the alert is stored in SYSTEM_EVENTS.
    let alert = collect(&mut alerts, 1, WAIT).await;
    assert_eq!(alert.len(), 1);
    assert_eq!(
        alert[0].subject.as_str(),
        "system.alert.liquidation.binance.BTC-USDT"
    );
    // Nothing more anywhere, and nothing dead-lettered.
    assert!(drain(&mut canonical, QUIET).await.is_empty());
    assert!(drain(&mut top, QUIET).await.is_empty());
    assert!(drain(&mut levels, Duration::from_millis(50))
        .await
        .is_empty());
    assert!(drain(&mut alerts, Duration::from_millis(50))
        .await
        .is_empty());
    assert!(drain(&mut dead, Duration::from_millis(50)).await.is_empty());
    let (_, system) = service.get("/api/v1/broker/streams/SYSTEM_EVENTS").await;
    assert_eq!(system["data"]["messages"], 1);

    let c = counters_after(&service, "trades-canonical", "published", 4).await;
    assert_eq!(c["matched"], 4);
    assert_eq!(c["published"], 4);
    let c = counters_after(&service, "large-liquidations", "published", 1).await;
    assert_eq!(c["matched"], 2);
    assert_eq!(c["filtered"], 1);
    assert_eq!(c["published"], 1);
}

const FAN_OUT_AND_DEAD_LETTER: &str = r#"
routes:
  - name: fan
    from: "fan.{symbol}"
    to:
      - subject: "copy.a.{symbol}"
      - subject: "copy.b.{symbol}"
  - name: strict
    from: "strict.{symbol}"
    transform:
      - to_number: [price]
    to:
      - subject: "strict-out.{symbol}"
"#;

#[tokio::test]
async fn fan_out_and_dead_letters_with_headers() {
    let service = ServiceBuilder::new()
        .route_file("test.yaml", FAN_OUT_AND_DEAD_LETTER)
        .start()
        .await;
    let client = service.nats_client().await;
    let mut copies = client.subscribe("copy.>").await.unwrap();
    let mut dead = client.subscribe("deadletter.>").await.unwrap();
    let mut strict_out = client.subscribe("strict-out.>").await.unwrap();
    server_sync(&client).await;

    publish_json(&client, "fan.BTC", &json!({ "n": 1 })).await;
    let got = collect(&mut copies, 2, WAIT).await;
    let subjects: BTreeSet<_> = got.iter().map(|m| m.subject.to_string()).collect();
    assert_eq!(
        subjects,
        BTreeSet::from(["copy.a.BTC".into(), "copy.b.BTC".into()])
    );
    assert!(got.iter().all(|m| payload(m) == json!({ "n": 1 })));

    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Trace", "t-1");
    client
        .publish_with_headers("strict.ETH", headers, r#"{"price":"not a number"}"#.into())
        .await
        .unwrap();
    publish_json(&client, "strict.ETH", &json!({ "price": "12.5" })).await;
    let letters = collect(&mut dead, 1, WAIT).await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.subject.as_str(), "deadletter.strict");
    let h = letter.headers.as_ref().unwrap();
    assert_eq!(h.get("Prism-Route").unwrap().as_str(), "strict");
    assert_eq!(
        h.get("Prism-Original-Subject").unwrap().as_str(),
        "strict.ETH"
    );
    assert!(
        h.get("Prism-Error").unwrap().as_str().contains("price"),
        "{h:?}"
    );
    assert_eq!(h.get("X-Trace").unwrap().as_str(), "t-1");
    assert_eq!(&letter.payload[..], br#"{"price":"not a number"}"#);
    let ok = collect(&mut strict_out, 1, WAIT).await;
    assert_eq!(payload(&ok[0])["price"], json!(12.5));

    let c = counters_after(&service, "strict", "dead_lettered", 1).await;
    let c = if c["published"] == 1 {
        c
    } else {
        counters_after(&service, "strict", "published", 1).await
    };
    assert_eq!(c["errored"], 1);
    assert_eq!(c["dead_lettered"], 1);
    assert_eq!(c["published"], 1);
    let c = counters_after(&service, "fan", "published", 2).await;
    assert_eq!(c["published"], 2);
}

const COPY_ROUTE: &str = r#"
routes:
  - name: copy
    from: "in.{n}"
    to:
      - subject: "out.{n}"
"#;

#[tokio::test]
async fn two_brokers_share_a_core_source_without_duplicates() {
    let nats = NatsServer::start().await;
    let start = || {
        ServiceBuilder::new()
            .set("nats.auto_start", json!(false))
            .set("nats.url", json!(nats.url()))
            .route_file("copy.yaml", COPY_ROUTE)
            .start()
    };
    let a = start().await;
    let b = start().await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut out = client.subscribe("out.*").await.unwrap();
    server_sync(&client).await;
    const N: usize = 2000;
    for i in 0..N {
        client.publish(format!("in.{i}"), "x".into()).await.unwrap();
    }
    server_sync(&client).await;
    let got = collect(&mut out, N, WAIT).await;
    let more = drain(&mut out, QUIET).await;
    let unique: BTreeSet<String> = got.iter().map(|m| m.subject.to_string()).collect();
    assert_eq!(got.len() + more.len(), N, "every input routed exactly once");
    assert_eq!(unique.len(), N);
    let (ca, cb) = (counters(&a, "copy").await, counters(&b, "copy").await);
    let (ma, mb) = (
        ca["matched"].as_u64().unwrap(),
        cb["matched"].as_u64().unwrap(),
    );
    assert_eq!(ma + mb, N as u64);
    assert!(ma > 0 && mb > 0, "both instances took a share: {ma} / {mb}");
}

const PARTITIONED: &str = r#"
routes:
  - name: ordered
    from: "tick.{symbol}"
    partition_by: "{symbol}"
    to:
      - subject: "ordered.{symbol}"
"#;

#[tokio::test]
async fn partition_by_keeps_order_per_key() {
    partition_order(1).await;
}

#[tokio::test]
async fn partition_by_keeps_order_per_key_on_several_threads() {
    partition_order(2).await;
}

async fn partition_order(threads: usize) {
    let service = ServiceBuilder::new()
        .set("router.threads", json!(threads))
        .route_file("ordered.yaml", PARTITIONED)
        .start()
        .await;
    let client = service.nats_client().await;
    let mut out = client.subscribe("ordered.*").await.unwrap();
    server_sync(&client).await;
    let symbols = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "DOT", "LTC"];
    const PER: usize = 500;
    for i in 0..PER {
        for s in symbols {
            publish_json(&client, &format!("tick.{s}"), &json!({ "seq": i })).await;
        }
    }
    server_sync(&client).await;
    let got = collect(&mut out, PER * symbols.len(), WAIT).await;
    assert_eq!(got.len(), PER * symbols.len());
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for m in &got {
        per_key
            .entry(m.subject.to_string())
            .or_default()
            .push(payload(m)["seq"].as_u64().unwrap());
    }
    for (key, seqs) in per_key {
        let expected: Vec<u64> = (0..PER as u64).collect();
        assert_eq!(seqs, expected, "order of {key}");
    }
}

const JS_SOURCED: &str = r#"
routes:
  - name: js-copy
    from: "trade.{exchange}.{market_type}.{symbol}"
    source:
      jetstream: { stream: MARKET_DATA, durable: js-copy, ack_wait: 2s }
    to:
      - subject: "jsout.{exchange}.{symbol}"
        jetstream: true
        msg_id: "{$.seq}"
"#;

#[tokio::test]
async fn jetstream_source_is_at_least_once_across_a_nats_restart() {
    let service = ServiceBuilder::new()
        .set("streams.JSOUT", json!({ "subjects": ["jsout.>"] }))
        .set(
            "nats.restart",
            json!({ "initial_backoff": "500ms", "max_backoff": "1s" }),
        )
        .route_file("js.yaml", JS_SOURCED)
        .start()
        .await;
    // The durable exists once the route task created it.
    let js = jetstream::new(service.nats_client().await);
    wait_for("durable created", WAIT, || async {
        let stream = js.get_stream("MARKET_DATA").await.ok()?;
        stream.consumer_info("js-copy").await.ok().map(|_| ())
    })
    .await;

    const N: u64 = 600;
    let mut publisher = service.nats_client().await;
    let mut pjs = jetstream::new(publisher.clone());
    let mut sent = 0;
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent < N {
        assert!(Instant::now() < deadline, "publishing stalled at {sent}");
        if sent == N / 2 && !killed {
            let pid = service.nats_pid().await.unwrap();
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL)
                .unwrap();
            killed = true;
        }
        let body = json!({ "seq": sent });
        let acked = match pjs
            .publish("trade.x.spot.BTC", body.to_string().into())
            .await
        {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if acked {
            sent += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if publisher.connection_state() != async_nats::connection::State::Connected {
                publisher = match async_nats::connect(service.nats_url()).await {
                    Ok(c) => c,
                    Err(_) => continue,
                };
                pjs = jetstream::new(publisher.clone());
            }
        }
    }
    service.wait_ready(Duration::from_secs(20)).await;
    // Every input arrives in JSOUT (msg_id de-duplicates redeliveries).
    let js = jetstream::new(service.nats_client().await);
    wait_for("every output stored", Duration::from_secs(60), || async {
        let mut stream = js.get_stream("JSOUT").await.ok()?;
        let info = stream.info().await.ok()?;
        (info.state.messages >= N).then_some(())
    })
    .await;
    let stream = js.get_stream("JSOUT").await.unwrap();
    let mut seen = BTreeSet::new();
    for seq in 1..=stream.cached_info().state.last_sequence {
        if let Ok(m) = stream.get_raw_message(seq).await {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            seen.insert(v["seq"].as_u64().unwrap());
        }
    }
    let expected: BTreeSet<u64> = (0..N).collect();
    assert_eq!(
        seen,
        expected,
        "missing: {:?}",
        expected.difference(&seen).collect::<Vec<_>>()
    );
    // And the durable has nothing left unacknowledged (acks lost in the crash are
    // redelivered after ack_wait and de-duplicated by msg_id).
    wait_for("durable drained", Duration::from_secs(30), || async {
        let stream = js.get_stream("MARKET_DATA").await.ok()?;
        let info = stream.consumer_info("js-copy").await.ok()?;
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
    .await;
}

const TWO_ROUTES_V1: &str = r#"
routes:
  - name: steady
    from: "steady.{n}"
    to:
      - subject: "steady-out.{n}"
  - name: changing
    from: "changing.{n}"
    transform:
      - set: { version: "1" }
    to:
      - subject: "changing-out.{n}"
"#;

#[tokio::test]
async fn reload_under_traffic_loses_and_duplicates_nothing() {
    let builder = ServiceBuilder::new().route_file("routes.yaml", TWO_ROUTES_V1);
    let routes_file = builder.routes_dir().join("routes.yaml");
    let service = builder.start().await;
    let client = service.nats_client().await;
    let mut steady = client.subscribe("steady-out.*").await.unwrap();
    let mut changing = client.subscribe("changing-out.*").await.unwrap();
    server_sync(&client).await;

    // Steady paced traffic on both routes until told to stop; the reload happens in the
    // middle of it, and traffic goes on for a while after the new table is in place.
    let publisher = service.nats_client().await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let traffic = tokio::spawn(async move {
        let mut i = 0usize;
        while !*stop_rx.borrow() {
            for _ in 0..50 {
                publisher
                    .publish(format!("steady.{i}"), "{}".into())
                    .await
                    .unwrap();
                publisher
                    .publish(format!("changing.{i}"), "{}".into())
                    .await
                    .unwrap();
                i += 1;
            }
            publisher.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        i
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(
        &routes_file,
        TWO_ROUTES_V1.replace("version: \"1\"", "version: \"2\""),
    )
    .unwrap();
    let (status, body) = service.post("/api/v1/routes/reload", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["version"], 2);
    let kept: BTreeSet<String> = body["data"]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kept,
        BTreeSet::from(["steady".to_string(), "changing".to_string()])
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_tx.send(true).unwrap();
    let n = traffic.await.unwrap();
    assert!(n >= 1000, "enough traffic around the reload: {n}");

    let got_steady = collect(&mut steady, n, WAIT).await;
    let got_changing = collect(&mut changing, n, WAIT).await;
    assert_eq!(got_steady.len() + drain(&mut steady, QUIET).await.len(), n);
    assert_eq!(
        got_changing.len() + drain(&mut changing, QUIET).await.len(),
        n
    );
    let unique: BTreeSet<String> = got_changing.iter().map(|m| m.subject.to_string()).collect();
    assert_eq!(unique.len(), n);
    let versions: Vec<String> = got_changing
        .iter()
        .map(|m| payload(m)["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        versions.last().unwrap(),
        "2",
        "the new rules apply after the reload"
    );
    assert_eq!(versions[0], "1", "traffic started under the old rules");
    let first_two = versions.iter().position(|v| v == "2").unwrap();
    assert!(
        versions[first_two..].iter().all(|v| v == "2"),
        "no old rules after the switch"
    );
}

#[tokio::test]
async fn invalid_reload_keeps_the_old_table_running() {
    let builder = ServiceBuilder::new().route_file("copy.yaml", COPY_ROUTE);
    let routes_dir = builder.routes_dir();
    let service = builder.start().await;
    std::fs::write(
        routes_dir.join("broken.yaml"),
        "routes:\n  - name: broken\n    from: \"x.{a}\"\n    to:\n      - subject: \"y.{nope}\"\n",
    )
    .unwrap();
    let (status, body) = service.post("/api/v1/routes/reload", &json!({})).await;
    let message = assert_error(status, &body, 400, "INVALID_ROUTES");
    assert!(message.contains("broken.yaml:5"), "{message}");
    assert!(message.contains("nope"), "{message}");
    assert_eq!(body["data"]["version"], 1);
    let (_, routes) = service.get("/api/v1/routes").await;
    assert_eq!(routes["data"]["version"], 1);
    assert_eq!(routes["data"]["last_reload"]["ok"], false);
    // The old table still routes.
    let client = service.nats_client().await;
    let mut out = client.subscribe("out.*").await.unwrap();
    server_sync(&client).await;
    client.publish("in.1", "x".into()).await.unwrap();
    assert_eq!(collect(&mut out, 1, WAIT).await.len(), 1);
    let metrics = service
        .http
        .get(service.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("prism_route_reloads_total{outcome=\"failed\"} 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn file_changes_and_sighup_reload_the_table() {
    let builder = ServiceBuilder::new()
        .set("router.watch", json!(true))
        .route_file("copy.yaml", COPY_ROUTE);
    let routes_dir = builder.routes_dir();
    let service = builder.start().await;
    std::fs::write(
        routes_dir.join("more.yaml"),
        "routes:\n  - name: extra\n    from: \"extra.{n}\"\n    to:\n      - subject: \"extra-out.{n}\"\n",
    )
    .unwrap();
    wait_for("watch reload", WAIT, || async {
        let (_, body) = service.get("/api/v1/routes").await;
        (body["data"]["count"] == 2).then_some(())
    })
    .await;
    let client = service.nats_client().await;
    let mut out = client.subscribe("extra-out.*").await.unwrap();
    server_sync(&client).await;
    client.publish("extra.1", "x".into()).await.unwrap();
    assert_eq!(collect(&mut out, 1, WAIT).await.len(), 1);

    // SIGHUP reloads too (and does not stop the service).
    let (_, before) = service.get("/api/v1/routes").await;
    let version = before["data"]["version"].as_u64().unwrap();
    service.signal(Signal::SIGHUP);
    wait_for("sighup reload", WAIT, || async {
        let (_, body) = service.get("/api/v1/routes").await;
        (body["data"]["version"].as_u64() == Some(version + 1)).then_some(())
    })
    .await;
    assert_eq!(service.get("/ready").await.0, 200);
}

#[tokio::test]
async fn routes_api_lists_routes_and_dry_runs_without_publishing() {
    let service = ServiceBuilder::new().shipped_rules().start().await;
    let (status, body) = service.get("/api/v1/routes").await;
    assert_eq!(status, 200);
    // market-data.yaml, legacy.yaml and the stateful market-state.yaml
    assert_eq!(body["data"]["count"], 7);
    let trades = body["data"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "trades-canonical")
        .unwrap();
    assert_eq!(trades["subscription"], "trade.*.*.*");
    assert_eq!(trades["source"]["core"]["queue_group"], "prism-router");
    assert_eq!(trades["queue"], "prism-router.trades-canonical");
    assert_eq!(
        trades["outputs"][0]["subject"],
        "canonical.trade.{exchange}.{market_type}.{symbol}"
    );
    for key in [
        "matched",
        "passed",
        "filtered",
        "published",
        "errored",
        "dead_lettered",
    ] {
        assert_eq!(trades["counters"][key], 0, "{key}");
    }
    let (status, body) = service.get("/api/v1/routes/nope").await;
    assert_error(status, &body, 404, "ROUTE_NOT_FOUND");

    let client = service.nats_client().await;
    let mut canonical = client.subscribe("canonical.>").await.unwrap();
    server_sync(&client).await;
    let (subject, _, trade) = samples().into_iter().next().unwrap();
    let (status, body) = service
        .post(
            "/api/v1/routes/test",
            &json!({ "subject": subject, "message": trade }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let result = &body["data"]["results"][0];
    assert_eq!(result["route"], "trades-canonical");
    assert_eq!(result["outcome"], "outputs");
    assert_eq!(
        result["messages"][0]["subject"],
        "canonical.trade.binance.spot.BTC-USDT"
    );
    assert_eq!(result["messages"][0]["payload"]["price"], json!(67234.56));
    assert!(
        drain(&mut canonical, QUIET).await.is_empty(),
        "a dry run publishes nothing"
    );
    let (status, body) = service
        .post(
            "/api/v1/routes/test",
            &json!({ "subject": "a.*", "message": 1 }),
        )
        .await;
    assert_error(status, &body, 400, "INVALID_MESSAGE_DATA");
    // a header NATS could not carry is bad input; a rendered one goes to on_error
    let (status, body) = service
        .post(
            "/api/v1/routes/test",
            &json!({ "subject": subject, "headers": {"Zürich": "x"}, "message": trade }),
        )
        .await;
    assert_error(status, &body, 400, "INVALID_MESSAGE_DATA");
    assert!(
        body["message"].as_str().unwrap().contains("Zürich"),
        "{body}"
    );
    let mut broken = trade.clone();
    broken["trade_id"] = json!("a\nb");
    let (status, body) = service
        .post(
            "/api/v1/routes/test",
            &json!({ "subject": subject, "message": broken }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let result = &body["data"]["results"][0];
    assert_eq!(result["outcome"], "failed", "{body}");
    assert!(
        result["error"].as_str().unwrap().contains("Nats-Msg-Id"),
        "{body}"
    );
}

#[tokio::test]
async fn invalid_rules_at_start_up_exit_2_with_file_and_line() {
    let builder = ServiceBuilder::new().route_file(
        "bad.yaml",
        "routes:\n  - name: a\n    from: \"a.{x}\"\n    to:\n      - subject: \"a.{x}\"\n",
    );
    let (status, log) = builder.run_to_exit(None);
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("bad.yaml:"), "{log}");
    assert!(log.contains("route a"), "{log}");
}
