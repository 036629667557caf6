//! Router benchmark: the shipped trade route (capture + condition + 4-step transform +
//! templated output with msg_id) against a hand-written async-nats forwarder doing the
//! same parse → modify → serialize → publish, measured in the same run on the same
//! nats-server.
//!
//! `cargo bench --bench router` (env: `BENCH_SECS`, default 10 per phase; `BENCH_RATE`,
//! default 20000 msgs/s for the latency phase; `BENCH_JS_MSGS`, default 100000).
//!
//! Core NATS, in two setups (a service each): no stream stores the inputs (what the route
//! itself costs), then the inputs are stored in file streams (production's default for
//! `trade.>`, and a like stream for the forwarder's inputs, with a like idle consumer, see
//! [`twin_consumer`]). In each setup:
//! 1. throughput with zero loss: a publisher keeps at most `WINDOW` messages in flight
//!    (published minus received downstream), so nothing overflows and every input must
//!    come out; the rate is outputs per second. With a full window the publisher waits for
//!    the sink's progress signal rather than spinning on the cores it measures. The CPU each
//!    process spent per output message (from `/proc`) is printed for both sides;
//! 2. end-to-end latency (publish → output received) at a fixed offered rate.
//!
//! In both phases the forwarder and the route alternate in `ROUNDS` windows, so both see
//! the same share of the shared machine's noise.
//!
//! Then a JetStream-sourced route with a JetStream output against a hand-written pull
//! consumer: N messages stored in the input stream while both consume, timed until all N
//! are stored in the output stream.
//!
//! Last, the shipped candle route (`trade-candles-1m`: dedupe, one-minute windows) against
//! the stateless trade route (`trades-canonical`) in one service, each on its own subjects,
//! alternating: N distinct trades published at once, timed until the route counted N
//! matched (`BENCH_STATE_MSGS`, default 100000 per round; `BENCH_ONLY=state` runs this
//! comparison alone). The core comparison above
//! leaves the stateful routes (`routes.d/market-state.yaml`) out, so it measures the
//! trade route alone as before.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::pull};
use async_nats::HeaderMap;
use bytes::Bytes;
use common::{
    cpu_ticks, env_or, listing_only, own_thread, percentile_ms, shipped_rules, start_service,
    Service, TRADE,
};
use futures::StreamExt;
use prism_broker::config::MARKET_DATA_SUBJECTS;
use serde_json::{json, Value};

/// Messages in flight (published, not yet seen downstream) in the throughput phase.
const WINDOW: u64 = 5_000;
const SYMBOLS: [&str; 16] = [
    "BTC-USDT",
    "ETH-USDT",
    "SOL-USDT",
    "XRP-USDT",
    "DOGE-USDT",
    "ADA-USDT",
    "DOT-USDT",
    "LTC-USDT",
    "BNB-USDT",
    "TRX-USDT",
    "AVAX-USDT",
    "LINK-USDT",
    "ATOM-USDT",
    "XLM-USDT",
    "ETC-USDT",
    "FIL-USDT",
];

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    (now_ns() / 1_000_000) as i64
}

/// The sample trade for `symbol`.
fn trade(symbol: &str) -> Bytes {
    let mut v: Value = serde_json::from_str(TRADE).unwrap();
    v["symbol"] = json!(symbol);
    Bytes::from(v.to_string())
}

/// The sample trade for `symbol` without its closing brace, to which [`stamped`] adds the
/// send time: the latency publisher then costs one small format per message.
fn open_trade(symbol: &str) -> String {
    let mut text = String::from_utf8(trade(symbol).to_vec()).unwrap();
    text.pop();
    text
}

fn stamped(open: &str, sent_ns: u64) -> Bytes {
    Bytes::from(format!("{open},\"bench_sent_ns\":{sent_ns}}}"))
}

