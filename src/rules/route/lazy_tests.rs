//! The lazy reader against the whole-`Value` path it replaces: for the shipped routes and
//! routes written to reach every lazy step form (nested fields, moved fields, `{$...}`
//! templates, expressions, a step without a lazy form in the middle, `pass_through`),
//! every payload — objects with duplicate keys, escapes, odd spacing and number forms,
//! invalid JSON, other JSON — gets the same outcome from both, and a payload serde_json
//! itself wrote comes out byte for byte the same.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::Value;

use crate::rules::{Headers, RouteOutcome, RouteTable, SourceFile, TableSettings};

const ROUTES: &str = r#"routes:
  - name: nested
    from: "t.{a}.{b}"
    when:
      - path: "$.p"
        exists: true
    transform:
      - rename: {p: meta.price, q: qty, m.x: top, s: s2}
      - to_number: [qty, meta.price, m.deep, n]
      - set: {venue: "{a}.{$.s2}", m.y: 1, copy: "{$.arr}", at: "{@now_ms}", nn: "{$.m.deep}"}
      - remove: [drop, m.z, missing]
    to:
      - subject: "out.{a}.{b}"
        msg_id: "{a}:{$.id}"
        headers: {X-N: "{$.n}"}
    age_from: "$.ts"
  - name: computed
    from: "t.{a}.{b}"
    when:
      - expr: "has(payload.p) || has(payload.q)"
      - path: "$.s"
        ne: "skip"
    transform:
      - set: {total: {expr: "p * q"}, label: "{$.s}-{b}"}
      - keep: [p, q, total, label, arr, m]
      - to_number: [p]
    to: {subject: "computed.{a}"}
    on_error: pass_through
  - name: general-paths
    from: "t.{a}.{b}"
    when:
      - path: "$.arr[*]"
        exists: true
    to: {subject: "general.{a}", msg_id: "{$.arr[0]}"}
  - name: passthrough-lazy
    from: "t.{a}.{b}"
    transform:
      - to_number: [p, q]
      - set: {m.k: "{$.id}"}
    to: {subject: "pt.{a}"}
    on_error: pass_through
  - name: drop-lazy
    from: "t.{a}.{b}"
    transform:
      - remove: [p]
      - rename: {q: m.q}
    to: {subject: "drop.{$.s}"}
    on_error: drop
"#;

fn tables() -> &'static [RouteTable; 2] {
    static TABLES: OnceLock<[RouteTable; 2]> = OnceLock::new();
    TABLES.get_or_init(|| {
        let dir = env!("CARGO_MANIFEST_DIR");
        let shipped = RouteTable::load(
            format!("{dir}/routes.d").as_ref(),
            format!("{dir}/transforms").as_ref(),
            &TableSettings::default(),
        )
        .unwrap();
        let file = SourceFile {
            name: "lazy.yaml".into(),
            text: ROUTES.into(),
        };
        let inline = RouteTable::compile(&[file], &[], &TableSettings::default())
            .unwrap_or_else(|e| panic!("{e}"));
        [shipped, inline]
    })
}

/// The outcome with payloads compared as JSON (verbatim fields may be spaced otherwise).
fn comparable(outcome: &RouteOutcome) -> Value {
    serde_json::to_value(outcome).unwrap()
}

fn payloads_of(outcome: &RouteOutcome) -> Vec<Bytes> {
    match outcome {
        RouteOutcome::Outputs { messages, .. } => {
            messages.iter().map(|m| m.payload.clone()).collect()
        }
        _ => Vec::new(),
    }
}

/// Every route of both tables on `payload`, both ways.
fn check(subjects: &[&str], payload: &[u8], canonical: bool) {
    let payload = Bytes::copy_from_slice(payload);
    let headers = Headers::new();
    for table in tables() {
        for route in table.routes() {
            for subject in subjects {
                let lazy = route.process(subject, &headers, &payload, 1_000_000);
                let parsed = route.process_parsed(subject, &headers, &payload, 1_000_000);
                assert_eq!(
                    comparable(&lazy),
                    comparable(&parsed),
                    "route {} on {subject} {}",
                    route.name,
                    String::from_utf8_lossy(&payload)
                );
                if canonical {
                    assert_eq!(
                        payloads_of(&lazy),
                        payloads_of(&parsed),
                        "route {} bytes",
                        route.name
                    );
                }
            }
        }
    }
}

const SUBJECTS: &[&str] = &[
    "t.x.y",
    "trade.binance.spot.BTC-USDT",
    "liquidation.okx.perpetual.BTC-USDT",
    "orderbook.binance.spot.BTC-USDT",
];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "p",
        "q",
        "s",
        "id",
        "ts",
        "arr",
        "m",
        "n",
        "drop",
        "x",
        "price",
        "quantity",
        "side",
        "trade_id",
        "ts_ms",
        "trade_ts_ms",
        "publisher",
        "data_source",
        "bids",
        "asks",
        "notional_value",
        "liquidation_id",
        "event_ts_ms",
        "meta",
        "a_very_long_key_name",
        "trade_idx",
        "k\\u0065y",
        "k\\\"q",
        "日本",
    ])
    .prop_map(String::from)
}

