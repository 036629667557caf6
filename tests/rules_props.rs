//! Property test: arbitrary subjects, headers and payloads (JSON or not) through the shipped
//! route table never panic, and every matching message ends as outputs (each with a valid
//! subject), a filter, a drop, or a dead letter addressed to `deadletter.{route}`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use bytes::Bytes;
use prism_broker::rules::{FailureAction, Headers, RouteOutcome, RouteTable, TableSettings};
use prism_broker::subject::validate_subject;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn shipped() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let dir = env!("CARGO_MANIFEST_DIR");
        RouteTable::load(
            format!("{dir}/routes.d").as_ref(),
            format!("{dir}/transforms").as_ref(),
            &TableSettings::default(),
        )
        .unwrap()
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z0-9 .*>-]{0,12}".prop_map(Value::String),
        "-?[0-9]{1,8}(\\.[0-9]{1,8})?".prop_map(Value::String),
        prop::sample::select(vec!["buy", "sell", "spot", "perpetual", "1e400", "NaN", ""])
            .prop_map(|s| Value::String(s.into())),
        (0i64..2_000_000_000_000_000).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Field names biased towards the ones the shipped rules read.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "price",
            "quantity",
            "side",
            "trade_id",
            "ts_ms",
            "trade_ts_ms",
            "bids",
            "asks",
            "market_type",
            "notional_value",
            "liquidation_id",
            "liquidation_ts_ms",
            "symbol",
        ])
        .prop_map(String::from),
        "[a-z_]{1,8}",
    ]
}

/// Payload objects shaped like the samples, with arbitrary values in the fields that matter.
fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        json_value().prop_map(|v| Bytes::from(v.to_string())),
        prop::collection::btree_map(field_name(), json_value(), 0..10)
            .prop_map(|m| Bytes::from(Value::Object(m.into_iter().collect()).to_string())),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from),
    ]
}

const SAMPLES: &[(&str, &str)] = &[
    (
        "trade.binance.spot.BTC-USDT",
        r#"{"symbol": "BTC-USDT", "price": "67234.56000000", "quantity": "0.01250000", "side": "sell", "trade_id": "5123456789", "exchange": "binance", "market_type": "spot", "ts_ms": 1795290133376, "trade_ts_ms": 1795290133198, "publisher": "unified-collector"}"#,
    ),
    (
        "orderbook.binance.spot.BTC-USDT",
        r#"{"exchange": "binance", "market_type": "spot", "symbol": "BTC-USDT", "last_update_id": 71234567890, "bids": [{"price": "67234.56", "quantity": "1.20311"}, {"price": "67234.55", "quantity": "0.00800"}], "asks": [{"price": "67234.57", "quantity": "2.41002"}], "ts_ms": 1795290133381}"#,
    ),
    (
        "liquidation.binance.perpetual.BTC-USDT",
        r#"{"exchange": "binance", "symbol": "BTC-USDT", "liquidation_id": "binance_1795290133190_BTCUSDT_sell", "side": "sell", "price": 67011.4, "quantity": 2.5, "notional_value": 167528.5, "ts_ms": 1795290133414, "liquidation_ts_ms": 1795290133190}"#,
    ),
    (
        "market.okx.BTC-USDT.trade",
        r#"{"price": "67241.3", "quantity": "12", "side": "buy", "market_type": "perpetual", "ts_ms": 1795290133380}"#,
    ),
];

/// A real sample with some fields replaced by arbitrary values or removed.
fn mutated_sample() -> impl Strategy<Value = (String, Bytes)> {
    (
        0..SAMPLES.len(),
        prop::collection::vec((field_name(), proptest::option::of(json_value())), 0..4),
    )
        .prop_map(|(i, edits)| {
            let (subject, text) = SAMPLES[i];
            let mut v: Value = serde_json::from_str(text).unwrap();
            if let Value::Object(map) = &mut v {
                for (field, value) in edits {
                    match value {
                        Some(value) => map.insert(field, value),
                        None => map.remove(&field),
                    };
                }
            }
            (subject.to_string(), Bytes::from(v.to_string()))
        })
}

fn message() -> impl Strategy<Value = (String, Bytes)> {
    prop_oneof![(subject(), payload()), mutated_sample()]
}

