//! The stateful steps live: the real binary, a real nats-server, real traffic. Conflation
//! emits on time without a further input, candles from a few hundred trades match the
//! candle computed here, a gap in a delta stream gives one gap event, a window closes by
//! the clock alone, and a reload that leaves a step alone keeps its state.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/metrics.rs"]
mod exposition;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use common::*;
use exposition::wait_metrics;
use futures::StreamExt;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn payload(msg: &async_nats::Message) -> Value {
    serde_json::from_slice(&msg.payload).unwrap()
}

async fn publish(client: &async_nats::Client, subject: &str, body: &Value) {
    client
        .publish(subject.to_string(), body.to_string().into())
        .await
        .unwrap();
}

async fn next(sub: &mut async_nats::Subscriber, deadline: Duration) -> async_nats::Message {
    tokio::time::timeout(deadline, sub.next())
        .await
        .unwrap_or_else(|_| panic!("no message within {deadline:?}"))
        .unwrap()
}

/// Nothing more arrives on `sub` for `quiet`.
async fn nothing_more(sub: &mut async_nats::Subscriber, quiet: Duration) {
    if let Ok(Some(m)) = tokio::time::timeout(quiet, sub.next()).await {
        panic!("unexpected message on {}: {:?}", m.subject, m.payload);
    }
}

/// A route counter from `/metrics`, once it reached `at_least`.
async fn metric_at_least(service: &Service, name: &str, route: &str, at_least: f64) -> f64 {
    wait_metrics(
        service,
        &format!("{name}{{route={route}}} >= {at_least}"),
        WAIT,
        |m| {
            let v = m.get(name, &[("route", route)]).unwrap_or(0.0);
            (v >= at_least).then_some(v)
        },
    )
    .await
}

const THROTTLE: &str = r#"routes:
  - name: book-thin
    from: "book.{symbol}"
    transform:
      - throttle: { key: "{symbol}", interval: 400ms, emit: latest }
    to: { subject: "thin.{symbol}" }
"#;

#[tokio::test]
async fn conflation_publishes_the_last_update_when_the_interval_ends_without_further_input() {
    let service = ServiceBuilder::new()
        .route_file("thin.yaml", THROTTLE)
        .start()
        .await;
    let client = service.nats_client().await;
    let mut thin = client.subscribe("thin.>").await.unwrap();
    server_sync(&client).await;

    for v in 1..=5 {
        publish(&client, "book.BTC", &json!({"v": v})).await;
    }
    client.flush().await.unwrap();
    let first = next(&mut thin, WAIT).await;
    let first_at = Instant::now();
    assert_eq!(payload(&first)["v"], 1, "the first update passes at once");
    // No more input: the last update of the interval comes out when the interval ends.
    let last = next(&mut thin, WAIT).await;
    assert_eq!(
        payload(&last)["v"],
        5,
        "the latest update, the others conflated"
    );
    assert!(
        first_at.elapsed() >= Duration::from_millis(250),
        "held until its interval ended, not sent at once ({:?})",
        first_at.elapsed()
    );
    nothing_more(&mut thin, Duration::from_millis(900)).await;
    assert_eq!(
        metric_at_least(
            &service,
            "prism_route_state_conflated_total",
            "book-thin",
            4.0
        )
        .await,
        4.0
    );
    // the key is forgotten once an interval passes with nothing held
    wait_metrics(&service, "no key held", WAIT, |m| {
        (m.get("prism_route_state_keys", &[("route", "book-thin")]) == Some(0.0)).then_some(())
    })
    .await;
}

/// A trade as the collectors publish it.
fn trade(id: u64, ts: i64, price: f64, qty: f64) -> Value {
    json!({"symbol": "BTC-USDT", "exchange": "binance", "market_type": "spot",
           "price": format!("{price:.2}"), "quantity": format!("{qty:.4}"),
           "side": if id.is_multiple_of(2) { "buy" } else { "sell" }, "trade_id": id.to_string(),
           "trade_ts_ms": ts, "ts_ms": ts + 5})
}