/// The hand-written forwarder: what the trade route does, written directly against
/// async-nats and serde_json on one thread with its own connection.
fn spawn_forwarder(url: String, input: &'static str) -> std::thread::JoinHandle<()> {
    let thread = std::thread::Builder::new().name("forwarder".into());
    thread
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let client = async_nats::ConnectOptions::new()
                    .subscription_capacity(256 * 1024)
                    .connect(&url)
                    .await
                    .unwrap();
                let mut sub = client.subscribe(input).await.unwrap();
                while let Some(msg) = sub.next().await {
                    // raw.trade.{exchange}.{market_type}.{symbol}
                    let tokens: Vec<&str> = msg.subject.split('.').collect();
                    let (exchange, market_type, symbol) = (tokens[2], tokens[3], tokens[4]);
                    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&msg.payload)
                    else {
                        continue;
                    };
                    let side_ok = matches!(
                        obj.get("side").and_then(Value::as_str),
                        Some("buy" | "sell")
                    );
                    if !(obj.contains_key("price") && obj.contains_key("quantity") && side_ok) {
                        continue;
                    }
                    if let Some(ts) = obj.remove("trade_ts_ms") {
                        obj.insert("event_ts_ms".into(), ts);
                    }
                    for field in ["price", "quantity"] {
                        let number = obj
                            .get(field)
                            .and_then(Value::as_str)
                            .and_then(|s| s.parse::<f64>().ok())
                            .and_then(serde_json::Number::from_f64);
                        if let Some(n) = number {
                            obj.insert(field.into(), Value::Number(n));
                        }
                    }
                    obj.insert("venue".into(), json!(format!("{exchange}.{market_type}")));
                    obj.insert("routed_at_ms".into(), json!(now_ms()));
                    obj.remove("publisher");
                    obj.remove("data_source");
                    let trade_id = obj
                        .get("trade_id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let body = serde_json::to_vec(&Value::Object(obj)).unwrap();
                    let mut headers = HeaderMap::new();
                    headers.insert(
                        "Nats-Msg-Id",
                        format!("{exchange}:{symbol}:{trade_id}").as_str(),
                    );
                    let subject = format!("raw.canonical.trade.{exchange}.{market_type}.{symbol}");
                    if client
                        .publish_with_headers(subject, headers, body.into())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        })
        .unwrap()
}

/// The `bench_sent_ns` stamp of an output, found without parsing the whole payload (the
/// sink shares the two cores with what it measures).
fn sent_ns(payload: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"bench_sent_ns\":";
    let at = payload.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: Vec<u8> = payload[at..]
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Counts outputs on `filter`; with `latency`, records publish → receive times (µs).
struct Sink {
    received: Arc<AtomicU64>,
    /// Signalled every [`PROGRESS_EVERY`] outputs, so a publisher with a full window waits
    /// instead of spinning on the cores it measures.
    progress: Arc<tokio::sync::Notify>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<u64>>,
}

impl Sink {
    /// Stops the sink and returns the latencies it recorded (µs).
    async fn finish(self) -> Vec<u64> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

async fn sink(url: &str, filter: &'static str, latency: bool) -> Sink {
    let client = async_nats::ConnectOptions::new()
        .subscription_capacity(1024 * 1024)
        .connect(url)
        .await
        .unwrap();
    let mut sub = client.subscribe(filter).await.unwrap();
    client.flush().await.unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let progress = Arc::new(tokio::sync::Notify::new());
    let signal = progress.clone();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let _client = client;
        let mut latencies = Vec::new();
        loop {
            let msg = tokio::select! {
                _ = stopped.changed() => break,
                next = sub.next() => match next { Some(msg) => msg, None => break },
            };
            if latency {
                let sent = sent_ns(&msg.payload);
                if let Some(sent) = sent {
                    latencies.push(now_ns().saturating_sub(sent) / 1000);
                }
            }
            if counter
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(PROGRESS_EVERY)
            {
                signal.notify_one();
            }
        }
        latencies
    });
    Sink {
        received,
        progress,
        stop,
        task,
    }
}

/// How many outputs apart a [`Sink`] signals progress.
const PROGRESS_EVERY: u64 = 250;

