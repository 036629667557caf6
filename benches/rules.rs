//! Micro-benchmark of the shipped `trades-canonical` route on a sample trade: subject match,
//! JSON parse, `when`, the `trade-canonical` pipeline, output rendering and JSON serialize —
//! everything the live router does per message except the network.
//!
//! `cargo bench --bench rules -- --measurement-time 3`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prism_broker::rules::{Headers, RouteOutcome, RouteTable, SourceFile, TableSettings};

const TRADE: &str = r#"{"symbol": "BTC-USDT", "price": "67234.56000000", "quantity": "0.01250000", "side": "sell", "trade_id": "5123456789", "exchange": "binance", "market_type": "spot", "data_source": "marketprism", "normalized_symbol": "BTC-USDT", "data_type": "trade", "ts_ms": 1795290133376, "trade_ts_ms": 1795290133198, "publisher": "unified-collector", "collected_ts_ms": 1795290133375}"#;

fn shipped() -> RouteTable {
    let dir = env!("CARGO_MANIFEST_DIR");
    match RouteTable::load(
        format!("{dir}/routes.d").as_ref(),
        format!("{dir}/transforms").as_ref(),
        &TableSettings::default(),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

fn trade_route(c: &mut Criterion) {
    let table = shipped();
    let Some(route) = table.route("trades-canonical").cloned() else {
        eprintln!("trades-canonical is not shipped");
        std::process::exit(1);
    };
    let payload = Bytes::from_static(TRADE.as_bytes());
    let headers = Headers::new();
    let subject = "trade.binance.spot.BTC-USDT";
    // sanity: the benchmark measures the real path, which produces one output
    match route.process(subject, &headers, &payload, 1_795_290_133_500) {
        RouteOutcome::Outputs { messages, .. } if messages.len() == 1 => {}
        other => {
            eprintln!("unexpected outcome: {other:?}");
            std::process::exit(1);
        }
    }
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(1));
    group.bench_function("trades-canonical/sample-trade", |b| {
        b.iter(|| {
            route.process(
                black_box(subject),
                black_box(&headers),
                black_box(&payload),
                black_box(1_795_290_133_500),
            )
        })
    });
    group.bench_function("table-evaluate/sample-trade", |b| {
        b.iter(|| {
            table.evaluate(
                black_box(subject),
                &headers,
                black_box(&payload),
                1_795_290_133_500,
            )
        })
    });
    // the floor: parse and serialize the same payload with no rule work at all
    group.bench_function("baseline/json-parse-serialize", |b| {
        b.iter(|| {
            let v: serde_json::Value =
                serde_json::from_slice(black_box(&payload)).unwrap_or_default();
            serde_json::to_vec(&v).unwrap_or_default()
        })
    });
    group.bench_function("no-match/orderbook-subject", |b| {
        b.iter(|| {
            route.process(
                black_box("orderbook.binance.spot.BTC-USDT"),
                &headers,
                &payload,
                0,
            )
        })
    });
    group.finish();
}

/// A one-route table from inline YAML.
fn inline(text: &str) -> RouteTable {
    let file = SourceFile {
        name: "bench.yaml".into(),
        text: text.into(),
    };
    match RouteTable::compile(&[file], &[], &TableSettings::default()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// An expression condition and a `set` with arithmetic, against the same route with a
/// literal `set` and no condition (parse, one step, serialize): the difference is what the
/// expressions cost.
fn expressions(c: &mut Criterion) {
    let with = inline(
        r#"routes:
  - name: notional
    from: "trade.{exchange}.{market_type}.{symbol}"
    when:
      - expr: "price * quantity > 100 && side != 'buy'"
    transform:
      - set: { notional: { expr: "round(price * quantity, 2)" } }
    to: { subject: "notional.{exchange}.{symbol}" }
"#,
    );
    let without = inline(
        r#"routes:
  - name: notional
    from: "trade.{exchange}.{market_type}.{symbol}"
    transform:
      - set: { notional: 1 }
    to: { subject: "notional.{exchange}.{symbol}" }
"#,
    );
    let payload = Bytes::from_static(TRADE.as_bytes());
    let headers = Headers::new();
    let subject = "trade.binance.spot.BTC-USDT";
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(1));
    for (name, table) in [
        ("expr/condition+set", &with),
        ("expr/baseline-literal-set", &without),
    ] {
        let Some(route) = table.routes().first().cloned() else {
            std::process::exit(1);
        };
        match route.process(subject, &headers, &payload, 0) {
            RouteOutcome::Outputs { messages, .. } if messages.len() == 1 => {}
            other => {
                eprintln!("{name}: unexpected outcome: {other:?}");
                std::process::exit(1);
            }
        }
        group.bench_function(name, |b| {
            b.iter(|| route.process(black_box(subject), &headers, black_box(&payload), 0))
        });
    }
    group.finish();
}

/// The sample trade without `trade_id`, `trade_ts_ms` and its closing brace: each
/// iteration adds its own, so trade ids are distinct, trade times move on 10 ms a trade (a
/// symbol's window closes every 6000 trades) and a sequence is in order per symbol. Every
/// route in a comparison pays the same formatting.
fn open_trade() -> String {
    let mut v: serde_json::Value = serde_json::from_str(TRADE).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("trade_id");
        m.remove("trade_ts_ms");
    }
    let mut text = v.to_string();
    text.pop();
    text
}

fn nth_trade(open: &str, i: u64) -> (String, Bytes) {
    let symbol = i % 16;
    let ts = 1_795_290_120_000_u64 + i * 10;
    (
        format!("trade.binance.spot.SYM{symbol}"),
        Bytes::from(format!(
            "{open},\"trade_id\":\"{i}\",\"trade_ts_ms\":{ts},\"seq\":{}}}",
            i / 16
        )),
    )
}

/// A stateful step's update, as the route's task runs it: a route with only that step
/// against a like route whose work after the parse is as small as it gets (a condition
/// that is false, or a literal `set`), on the same distinct trades. Keys stay bounded by
/// `max_keys`, so the dedupe figure includes its evictions.
fn stateful_steps(c: &mut Criterion) {
    let route = |steps: &str, when: &str| {
        inline(&format!(
            r#"routes:
  - name: s
    from: "trade.{{exchange}}.{{market_type}}.{{symbol}}"
{when}    transform:
{steps}
    to: {{ subject: "out.{{exchange}}.{{symbol}}" }}
"#
        ))
    };
    let window = route(
        "      - window: { key: \"{symbol}\", size: 1m, time_from: $.trade_ts_ms, lateness: 2s, carry: [symbol], aggregate: { open: { first: price }, high: { max: price }, low: { min: price }, close: { last: price }, volume: { sum: quantity }, trades: count } }",
        "",
    );
    let filtered = route(
        "      - set: { x: 1 }",
        "    when:\n      - path: $.nope\n        exists: true\n",
    );
    let dedupe = route(
        "      - dedupe: { key: \"{symbol}:{$.trade_id}\", window: 10m, max_keys: 1000 }",
        "",
    );
    let literal = route("      - set: { x: 1 }", "");
    let sequence = route(
        "      - sequence_check: { key: \"{symbol}\", sequence: $.seq, alert: { subject: gap } }",
        "",
    );
    let open = open_trade();
    let headers = Headers::new();
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(1));
    let shipped = shipped();
    let shipped_candles = shipped.route("trade-candles-1m").cloned();
    let shipped_trades = shipped.route("trades-canonical").cloned();
    let tables = [
        ("state/window-update", &window),
        ("state/baseline-filtered-after-parse", &filtered),
        ("state/dedupe-update", &dedupe),
        ("state/sequence-check-update", &sequence),
        ("state/baseline-literal-set", &literal),
    ]
    .map(|(name, table)| (name, table.routes().first().cloned()));
    let shipped = [
        ("state/shipped-trade-candles-1m", shipped_candles),
        ("state/shipped-trades-canonical", shipped_trades),
    ];
    for (name, route) in shipped.into_iter().chain(tables) {
        let Some(route) = route else {
            std::process::exit(1);
        };
        let mut state = route.new_state();
        let mut i = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                let (subject, payload) = nth_trade(&open, i);
                i += 1;
                // routed 100 ms after the trade
                let now = 1_795_290_120_100_i64 + i as i64 * 10;
                route.process_with(
                    black_box(&subject),
                    &headers,
                    black_box(&payload),
                    now,
                    &mut state,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, trade_route, expressions, stateful_steps);
criterion_main!(benches);