#[tokio::test]
async fn candles_from_hundreds_of_trades_match_a_computed_candle_and_are_stored() {
    let service = ServiceBuilder::new().shipped_rules().start().await;
    let client = service.nats_client().await;
    let mut klines = client.subscribe("kline.>").await.unwrap();
    server_sync(&client).await;

    // A minute five minutes ago: its candle closes by event time when a trade 2 s past its
    // end arrives (the routing clock would wait for the trades' five-minute lag).
    let start = (now_ms() / 60_000 - 5) * 60_000;
    let mut trades = Vec::new();
    for i in 0..300u64 {
        // not in time order: the exchange's time decides open and close, not arrival
        let offset = ((i * 7919) % 300) as i64 * 199;
        let price = 60_000.0 + ((i * 37) % 101) as f64 * 0.5;
        let qty = 0.001 * (1 + i % 13) as f64;
        trades.push((i + 1, start + offset, price, qty));
    }
    for (id, ts, price, qty) in &trades {
        publish(
            &client,
            "trade.binance.spot.BTC-USDT",
            &trade(*id, *ts, *price, *qty),
        )
        .await;
    }
    // 20 trades sent twice: counted once
    for (id, ts, price, qty) in trades.iter().take(20) {
        publish(
            &client,
            "trade.binance.spot.BTC-USDT",
            &trade(*id, *ts, *price, *qty),
        )
        .await;
    }
    publish(
        &client,
        "trade.binance.spot.BTC-USDT",
        &trade(10_000, start + 62_000, 1.0, 1.0),
    )
    .await;
    client.flush().await.unwrap();

    let candle = next(&mut klines, WAIT).await;
    assert_eq!(candle.subject.as_str(), "kline.binance.spot.BTC-USDT.1m");
    let c = payload(&candle);
    let by_time = {
        let mut t = trades.clone();
        t.sort_by_key(|(id, ts, _, _)| (*ts, *id));
        t
    };
    let round = |x: f64| (x * 1e8).round() / 1e8;
    let prices: Vec<f64> = trades.iter().map(|t| t.2).collect();
    assert_eq!(
        c["open"].as_f64().unwrap(),
        by_time.first().unwrap().2,
        "{c}"
    );
    assert_eq!(
        c["close"].as_f64().unwrap(),
        by_time.last().unwrap().2,
        "{c}"
    );
    assert_eq!(
        c["high"].as_f64().unwrap(),
        prices.iter().cloned().fold(f64::MIN, f64::max)
    );
    assert_eq!(
        c["low"].as_f64().unwrap(),
        prices.iter().cloned().fold(f64::MAX, f64::min)
    );
    let volume: f64 = trades
        .iter()
        .map(|t| format!("{:.4}", t.3).parse::<f64>().unwrap())
        .sum();
    assert_eq!(round(c["volume"].as_f64().unwrap()), round(volume), "{c}");
    assert_eq!(c["trades"], 300, "{c}");
    assert_eq!(c["start_ms"], start);
    assert_eq!(c["end_ms"], start + 60_000);
    assert_eq!(c["interval"], "1m");
    assert_eq!(c["symbol"], "BTC-USDT");

    // stored in KLINES, with the msg_id that makes a candle published again stored once
    let js = jetstream::new(client.clone());
    let mut stream = js.get_stream("KLINES").await.unwrap();
    let deadline = Instant::now() + WAIT;
    while stream.info().await.unwrap().state.messages < 1 {
        assert!(
            Instant::now() < deadline,
            "the candle is not stored in KLINES"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let raw = stream.get_raw_message(1).await.unwrap();
    let id = raw
        .headers
        .get("Nats-Msg-Id")
        .map(|v| v.as_str().to_string());
    assert_eq!(
        id.as_deref(),
        Some(format!("binance:spot:BTC-USDT:1m:{start}").as_str())
    );
    assert_eq!(
        metric_at_least(
            &service,
            "prism_route_state_deduplicated_total",
            "trade-candles-1m",
            20.0
        )
        .await,
        20.0
    );
    nothing_more(&mut klines, Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_gap_in_a_delta_stream_gives_one_gap_event() {
    let service = ServiceBuilder::new().shipped_rules().start().await;
    let client = service.nats_client().await;
    let mut deltas = client.subscribe("book_delta.>").await.unwrap();
    let mut gaps = client
        .subscribe("system.alert.sequence_gap.>")
        .await
        .unwrap();
    server_sync(&client).await;

    let delta = |last: u64, prev: u64| {
        json!({"exchange": "binance", "market_type": "perpetual", "symbol": "ETH-USDT",
               "update_type": "update", "last_update_id": last, "prev_update_id": prev,
               "bids": [], "asks": []})
    };
    // in order, in order, a duplicate, in order, then a gap (prev 400, last was 300), in order
    let sends = [
        (100, 90),
        (200, 100),
        (200, 100),
        (300, 200),
        (450, 400),
        (500, 450),
    ];
    for (last, prev) in sends {
        publish(
            &client,
            "orderbook.binance.perpetual.ETH-USDT",
            &delta(last, prev),
        )
        .await;
    }
    client.flush().await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(payload(&next(&mut deltas, WAIT).await)["last_update_id"].clone());
    }
    assert_eq!(
        seen,
        vec![json!(100), json!(200), json!(300), json!(450), json!(500)]
    );
    let gap = next(&mut gaps, WAIT).await;
    assert_eq!(
        gap.subject.as_str(),
        "system.alert.sequence_gap.binance.perpetual.ETH-USDT"
    );
    let g = payload(&gap);
    assert_eq!(g["expected"], 300, "{g}");
    assert_eq!(g["received"], 400, "{g}");
    assert_eq!(g["key"], "binance.perpetual.ETH-USDT", "{g}");
    nothing_more(&mut gaps, Duration::from_millis(500)).await;
    nothing_more(&mut deltas, Duration::from_millis(100)).await;
    assert_eq!(
        metric_at_least(
            &service,
            "prism_route_state_gaps_total",
            "orderbook-sequence",
            1.0
        )
        .await,
        1.0
    );
    assert_eq!(
        metric_at_least(
            &service,
            "prism_route_state_deduplicated_total",
            "orderbook-sequence",
            1.0
        )
        .await,
        1.0
    );
    // stored in SYSTEM_EVENTS
    let js = jetstream::new(client.clone());
    let mut events = js.get_stream("SYSTEM_EVENTS").await.unwrap();
    let deadline = Instant::now() + WAIT;
    while events.info().await.unwrap().state.messages < 1 {
        assert!(Instant::now() < deadline, "the gap event is not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(events.info().await.unwrap().state.messages, 1);
}

fn fast_window(lateness: &str) -> String {
    format!(
        r#"routes:
  - name: fast-candles
    from: "tick.{{symbol}}"
    transform:
      - window:
          key: "{{symbol}}"
          size: 2s
          time_from: "$.ts"
          lateness: {lateness}
          carry: [symbol]
          aggregate: {{ first: {{ first: p }}, last: {{ last: p }}, n: count, total: {{ sum: p }} }}
    to: {{ subject: "candle.{{symbol}}" }}
"#
    )
}

#[tokio::test]
async fn a_window_closes_by_the_clock_without_a_later_message() {
    let service = ServiceBuilder::new()
        .route_file("fast.yaml", &fast_window("300ms"))
        .start()
        .await;
    let client = service.nats_client().await;
    let mut candles = client.subscribe("candle.>").await.unwrap();
    server_sync(&client).await;
    // at the start of a window, so the three ticks fall in one
    let now = now_ms();
    let start = (now / 2_000 + 1) * 2_000;
    tokio::time::sleep(Duration::from_millis((start - now + 20) as u64)).await;
    for p in [1, 2, 3] {
        publish(
            &client,
            "tick.X",
            &json!({"symbol": "X", "ts": now_ms(), "p": p}),
        )
        .await;
    }
    client.flush().await.unwrap();
    let candle = next(&mut candles, WAIT).await;
    let arrived = now_ms();
    let c = payload(&candle);
    assert_eq!(c["n"], 3, "{c}");
    assert_eq!(c["total"], 6, "{c}");
    assert_eq!(c["start_ms"], start, "{c}");
    // not before the window's end plus its lateness
    assert!(arrived >= start + 2_000 + 300, "{arrived} vs {start}");
    nothing_more(&mut candles, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_reload_that_leaves_the_step_alone_keeps_its_state() {
    let builder = ServiceBuilder::new().route_file("fast.yaml", &fast_window("1s"));
    let routes_dir = builder.routes_dir();
    let service = builder.start().await;
    let client = service.nats_client().await;
    let mut candles = client.subscribe("candle.>").await.unwrap();
    server_sync(&client).await;
    // event times ten minutes old: the window closes by event time only, whatever the
    // reload takes
    let start = (now_ms() / 2_000 - 300) * 2_000;
    publish(
        &client,
        "tick.Y",
        &json!({"symbol": "Y", "ts": start + 100, "p": 10}),
    )
    .await;
    client.flush().await.unwrap();
    wait_metrics(&service, "the window holds its key", WAIT, |m| {
        (m.get("prism_route_state_keys", &[("route", "fast-candles")]) == Some(1.0)).then_some(())
    })
    .await;
    // another route added: fast-candles keeps its source and its step config
    std::fs::write(
        routes_dir.join("other.yaml"),
        "routes:\n  - name: other\n    from: \"other.x\"\n    to: { subject: \"other.y\" }\n",
    )
    .unwrap();
    let (status, body) = service.post("/api/v1/routes/reload", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["data"]["kept"]
            .as_array()
            .unwrap()
            .contains(&json!("fast-candles")),
        "{body}"
    );
    publish(
        &client,
        "tick.Y",
        &json!({"symbol": "Y", "ts": start + 200, "p": 5}),
    )
    .await;
    // closes the window by event time
    publish(
        &client,
        "tick.Y",
        &json!({"symbol": "Y", "ts": start + 3_000, "p": 1}),
    )
    .await;
    client.flush().await.unwrap();
    let c = payload(&next(&mut candles, WAIT).await);
    assert_eq!(c["start_ms"], start, "{c}");
    assert_eq!(
        c["n"], 2,
        "the message from before the reload is in the window: {c}"
    );
    assert_eq!(c["first"], 10, "{c}");
    assert_eq!(c["last"], 5, "{c}");

    // a changed step starts empty: its held window is gone
    std::fs::write(routes_dir.join("fast.yaml"), fast_window("2s")).unwrap();
    let (status, body) = service.post("/api/v1/routes/reload", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    publish(
        &client,
        "tick.Y",
        &json!({"symbol": "Y", "ts": start + 9_000, "p": 7}),
    )
    .await;
    client.flush().await.unwrap();
    wait_metrics(&service, "only the new message's key", WAIT, |m| {
        (m.get("prism_route_state_keys", &[("route", "fast-candles")]) == Some(1.0)).then_some(())
    })
    .await;
    nothing_more(&mut candles, Duration::from_millis(300)).await;
}

/// Reads a tap stream until its `end` event (or `deadline`): `(event, data)` pairs.
async fn read_tap(mut response: reqwest::Response, deadline: Duration) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let chunk = match tokio::time::timeout(left, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!("tap stream broke: {e}"),
            Err(_) => panic!("tap stream did not end within {deadline:?}: {events:?}"),
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(at) = buffer.find("\n\n") {
            let block: String = buffer.drain(..at + 2).collect();
            let mut event = String::new();
            let mut data = Value::Null;
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            events.push((event, data));
        }
    }
    events
}

#[tokio::test]
async fn a_tap_streams_what_the_route_receives_and_publishes_at_its_rate() {
    let service = ServiceBuilder::new()
        .route_file("thin.yaml", THROTTLE)
        .start()
        .await;
    let client = service.nats_client().await;
    // a quiet route costs nothing and shows nothing: the session opens on demand
    let response = service
        .http
        .get(service.url("/api/v1/routes/book-thin/tap?limit=5&seconds=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    // the first chunk is the open event, sent once the session is registered: from then
    // on the route builds events
    let mut response = response;
    let first = tokio::time::timeout(WAIT, response.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&first).starts_with("event: open\n"),
        "{first:?}"
    );
    let reading = tokio::spawn(read_tap(response, Duration::from_secs(20)));
    for v in 0..200 {
        publish(&client, "book.ETH", &json!({"v": v})).await;
    }
    client.flush().await.unwrap();
    let events = reading.await.unwrap();
    let (last, end) = events.last().unwrap();
    assert_eq!(last, "end", "{events:?}");
    assert_eq!(end["reason"], "time is up");
    let shown: Vec<&(String, Value)> = events
        .iter()
        .filter(|(e, _)| !matches!(e.as_str(), "open" | "end" | "skipped"))
        .collect();
    assert!(!shown.is_empty(), "{events:?}");
    // at 5 a second over 3 seconds: the bucket's first 5 and at most 5 a second after
    assert!(shown.len() <= 5 + 3 * 5 + 1, "{}", shown.len());
    assert_eq!(end["sent"].as_u64().unwrap(), shown.len() as u64);
    // every message gives a received event and most give none else (conflated); the rest
    // were skipped, counted
    assert!(end["skipped"].as_u64().unwrap() >= 150, "{end}");
    let (kind, e) = shown[0];
    assert_eq!(kind, "received", "{events:?}");
    assert_eq!(e["subject"], "book.ETH");
    assert_eq!(e["payload"], "{\"v\":0}");
    assert!(
        shown
            .iter()
            .any(|(k, e)| k == "published" && e["subject"] == "thin.ETH"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_tap_needs_the_token_when_one_is_set_and_refuses_bad_parameters() {
    let service = ServiceBuilder::new()
        .env("PRISM_API_TOKEN", "s3cret")
        .route_file("thin.yaml", THROTTLE)
        .start()
        .await;
    let (status, body) = service.get("/api/v1/routes/book-thin/tap").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let tap = |query: &'static str| {
        service
            .http
            .get(service.url(&format!("/api/v1/routes/book-thin/tap{query}")))
            .bearer_auth("s3cret")
            .send()
    };
    for query in ["?limit=0", "?limit=101", "?seconds=0", "?seconds=601"] {
        let response = tap(query).await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error_code"], "INVALID_PARAMETERS", "{body}");
    }
    let response = service
        .http
        .get(service.url("/api/v1/routes/nope/tap"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let response = tap("?seconds=1").await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let events = read_tap(response, Duration::from_secs(15)).await;
    assert_eq!(events.last().unwrap().0, "end", "{events:?}");
    // reads of other endpoints stay open
    let (status, _) = service.get("/api/v1/routes/book-thin").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn prism_broker_tap_prints_the_events_in_a_terminal() {
    use std::io::BufRead;

    let service = ServiceBuilder::new()
        .route_file("thin.yaml", THROTTLE)
        .start()
        .await;
    let client = service.nats_client().await;
    let mut child = std::process::Command::new(BIN)
        .args([
            "tap",
            "book-thin",
            "--seconds",
            "4",
            "--limit",
            "20",
            "--url",
        ])
        .arg(&service.base)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // the tap is open once the CLI printed its first line
    let first = tokio::time::timeout(WAIT, lines.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, "tapping route book-thin at most 20 events/s for 4 s");
    // updates every 50 ms until the terminal shows one received and one emitted (a
    // conflated update let go of at the end of its interval) and the tap ends
    let mut seen = vec![first];
    let deadline = Instant::now() + WAIT;
    let mut v = 0;
    let mut ended = false;
    while !ended {
        assert!(Instant::now() < deadline, "{seen:#?}");
        publish(&client, "book.SOL", &json!({"v": v})).await;
        client.flush().await.unwrap();
        v += 1;
        if let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(50), lines.recv()).await
        {
            ended = line.starts_with("end: time is up");
            seen.push(line);
        }
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{seen:#?}");
    assert!(
        seen.iter()
            .any(|l| l.contains(" received ") && l.contains("book.SOL {\"v\":")),
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains(" emitted ") && l.contains("thin.SOL {\"v\":")),
        "{seen:#?}"
    );
}

const JS_WINDOW: &str = r#"routes:
  - name: js-candles
    from: "trade.{exchange}.{market_type}.{symbol}"
    source:
      jetstream: { stream: MARKET_DATA, durable: js-candles, ack_wait: 2s }
    transform:
      - window:
          key: "{symbol}"
          size: 1m
          time_from: "$.trade_ts_ms"
          lateness: 1s
          carry: [symbol]
          aggregate: { n: count, volume: { sum: quantity } }
    to:
      - subject: "kline.{exchange}.{market_type}.{symbol}.js"
        jetstream: true
        msg_id: "{symbol}:{$.start_ms}"
"#;

/// `(ack pending, ack floor stream sequence, redelivered)` of a durable.
async fn consumer_state(js: &jetstream::Context, durable: &str) -> (usize, u64, usize) {
    let stream = js.get_stream("MARKET_DATA").await.unwrap();
    let mut consumer: jetstream::consumer::Consumer<jetstream::consumer::pull::Config> =
        stream.get_consumer(durable).await.unwrap();
    let info = consumer.info().await.unwrap();
    (
        info.num_ack_pending,
        info.ack_floor.stream_sequence,
        info.num_redelivered,
    )
}

#[tokio::test]
async fn a_jetstream_input_held_in_a_window_is_acked_once_its_candle_is_stored() {
    let service = ServiceBuilder::new()
        .route_file("js.yaml", JS_WINDOW)
        .start()
        .await;
    let client = service.nats_client().await;
    let js = jetstream::new(client.clone());
    // a minute five minutes ago: the window closes by event time only
    let start = (now_ms() / 60_000 - 5) * 60_000;
    for i in 0..20u64 {
        js.publish(
            "trade.binance.spot.XRP-USDT",
            trade(i + 1, start + i as i64 * 1000, 0.5, 2.0)
                .to_string()
                .into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    // all 20 are held: delivered, not acknowledged
    let deadline = Instant::now() + WAIT;
    while consumer_state(&js, "js-candles").await.0 != 20 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            consumer_state(&js, "js-candles").await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // longer than ack_wait (2 s): progress acks keep them from being delivered again
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(3) {
        let (pending, floor, redelivered) = consumer_state(&js, "js-candles").await;
        assert_eq!((pending, floor, redelivered), (20, 0, 0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // a trade past the minute and its lateness closes the candle; the 20 are acked once it
    // is stored, the closing trade stays held in the next window
    js.publish(
        "trade.binance.spot.XRP-USDT",
        trade(21, start + 61_000, 0.5, 1.0).to_string().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let mut klines = js.get_stream("KLINES").await.unwrap();
    let deadline = Instant::now() + WAIT;
    while klines.info().await.unwrap().state.messages < 1 {
        assert!(Instant::now() < deadline, "no candle stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let candle: Value =
        serde_json::from_slice(&klines.get_raw_message(1).await.unwrap().payload).unwrap();
    assert_eq!(candle["n"], 20, "{candle}");
    assert_eq!(candle["volume"], 40, "{candle}");
    let deadline = Instant::now() + WAIT;
    loop {
        let state = consumer_state(&js, "js-candles").await;
        if state == (1, 20, 0) {
            break;
        }
        assert!(Instant::now() < deadline, "{state:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_reload_that_drops_a_window_delivers_its_held_inputs_again() {
    let builder = ServiceBuilder::new().route_file("js.yaml", JS_WINDOW);
    let routes_dir = builder.routes_dir();
    let service = builder.start().await;
    let client = service.nats_client().await;
    let js = jetstream::new(client.clone());
    let start = (now_ms() / 60_000 - 5) * 60_000;
    for i in 0..10u64 {
        js.publish(
            "trade.binance.spot.ADA-USDT",
            trade(i + 1, start + i as i64 * 1000, 0.5, 1.0)
                .to_string()
                .into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while consumer_state(&js, "js-candles").await.0 != 10 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            consumer_state(&js, "js-candles").await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the window's config changes, its source does not: the task stays, the window's state
    // is dropped, and the inputs it held are delivered again into the new one
    std::fs::write(
        routes_dir.join("js.yaml"),
        JS_WINDOW.replace("lateness: 1s", "lateness: 2s"),
    )
    .unwrap();
    let (status, body) = service.post("/api/v1/routes/reload", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["data"]["kept"]
            .as_array()
            .unwrap()
            .contains(&json!("js-candles")),
        "{body}"
    );
    js.publish(
        "trade.binance.spot.ADA-USDT",
        trade(11, start + 62_000, 0.5, 1.0).to_string().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let mut klines = js.get_stream("KLINES").await.unwrap();
    let deadline = Instant::now() + WAIT;
    while klines.info().await.unwrap().state.messages < 1 {
        assert!(Instant::now() < deadline, "no candle stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let candle: Value =
        serde_json::from_slice(&klines.get_raw_message(1).await.unwrap().payload).unwrap();
    assert_eq!(candle["n"], 10, "each held input counted once: {candle}");
    let deadline = Instant::now() + WAIT;
    loop {
        let (pending, floor, _) = consumer_state(&js, "js-candles").await;
        if (pending, floor) == (1, 10) {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} {floor}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