/// Publishes as fast as the window allows for `secs`; returns (sent, received, elapsed).
async fn throughput(url: &str, prefix: &str, sink: &Sink, secs: Duration) -> (u64, u64, Duration) {
    let base = sink.received.load(Ordering::Relaxed);
    let received = || sink.received.load(Ordering::Relaxed) - base;
    let client = async_nats::connect(url).await.unwrap();
    let payloads: Vec<Bytes> = SYMBOLS.iter().map(|s| trade(s)).collect();
    let subjects: Vec<String> = SYMBOLS
        .iter()
        .map(|s| format!("{prefix}.binance.spot.{s}"))
        .collect();
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < secs {
        if sent - received() >= WINDOW {
            // at least WINDOW / PROGRESS_EVERY signals are still to come unless outputs are
            // lost; the timeout keeps a loss from stalling the phase
            let _ = tokio::time::timeout(Duration::from_millis(2), sink.progress.notified()).await;
            continue;
        }
        let i = (sent as usize) % SYMBOLS.len();
        client
            .publish(subjects[i].clone(), payloads[i].clone())
            .await
            .unwrap();
        sent += 1;
    }
    client.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received() < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (sent, received(), started.elapsed())
}

/// Publishes at `rate` msgs/s for `secs`, each stamped with its send time.
async fn paced(url: &str, prefix: &str, rate: u64, secs: Duration) -> u64 {
    let client = async_nats::connect(url).await.unwrap();
    let subjects: Vec<String> = SYMBOLS
        .iter()
        .map(|s| format!("{prefix}.binance.spot.{s}"))
        .collect();
    let opened: Vec<String> = SYMBOLS.iter().map(|s| open_trade(s)).collect();
    let per_tick = (rate / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < secs {
        tick.tick().await;
        for _ in 0..per_tick {
            let i = (sent as usize) % SYMBOLS.len();
            client
                .publish(subjects[i].clone(), stamped(&opened[i], now_ns()))
                .await
                .unwrap();
            sent += 1;
        }
    }
    client.flush().await.unwrap();
    sent
}

struct Row {
    name: &'static str,
    rate: f64,
    lost: i64,
    p50: f64,
    p99: f64,
}

/// One side of the core comparison: where its inputs go and where its outputs come out.
struct Side {
    name: &'static str,
    prefix: &'static str,
    out: &'static str,
}

/// Rounds of each phase; the two sides alternate every `secs / ROUNDS`.
const ROUNDS: u32 = 5;

/// Throughput, then latency, each with the two sides alternating in short windows, so
/// that both see the same share of the machine's noise.
async fn measure_core(service: &Service, sides: &[Side; 2], secs: Duration, rate: u64) -> [Row; 2] {
    let mut totals = [(0u64, 0u64, Duration::ZERO); 2];
    let sinks = [
        sink(&service.nats, sides[0].out, false).await,
        sink(&service.nats, sides[1].out, false).await,
    ];
    // CPU of each process during each side's windows: where the time goes per message.
    let [broker, nats] = service.procs();
    let forwarder = own_thread("forwarder").unwrap_or_default();
    let paths = [broker, nats, "/proc/self".to_string(), forwarder];
    let mut cpu = [[0u64; 4]; 2];
    for _ in 0..ROUNDS {
        for (i, side) in sides.iter().enumerate() {
            let before = paths.each_ref().map(|p| cpu_ticks(p));
            let (sent, received, elapsed) =
                throughput(&service.nats, side.prefix, &sinks[i], secs / ROUNDS).await;
            for (k, p) in paths.iter().enumerate() {
                cpu[i][k] += cpu_ticks(p).saturating_sub(before[k]);
            }
            totals[i].0 += sent;
            totals[i].1 += received;
            totals[i].2 += elapsed;
        }
    }
    for s in sinks {
        s.finish().await;
    }
    println!();
    println!("CPU per output message in the throughput phase, µs (the bench process holds the publisher, the sinks and the forwarder's thread):");
    println!();
    println!("| side | broker | nats-server | bench process | of which forwarder | cores busy |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, side) in sides.iter().enumerate() {
        let per = |ticks: u64| ticks as f64 * 10_000.0 / totals[i].1.max(1) as f64;
        let busy = (cpu[i][0] + cpu[i][1] + cpu[i][2]) as f64 / 100.0 / totals[i].2.as_secs_f64();
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {busy:.2} |",
            side.name,
            per(cpu[i][0]),
            per(cpu[i][1]),
            per(cpu[i][2]),
            per(cpu[i][3])
        );
    }
    let mut sinks = Vec::new();
    for side in sides {
        sinks.push(sink(&service.nats, side.out, true).await);
    }
    let mut offered = [0u64; 2];
    for _ in 0..ROUNDS {
        for (i, side) in sides.iter().enumerate() {
            offered[i] += paced(&service.nats, side.prefix, rate, secs / ROUNDS).await;
        }
    }
    let mut rows = Vec::new();
    for (i, s) in sinks.into_iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.received.load(Ordering::Relaxed) < offered[i] && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut latencies = s.finish().await;
        latencies.sort_unstable();
        let (sent, received, elapsed) = totals[i];
        rows.push(Row {
            name: sides[i].name,
            rate: received as f64 / elapsed.as_secs_f64(),
            lost: sent as i64 - received as i64,
            p50: percentile_ms(&latencies, 0.50),
            p99: percentile_ms(&latencies, 0.99),
        });
    }
    let Ok(rows) = <[Row; 2]>::try_from(rows) else {
        unreachable!("one row per side")
    };
    rows
}