fn subject() -> impl Strategy<Value = String> {
    let family = prop::sample::select(vec![
        "trade",
        "orderbook",
        "liquidation",
        "market",
        "funding_rate",
        "x",
    ]);
    let token = "[A-Za-z0-9_-]{1,6}|spot|perpetual|trade|orderbook";
    prop_oneof![
        (family, prop::collection::vec(token, 1..5))
            .prop_map(|(f, t)| format!("{f}.{}", t.join("."))),
        "[a-z.]{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_message_ends_somewhere_known((subject, payload) in message(), id in proptest::option::of("[ -~]{0,10}")) {
        let table = shipped();
        let mut headers = Headers::new();
        if let Some(id) = id {
            headers.insert_text("Nats-Msg-Id", &id).unwrap();
        }
        for route in table.routes() {
            match route.process(&subject, &headers, &payload, 1_795_290_133_500) {
                RouteOutcome::NoMatch | RouteOutcome::Filtered => {}
                RouteOutcome::Outputs { messages, .. } => {
                    for m in messages {
                        prop_assert!(validate_subject(&m.subject).is_ok(), "{}", m.subject);
                        prop_assert!(route.pattern.matches(&m.subject).is_none(), "loop: {} -> {}", subject, m.subject);
                    }
                }
                RouteOutcome::Failed { action, .. } => match action {
                    FailureAction::DeadLetter(dl) => {
                        prop_assert_eq!(dl.subject, format!("deadletter.{}", route.name));
                        prop_assert_eq!(dl.payload, payload.clone());
                        prop_assert_eq!(dl.headers.get("Prism-Original-Subject"), Some(subject.as_str()));
                    }
                    FailureAction::Drop => {}
                    FailureAction::PassThrough(ms) => {
                        for m in ms {
                            prop_assert!(validate_subject(&m.subject).is_ok());
                        }
                    }
                },
            }
        }
    }
}

/// The generators above must reach every outcome, or the property says little.
#[test]
fn generators_reach_outputs_filters_and_dead_letters() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let table = shipped();
    let mut runner = TestRunner::deterministic();
    let (mut outputs, mut filtered, mut failed) = (0, 0, 0);
    let headers = Headers::new();
    for _ in 0..3000 {
        let (s, p) = message().new_tree(&mut runner).unwrap().current();
        for r in table.evaluate(&s, &headers, &p, 0) {
            match r.outcome {
                RouteOutcome::Outputs { .. } => outputs += 1,
                RouteOutcome::Filtered => filtered += 1,
                RouteOutcome::Failed { .. } => failed += 1,
                RouteOutcome::NoMatch => {}
            }
        }
    }
    assert!(
        outputs > 0 && filtered > 0 && failed > 0,
        "outputs {outputs}, filtered {filtered}, failed {failed}"
    );
}

// ---------------------------------------------------------------------------------------
// The whole per-message path with hostile input: subjects, captures, headers and payload
// values holding control characters, line breaks, multibyte text and huge runs, through
// the shipped rules and a table that renders headers and `msg_id` from all of them, up to
// the subject, `async_nats::HeaderMap` and payload handed to async-nats.

use std::str::FromStr;

use async_nats::{HeaderName, HeaderValue};
use prism_broker::rules::{OutputMessage, SourceFile};

/// A table whose outputs put captures, payload values and the subject in headers, `msg_id`
/// and subjects, with every `on_error` action.
fn hostile_table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let routes = r#"
routes:
  - name: echo-headers
    from: "trade.{exchange}.{market_type}.{symbol}"
    to:
      - subject: "echo.{exchange}.{symbol}"
        msg_id: "{@subject}:{$.trade_id}"
        headers: { X-Symbol: "{symbol}", X-Trade: "{$.trade_id}", X-Side: "sym {$.side}" }
  - name: payload-subject
    from: "trade.{exchange}.{market_type}.{symbol}"
    on_error: pass_through
    transform: [{ set: { tag: "{$.side}" } }, { to_number: [price] }]
    to:
      - subject: "by_side.{$.side}.{market_type}"
        headers: { X-Tag: "{$.tag}" }
  - name: dropper
    from: "orderbook.{exchange}.>"
    on_error: drop
    to:
      - subject: "dropped.{exchange}"
        msg_id: "{$.trade_id}"
        carry_headers: true
"#;
        RouteTable::compile(
            &[SourceFile {
                name: "hostile.yaml".into(),
                text: routes.into(),
            }],
            &[],
            &TableSettings::default(),
        )
        .unwrap()
    })
}

/// Text that breaks protocols: control characters, CR / LF, multibyte text, wildcards and
/// dots, and huge runs (beyond the longest subject the server reads).
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,12}",
        "\\PC{0,8}",
        "[\\x00-\\x1f\\x7f a-z.:*>é日]{0,12}",
        prop::sample::select(vec![
            "a\nb",
            "a\r\nb",
            "\r",
            "\n",
            "é",
            "日本",
            "a.b",
            "*",
            ">",
            "",
            " ",
            "Nats-Msg-Id",
        ])
        .prop_map(String::from),
        (
            prop::sample::select(vec!["x", "é", "\n", ".", "日"]),
            1000usize..6000
        )
            .prop_map(|(c, n)| c.repeat(n)),
    ]
}

/// Subjects of the shipped families with hostile tokens (captures), or hostile text.
fn hostile_subject() -> impl Strategy<Value = String> {
    let family = prop::sample::select(vec!["trade", "orderbook", "liquidation", "market"]);
    prop_oneof![
        4 => (family, prop::collection::vec(prop_oneof![hostile_text(), "[a-z]{1,5}"], 3..5))
            .prop_map(|(f, t)| format!("{f}.{}", t.join("."))),
        1 => hostile_text(),
    ]
}