/// Value texts: serde_json-written values, and the forms a sender may use.
fn value_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // floats serde_json reads back as it wrote them (its parser may be one unit in
        // the last place off otherwise: the old path then changed the number on the way
        // through, the lazy one passes the sender's text on)
        any::<f64>().prop_map(|f| {
            let n = serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
            match serde_json::from_str::<Value>(&n.to_string()) {
                Ok(back) if back == n => n,
                _ => Value::Null,
            }
        }),
        "[a-z0-9 .é\"\\\\\n]{0,8}".prop_map(Value::String),
        "-?[0-9]{1,6}(\\.[0-9]{1,6})?".prop_map(Value::String),
        prop::sample::select(vec!["buy", "sell", "skip", "1e3", ""])
            .prop_map(|s| Value::String(s.into())),
    ];
    let json = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}|deep|x|y|z", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        4 => json.prop_map(|v| v.to_string()),
        1 => prop::sample::select(vec![
            "1.50", "1e3", "-0", "1E-2", "12345678901234567890123", "0.0000001", "\"\\u00e9\\n\"",
            "\"a\\/b\"", "\"\\ud83d\\ude00\"", "[1, 2 ,3]", "{ \"deep\" : \"12\" , \"z\":1 }",
            "{\"x\":{\"y\":[]}}", "\"67234.56000000\"", "\" 12 \"",
            // invalid: the whole payload is not json
            "1e400", "\"\\ud800\"", "01", "tru", "[1,]", "\"a\tb\"", "nul", "-", "{\"a\" 1}",
        ])
        .prop_map(String::from),
    ]
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", "", " ", "\n\t", "\r\n  "])
}

/// An object's text: keys may repeat, spacing varies.
fn object_text() -> impl Strategy<Value = String> {
    prop::collection::vec((key(), value_text(), ws(), ws()), 0..12).prop_map(|fields| {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v, a, b)| format!("{a}\"{k}\"{b}:{a}{v}{b}"))
            .collect();
        format!("{{{}}}", body.join(","))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn lazy_outcomes_equal_the_parsed_ones(text in object_text()) {
        check(SUBJECTS, text.as_bytes(), false);
    }

    #[test]
    fn payloads_serde_json_wrote_come_out_byte_for_byte(
        fields in prop::collection::btree_map(key(), value_text(), 0..12)
    ) {
        let object: serde_json::Map<String, Value> = fields
            .iter()
            .filter_map(|(k, v)| {
                let k: String = serde_json::from_str(&format!("\"{k}\"")).ok()?;
                Some((k, serde_json::from_str::<Value>(v).ok()?))
            })
            .collect();
        let text = Value::Object(object).to_string();
        check(SUBJECTS, text.as_bytes(), true);
    }

    #[test]
    fn other_payloads_take_the_parsed_path_alike(bytes in prop_oneof![
        value_text().prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
        object_text().prop_map(|t| format!("{t} x").into_bytes()),
        object_text().prop_map(|t| t.as_bytes()[..t.len() / 2].to_vec()),
    ]) {
        check(SUBJECTS, &bytes, false);
    }
}

#[test]
fn the_sample_trade_is_read_lazily_and_written_like_before() {
    let trade = r#"{"symbol": "BTC-USDT", "price": "67234.56000000", "quantity": "0.01250000", "side": "sell", "trade_id": "5123456789", "exchange": "binance", "market_type": "spot", "data_source": "marketprism", "normalized_symbol": "BTC-USDT", "data_type": "trade", "ts_ms": 1795290133376, "trade_ts_ms": 1795290133198, "publisher": "unified-collector", "collected_ts_ms": 1795290133375}"#;
    assert!(crate::rules::lazy::LazyObject::parse(trade.as_bytes()).is_some());
    check(&["trade.binance.spot.BTC-USDT"], trade.as_bytes(), true);
    // with the spacing serde_json writes, the bytes are the same too
    let compact = serde_json::from_str::<Value>(trade).unwrap().to_string();
    check(&["trade.binance.spot.BTC-USDT"], compact.as_bytes(), true);
}

#[test]
fn invalid_json_is_dead_lettered_with_serde_jsons_message() {
    let route = tables()[0].route("trades-canonical").unwrap();
    for bad in [
        &br#"{"price": 1e400, "quantity": 1, "side": "buy"}"#[..],
        br#"{"price": "\ud800", "quantity": 1, "side": "buy"}"#,
        br#"{"price": "1", "quantity": 1, "side": "buy",}"#,
        b"{\"price\": \"\xff\"}",
        b"not json",
    ] {
        let payload = Bytes::copy_from_slice(bad);
        let out = route.process("trade.binance.spot.BTC-USDT", &Headers::new(), &payload, 0);
        let RouteOutcome::Failed { error, .. } = &out else {
            panic!("{out:?}");
        };
        let expected = serde_json::from_slice::<Value>(bad)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error.to_string(),
            format!("payload is not json: {expected}")
        );
    }
}