const JS_ROUTE: &str = r#"
routes:
  - name: trades-js
    from: "trade.{exchange}.{market_type}.{symbol}"
    source:
      jetstream: { stream: MARKET_DATA, durable: bench-trades, max_ack_pending: 20000 }
    when:
      - path: "$.price"
        exists: true
      - path: "$.quantity"
        exists: true
      - path: "$.side"
        in: [buy, sell]
    transform: [trade-canonical]
    to:
      - subject: "canonical_js.trade.{exchange}.{market_type}.{symbol}"
        jetstream: true
"#;

/// A pull consumer on `RAW_TRADES` like the one the shipped `large-liquidations` route keeps
/// on `MARKET_DATA` (a filter none of the bench's traffic matches, 2 s idle heartbeats), so
/// nats-server does the same per-message work for both streams: without it the route's
/// stored inputs paid about 0.05 ms more at p50 than the forwarder's.
async fn twin_consumer(url: &str) {
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    let stream = js.get_stream("RAW_TRADES").await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("twin-large-liquidations".into()),
            filter_subject: "raw.trade.none.>".into(),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::spawn(async move {
        let Ok(mut messages) = consumer
            .stream()
            .heartbeat(Duration::from_secs(2))
            .messages()
            .await
        else {
            return;
        };
        while let Some(Ok(_)) = messages.next().await {}
    });
}

/// Stores `n` trades in MARKET_DATA (acked), pipelined.
async fn fill_market_data(js: &jetstream::Context, prefix: &str, n: u64) {
    let mut acks = futures::stream::FuturesUnordered::new();
    for i in 0..n {
        let s = SYMBOLS[(i as usize) % SYMBOLS.len()];
        let ack = js
            .publish(format!("{prefix}.binance.spot.{s}"), trade(s))
            .await
            .unwrap();
        acks.push(std::future::IntoFuture::into_future(ack));
        if acks.len() >= 2000 {
            acks.next().await.unwrap().unwrap();
        }
    }
    while let Some(ack) = acks.next().await {
        ack.unwrap();
    }
}