/// Incoming headers: what async-nats would deliver (valid names and values) plus hostile
/// pairs, which the rule language must refuse without panicking.
fn hostile_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop_oneof![
                "[A-Za-z-]{1,10}",
                hostile_text(),
                Just("Nats-Msg-Id".to_string())
            ],
            hostile_text(),
        ),
        0..4,
    )
}

/// Payloads shaped like the samples with hostile strings in the fields the rules read.
fn hostile_payload() -> impl Strategy<Value = Bytes> {
    let value = prop_oneof![hostile_text().prop_map(Value::String), json_value(),];
    prop_oneof![
        4 => (0..SAMPLES.len(), prop::collection::vec((field_name(), value), 0..5)).prop_map(
            |(i, edits)| {
                let mut v: Value = serde_json::from_str(SAMPLES[i].1).unwrap();
                if let Value::Object(map) = &mut v {
                    for (field, value) in edits {
                        map.insert(field, value);
                    }
                }
                Bytes::from(v.to_string())
            }
        ),
        1 => hostile_text().prop_map(Bytes::from),
    ]
}

/// What async-nats is handed for `message` must be accepted by its fallible constructors.
fn assert_sendable(message: OutputMessage) -> Result<(), TestCaseError> {
    let nats = message.into_nats();
    prop_assert!(
        validate_subject(&nats.subject).is_ok(),
        "invalid subject {:?}",
        nats.subject
    );
    // what nats-server itself needs of a PUB / HPUB line, checked independently: no white
    // space or control characters in the subject, and the line within 4,096 bytes
    prop_assert!(
        !nats
            .subject
            .contains(|c: char| c.is_whitespace() || c.is_control())
            && nats.subject.len() + 100 <= 4096,
        "the server would refuse or close on subject {:?}",
        nats.subject
    );
    for (name, values) in nats.headers.iter() {
        let name: &str = name.as_ref();
        prop_assert!(
            !name.is_empty() && HeaderName::from_str(name).is_ok(),
            "{name:?}"
        );
        for value in values {
            prop_assert!(
                HeaderValue::from_str(value.as_str()).is_ok(),
                "{name}: {value:?}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn hostile_input_never_panics_and_what_is_sent_is_valid_nats(
        subject in hostile_subject(),
        pairs in hostile_headers(),
        payload in hostile_payload(),
    ) {
        let mut headers = Headers::new();
        for (name, value) in &pairs {
            // an invalid pair is refused with an error, never a panic
            let _ = headers.append_text(name, value);
        }
        for table in [shipped(), hostile_table()] {
            for route in table.routes() {
                match route.process(&subject, &headers, &payload, 1_795_290_133_500) {
                    RouteOutcome::NoMatch | RouteOutcome::Filtered => {}
                    RouteOutcome::Outputs { messages, .. } => {
                        for m in messages {
                            assert_sendable(m)?;
                        }
                    }
                    RouteOutcome::Failed { action, .. } => match action {
                        FailureAction::DeadLetter(dl) => {
                            prop_assert_eq!(&dl.subject, &format!("deadletter.{}", route.name));
                            prop_assert_eq!(&dl.payload, &payload);
                            prop_assert!(dl.headers.get("Prism-Error").is_some());
                            assert_sendable(dl)?;
                        }
                        FailureAction::Drop => {}
                        FailureAction::PassThrough(ms) => {
                            for m in ms {
                                prop_assert_eq!(&m.payload, &payload, "the original payload");
                                assert_sendable(m)?;
                            }
                        }
                    },
                }
            }
        }
    }
}

/// The hostile generators must reach sendable outputs and failures caused by headers and
/// subjects that NATS could not carry, or the property above says little.
#[test]
fn hostile_generators_reach_outputs_and_header_and_subject_failures() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut outputs, mut header_failures, mut subject_failures, mut refused_headers) =
        (0, 0, 0, 0);
    for _ in 0..3000 {
        let subject = hostile_subject().new_tree(&mut runner).unwrap().current();
        let pairs = hostile_headers().new_tree(&mut runner).unwrap().current();
        let payload = hostile_payload().new_tree(&mut runner).unwrap().current();
        let mut headers = Headers::new();
        for (name, value) in &pairs {
            refused_headers += usize::from(headers.append_text(name, value).is_err());
        }
        for r in hostile_table().evaluate(&subject, &headers, &payload, 0) {
            match r.outcome {
                RouteOutcome::Outputs { .. } => outputs += 1,
                RouteOutcome::Failed { error, .. } => {
                    let e = error.to_string();
                    header_failures += usize::from(e.contains("is not valid for nats"));
                    subject_failures += usize::from(e.contains("rendered subject"));
                }
                _ => {}
            }
        }
    }
    assert!(
        outputs > 0 && header_failures > 0 && subject_failures > 0 && refused_headers > 0,
        "outputs {outputs}, header failures {header_failures}, subject failures \
         {subject_failures}, refused headers {refused_headers}"
    );
}