async fn stream_count(js: &jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// The hand-written JetStream forwarder: pull, transform, publish with acks, ack inputs.
async fn js_forwarder(url: String, n: u64) {
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client);
    let stream = js.get_stream("RAW_IN").await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("raw-forwarder".into()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut done = 0;
    let mut inflight = futures::stream::FuturesOrdered::new();
    while done < n {
        tokio::select! {
            Some(r) = inflight.next(), if !inflight.is_empty() => {
                let (msg, ack): (async_nats::jetstream::Message, async_nats::jetstream::context::PublishAckFuture) = r;
                ack.await.unwrap();
                msg.ack().await.unwrap();
                done += 1;
            }
            Some(Ok(msg)) = messages.next(), if inflight.len() < 4096 => {
                let tokens: Vec<String> = msg.subject.split('.').map(String::from).collect();
                let mut v: Value = serde_json::from_slice(&msg.payload).unwrap();
                let obj = v.as_object_mut().unwrap();
                if let Some(ts) = obj.remove("trade_ts_ms") { obj.insert("event_ts_ms".into(), ts); }
                for field in ["price", "quantity"] {
                    if let Some(n) = obj.get(field).and_then(Value::as_str).and_then(|s| s.parse::<f64>().ok()) {
                        obj.insert(field.into(), json!(n));
                    }
                }
                // raw_js_in.{exchange}.{market_type}.{symbol}
                obj.insert("venue".into(), json!(format!("{}.{}", tokens[1], tokens[2])));
                obj.insert("routed_at_ms".into(), json!(now_ms()));
                obj.remove("publisher");
                obj.remove("data_source");
                let subject = format!("raw_js_out.{}.{}.{}", tokens[1], tokens[2], tokens[3]);
                let ack = js.publish(subject, serde_json::to_vec(&v).unwrap().into()).await.unwrap();
                inflight.push_back(async move { (msg, ack) });
            }
        }
    }
}

fn main() {
    if listing_only() {
        return;
    }
    let secs = Duration::from_secs(env_or("BENCH_SECS", 10));
    let rate = env_or("BENCH_RATE", 20_000);
    let js_msgs = env_or("BENCH_JS_MSGS", 100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // BENCH_ONLY=state runs the stateful comparison alone
        if std::env::var("BENCH_ONLY").as_deref() == Ok("state") {
            stateful_phase(env_or("BENCH_STATE_MSGS", 100_000)).await;
            return;
        }
        println!("router benchmark: {secs:?} per phase, latency at {rate} msgs/s, {js_msgs} JetStream messages");

        // Core NATS: the shipped rules against the hand-written forwarder, twice. First
        // with no stream storing the inputs (what the route itself costs), then with the
        // default MARKET_DATA storing `trade.>` and a like stream storing the forwarder's
        // `raw.trade.>`, as in production. In both, the two sides pay the same server work.
        let market_data: Vec<&str> = MARKET_DATA_SUBJECTS.iter().copied().filter(|s| *s != "trade.>").collect();
        // Without `trade.>` in a stream the shipped legacy route (`market.>` in, a
        // JetStream output on `trade.*`) is refused, so that setup leaves it out; it sees
        // none of the bench's traffic either way.
        let stateless = || -> Vec<(String, String)> {
            shipped_rules().into_iter().filter(|(name, _)| name != "market-state.yaml").collect()
        };
        let without_legacy: Vec<(String, String)> =
            stateless().into_iter().filter(|(name, _)| name != "legacy.yaml").collect();
        let setups = [
            ("inputs not stored", without_legacy, json!({ "streams": { "MARKET_DATA": { "subjects": market_data } } })),
            ("inputs stored in file streams", stateless(), json!({ "streams": {
                "RAW_TRADES": { "subjects": ["raw.trade.>"], "max_age": 3600, "max_msgs": 10000000 },
            } })),
        ];
        for (setup, rules, config) in setups {
            let service = start_service(&rules, config).await;
            let forwarder = spawn_forwarder(service.nats.clone(), "raw.trade.*.*.*");
            if setup.starts_with("inputs stored") {
                twin_consumer(&service.nats).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let sides = [
                Side { name: "hand-written async-nats forwarder", prefix: "raw.trade", out: "raw.canonical.>" },
                Side { name: "prism-broker route trades-canonical", prefix: "trade", out: "canonical.trade.>" },
            ];
            let [baseline, router] = measure_core(&service, &sides, secs, rate).await;
            let (rss, peak) = service.rss_mib();
            drop(service);
            drop(forwarder); // the thread ends with the server

            println!();
            println!("core NATS, {setup}:");
            println!();
            println!("| core NATS | msgs/s (zero loss) | lost | p50 ms @ {rate}/s | p99 ms @ {rate}/s |");
            println!("|---|---:|---:|---:|---:|");
            for row in [&baseline, &router] {
                println!("| {} | {:.0} | {} | {:.2} | {:.2} |", row.name, row.rate, row.lost, row.p50, row.p99);
            }
            println!();
            println!("router / forwarder throughput: {:.2}", router.rate / baseline.rate);
            println!("service resident memory: {rss} MiB after the core phases (peak {peak} MiB)");
        }

        // JetStream source and output.
        let mut rules: Vec<(String, String)> = shipped_rules()
            .into_iter()
            .filter(|(name, _)| name.starts_with("transforms/"))
            .collect();
        rules.push(("bench.yaml".into(), JS_ROUTE.into()));
        let service = start_service(
            &rules,
            json!({ "streams": {
                "CANONICAL_JS": { "subjects": ["canonical_js.>"], "max_msgs": 10000000 },
                "RAW_IN": { "subjects": ["raw_js_in.>"], "max_msgs": 10000000 },
                "RAW_OUT": { "subjects": ["raw_js_out.>"], "max_msgs": 10000000 },
            } }),
        )
        .await;
        let js = jetstream::new(async_nats::connect(&service.nats).await.unwrap());

        // Both sides consume while the input stream is being filled, so both are timed from
        // the first stored input to the last output.
        let forwarder = tokio::spawn(js_forwarder(service.nats.clone(), js_msgs));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        fill_market_data(&js, "raw_js_in", js_msgs).await;
        forwarder.await.unwrap();
        let baseline_rate = js_msgs as f64 / started.elapsed().as_secs_f64();

        let started = Instant::now();
        fill_market_data(&js, "trade", js_msgs).await;
        let fill = started.elapsed();
        while stream_count(&js, "CANONICAL_JS").await < js_msgs {
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(started.elapsed() < Duration::from_secs(300), "jetstream route stalled");
        }
        let router_rate = js_msgs as f64 / started.elapsed().as_secs_f64();
        let (rss, peak) = service.rss_mib();
        println!();
        println!("| JetStream source → JetStream output | msgs/s |");
        println!("|---|---:|");
        println!("| hand-written pull → publish (acked) → ack | {baseline_rate:.0} |");
        println!("| prism-broker route | {router_rate:.0} |");
        println!("(filling the input stream took {:.1}s of the route's run)", fill.as_secs_f64());
        println!();
        println!("router / forwarder throughput (JetStream): {:.2}", router_rate / baseline_rate);
        println!("service resident memory: {rss} MiB after the JetStream phase (peak {peak} MiB)");
        drop(service);

        stateful_phase(env_or("BENCH_STATE_MSGS", 100_000)).await;
    });
}

/// The shipped candle route on `ctrade.*` (otherwise as shipped) beside the shipped trade
/// route on `trade.*`; a stream stores `ctrade.>` as MARKET_DATA stores `trade.>`.
fn candle_rules() -> Vec<(String, String)> {
    let mut rules: Vec<(String, String)> = shipped_rules()
        .into_iter()
        .filter(|(name, _)| name.starts_with("transforms/") || name == "market-data.yaml")
        .collect();
    let state = shipped_rules()
        .into_iter()
        .find(|(name, _)| name == "market-state.yaml")
        .map(|(_, text)| text)
        .unwrap();
    let candles = state.replace(
        "from: \"trade.{exchange}.{market_type}.{symbol}\"",
        "from: \"ctrade.{exchange}.{market_type}.{symbol}\"",
    );
    assert!(
        candles.contains("ctrade."),
        "the candle route's from changed"
    );
    rules.push(("market-state.yaml".into(), candles));
    rules
}

/// The `matched` counter of `route`.
async fn matched(http: &reqwest::Client, api: &str, route: &str) -> u64 {
    let body: Value = http
        .get(format!("{api}/api/v1/routes/{route}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"]["counters"]["matched"].as_u64().unwrap_or(0)
}

/// Publishes `n` distinct trades on `prefix.binance.spot.*` and waits until `route`
/// matched them all; msgs/s. Trade `id` has its own trade id and the trade time
/// `epoch + 10 ms × id`: time only moves on (a round's trades are never late for the
/// windows of the round before) and a symbol's window closes every 6000 trades, as in a
/// busy live feed.
#[allow(clippy::too_many_arguments)]
async fn burst(
    client: &async_nats::Client,
    http: &reqwest::Client,
    api: &str,
    prefix: &str,
    route: &str,
    n: u64,
    first_id: u64,
    epoch: i64,
) -> f64 {
    let open: Vec<Value> = SYMBOLS
        .iter()
        .map(|s| serde_json::from_slice(&trade(s)).unwrap())
        .collect();
    let before = matched(http, api, route).await;
    let mut bodies = Vec::with_capacity(n as usize);
    for i in 0..n {
        let k = (i as usize) % SYMBOLS.len();
        let mut v = open[k].clone();
        let id = first_id + i;
        v["trade_id"] = json!(id.to_string());
        v["trade_ts_ms"] = json!(epoch + id as i64 * 10);
        bodies.push((
            format!("{prefix}.binance.spot.{}", SYMBOLS[k]),
            Bytes::from(v.to_string()),
        ));
    }
    let started = Instant::now();
    for (i, (subject, body)) in bodies.into_iter().enumerate() {
        client.publish(subject, body).await.unwrap();
        // keep the route's subscription from overflowing: at most WINDOW × 10 ahead
        if i as u64 % 1000 == 999 {
            while (i as u64 + 1).saturating_sub(matched(http, api, route).await - before)
                > WINDOW * 10
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    client.flush().await.unwrap();
    while matched(http, api, route).await - before < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{route} stalled"
        );
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// A route's counters.
async fn counters(http: &reqwest::Client, api: &str, route: &str) -> Value {
    let body: Value = http
        .get(format!("{api}/api/v1/routes/{route}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"]["counters"].clone()
}

async fn stateful_phase(n: u64) {
    // the candle route's inputs are stored like the trade route's (MARKET_DATA has
    // `trade.>`), so both sides cost the server the same
    let service = start_service(
        &candle_rules(),
        json!({ "streams": { "CTRADES": { "subjects": ["ctrade.>"], "max_age": 3600, "max_msgs": 10000000 } } }),
    )
    .await;
    let client = async_nats::ConnectOptions::new()
        .connect(&service.nats)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut trade_total, mut candle_total) = (0.0, 0.0);
    let epoch = now_ms();
    let api = service.api.as_str();
    for round in 0..ROUNDS as u64 {
        let id = round * n * 2;
        // alternate which goes first, so neither always follows the other
        let trades = || {
            burst(
                &client,
                &http,
                api,
                "trade",
                "trades-canonical",
                n,
                id,
                epoch,
            )
        };
        let candles = || {
            burst(
                &client,
                &http,
                api,
                "ctrade",
                "trade-candles-1m",
                n,
                id + n,
                epoch,
            )
        };
        let (t, c) = if round % 2 == 0 {
            let t = trades().await;
            (t, candles().await)
        } else {
            let c = candles().await;
            (trades().await, c)
        };
        println!("round {round}: trades-canonical {t:.0}/s, trade-candles-1m {c:.0}/s");
        trade_total += t;
        candle_total += c;
    }
    // the comparison measured the routes' work, not failures
    for route in ["trades-canonical", "trade-candles-1m"] {
        let c = counters(&http, api, route).await;
        assert_eq!(c["dead_lettered"], 0, "{route}: {c}");
        assert_eq!(c["errored"], 0, "{route}: {c}");
    }
    let (trade_rate, candle_rate) = (trade_total / ROUNDS as f64, candle_total / ROUNDS as f64);
    println!();
    println!("| stateful route, core NATS, {n} trades per round, {ROUNDS} rounds | msgs/s |");
    println!("|---|---:|");
    println!("| trades-canonical (stateless) | {trade_rate:.0} |");
    println!("| trade-candles-1m (dedupe + 1-minute windows) | {candle_rate:.0} |");
    println!();
    println!(
        "candle route / trade route throughput: {:.2}",
        candle_rate / trade_rate
    );
}
