//! The route table through its public API: every lint error with its `file:line: route NAME`
//! form, and what compiled routes do to messages (outputs, filters, failures and the
//! `on_error` actions, headers, dry runs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use prism_broker::config::default_streams;
use prism_broker::rules::{
    FailureAction, Headers, RouteOutcome, RouteSource, RouteTable, SourceFile, TableSettings,
};
use serde_json::{json, Value};

const NOW: i64 = 1_795_290_133_500;

fn file(name: &str, text: &str) -> SourceFile {
    SourceFile {
        name: name.into(),
        text: text.into(),
    }
}

fn compile(routes: &str, transforms: &[(&str, &str)]) -> Result<RouteTable, Vec<String>> {
    let transforms: Vec<SourceFile> = transforms.iter().map(|(n, t)| file(n, t)).collect();
    RouteTable::compile(
        &[file("r.yaml", routes)],
        &transforms,
        &TableSettings::default(),
    )
    .map_err(|e| e.problems().iter().map(ToString::to_string).collect())
}

fn problems(routes: &str) -> Vec<String> {
    match compile(routes, &[("t.yaml", PIPELINE)]) {
        Ok(_) => panic!("compiled:\n{routes}"),
        Err(p) => p,
    }
}

fn assert_problem(routes: &str, expected: &str) {
    let found = problems(routes);
    assert!(
        found.iter().any(|p| p.contains(expected)),
        "wanted {expected:?} in {found:#?}"
    );
}

const PIPELINE: &str =
    "name: canon\nsteps:\n  - to_number: [price]\n  - set: {venue: '{exchange}'}\n";

fn one_route(body: &str) -> String {
    format!("routes:\n  - name: r1\n{body}")
}

#[test]
fn problems_have_file_line_and_route() {
    let text = "routes:\n  - name: good\n    from: a.{x}\n    to: [{subject: 'b.{x}'}]\n  - name: bad\n    from: a.{x}\n    colour: red\n    to: [{subject: 'c.{y}'}]\n";
    let found = problems(text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(
        found[0],
        "r.yaml:7: route bad: unknown field `colour`, expected one of name, description, from, source, when, transform, to, partition_by, age_from, on_error"
    );
    assert!(
        found[1].starts_with(
            "r.yaml:8: route bad: `subject`: template \"c.{y}\" names the capture {y}"
        ),
        "{}",
        found[1]
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = "routes:\n  - name: a\n    from: x.{s}\n    when: [{path: 'nope', eq: 1}, {capture: s, matches: '('}]\n    transform: [missing]\n    to: [{subject: 'y.{t}', msg_id: '{u}'}]\n  - name: a\n    from: 'x..y'\n    to: [{subject: z}]\n";
    let found = problems(text);
    for needle in [
        "r.yaml:4: route a: invalid jsonpath",
        "r.yaml:4: route a: invalid regex",
        "r.yaml:5: route a: unknown transform `missing` (known: canon)",
        "r.yaml:6: route a: `subject`: template \"y.{t}\"",
        "r.yaml:6: route a: `msg_id`: template \"{u}\"",
        "r.yaml:7: route a: duplicate route name (first defined at r.yaml:2)",
        "r.yaml:8: route a: `from`: pattern \"x..y\" has an empty token",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(needle)),
            "wanted {needle:?} in {found:#?}"
        );
    }
}

#[test]
fn unknown_fields_anywhere() {
    assert_problem(
        &one_route("    from: a\n    to: [{subject: b, jetstrem: true}]\n"),
        "unknown field `jetstrem`",
    );
    assert_problem(
        &one_route("    from: a\n    source: {jetstream: {stream: MARKET_DATA, durable: d, speed: 1}}\n    to: [{subject: b}]\n"),
        "unknown field `speed`",
    );
    assert_problem(
        &one_route(
            "    from: a\n    when: [{path: $.a, eq: 1, also: 2}]\n    to: [{subject: b}]\n",
        ),
        "unknown condition field `also`",
    );
    assert_problem("rotues: []\n", "unknown field `rotues`");
    let err = compile(
        "routes: []\n",
        &[("t.yaml", "name: p\nsteps: [{rename: {a: b}}]\nextra: 1\n")],
    )
    .unwrap_err();
    assert_eq!(
        err,
        vec!["t.yaml:3: transform p: unknown field `extra`, expected name, description, steps"]
    );
}

#[test]
fn transform_problems_point_into_the_transform_file() {
    let err = compile(
        "routes: []\n",
        &[("t.yaml", "name: p\nsteps:\n  - rename: {a: b}\n  - regex_replace: {field: a, pattern: '[', replacement: b}\n  - explode: {}\n")],
    )
    .unwrap_err();
    assert_eq!(err.len(), 2, "{err:#?}");
    assert!(
        err[0].starts_with(
            "t.yaml:4: transform p: step 2: regex_replace: invalid config: invalid regex"
        ),
        "{}",
        err[0]
    );
    assert!(
        err[1].starts_with("t.yaml:5: transform p: step 3: explode: invalid config"),
        "{}",
        err[1]
    );
}

#[test]
fn pipeline_templates_are_checked_against_each_route() {
    // `canon` uses {exchange}; a route without that capture cannot use it
    let found = problems(&one_route("    from: trade.{venue}.{symbol}\n    transform: [canon]\n    to: [{subject: 'out.{symbol}'}]\n"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("r.yaml:4: route r1: transform canon (t.yaml:4): step 2: set: template \"{exchange}\" names the capture {exchange}"), "{}", found[0]);
    assert!(compile(&one_route("    from: trade.{exchange}\n    transform: [canon]\n    to: [{subject: 'out.{exchange}'}]\n"), &[("t.yaml", PIPELINE)]).is_ok());
}

#[test]
fn loops_are_rejected() {
    assert_problem(
        &one_route("    from: trade.{ex}.{sym}\n    to: [{subject: 'trade.{ex}.{sym}'}]\n"),
        "could match its own `from`",
    );
    assert_problem(
        &one_route("    from: a.>\n    to: [{subject: a.copy}]\n"),
        "a loop",
    );
    assert!(compile(
        &one_route("    from: a.{rest...}\n    to: [{subject: 'b.{rest}'}]\n"),
        &[]
    )
    .is_ok());
    assert_problem(
        &one_route("    from: a.{rest...}\n    to: [{subject: '{rest}'}]\n"),
        "a loop",
    );
    assert_problem(
        &one_route(
            "    from: market.{ex}.{sym}.{type}\n    to: [{subject: '{type}.{ex}.{sym}.x'}]\n",
        ),
        "a loop",
    );
    // limiting the capture that could be `market` removes the loop
    assert!(compile(
        &one_route("    from: market.{ex}.{sym}.{type}\n    when: [{capture: type, in: [trade]}]\n    to: [{subject: '{type}.{ex}.{sym}.x'}]\n"),
        &[]
    )
    .is_ok());
    assert_problem(
        &one_route("    from: a.{x}\n    to: [{subject: 'a.{@subject}'}]\n"),
        "a loop",
    );
    assert!(compile(
        &one_route("    from: a.{x}\n    to: [{subject: 'b.{x}'}]\n"),
        &[]
    )
    .is_ok());
}

#[test]
fn jetstream_outputs_need_a_stream() {
    assert_problem(
        &one_route("    from: a.{x}\n    to: [{subject: 'canonical.{x}', jetstream: true}]\n"),
        "has `jetstream: true` but no stream captures canonical.*",
    );
    assert_problem(
        &one_route("    from: a.{x}.{y}\n    to: [{subject: '{x}.{y}', jetstream: true}]\n"),
        "no stream captures *.*",
    );
    assert!(compile(
        &one_route("    from: a.{x}\n    to: [{subject: 'system.alert.{x}', jetstream: true}]\n"),
        &[]
    )
    .is_ok());
}

#[test]
fn jetstream_sources_need_a_capturing_stream() {
    assert_problem(
        &one_route("    from: a.{x}\n    source: {jetstream: {stream: NOPE, durable: d}}\n    to: [{subject: b}]\n"),
        "source stream `NOPE` is not configured",
    );
    assert_problem(
        &one_route("    from: a.{x}\n    source: {jetstream: {stream: SYSTEM_EVENTS, durable: d}}\n    to: [{subject: b}]\n"),
        "does not capture any subject",
    );
    assert_problem(
        &one_route("    from: system.{x}\n    source: {jetstream: {stream: SYSTEM_EVENTS, durable: a.b}}\n    to: [{subject: b}]\n"),
        "durable name",
    );
    let table = compile(
        &one_route("    from: system.{x}\n    source: {jetstream: {stream: SYSTEM_EVENTS, durable: d, max_deliver: 2, ack_wait: 10s}}\n    to: [{subject: b}]\n"),
        &[],
    )
    .unwrap();
    match &table.routes()[0].source {
        RouteSource::JetStream {
            stream,
            durable,
            ack_wait,
            max_ack_pending,
            max_deliver,
        } => {
            assert_eq!((stream.as_str(), durable.as_str()), ("SYSTEM_EVENTS", "d"));
            assert_eq!(ack_wait.as_secs(), 10);
            assert_eq!((*max_ack_pending, *max_deliver), (10_000, 2));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_durable_belongs_to_one_route_and_never_to_a_configured_consumer() {
    let two = "routes:\n  - name: r1\n    from: system.{x}\n    source: {jetstream: {stream: SYSTEM_EVENTS, durable: d}}\n    to: [{subject: b}]\n  - name: r2\n    from: system.a.{x}\n    source: {jetstream: {stream: SYSTEM_EVENTS, durable: d}}\n    to: [{subject: c}]\n";
    let found = problems(two);
    assert!(
        found.iter().any(|p| p.starts_with("r.yaml:6: route r2:")
            && p.contains("durable `d` of stream `SYSTEM_EVENTS` is already the source of the route at r.yaml:2")),
        "{found:#?}"
    );
    // The same durable name on another stream is another consumer.
    let other = "routes:\n  - name: r1\n    from: system.{x}\n    source: {jetstream: {stream: SYSTEM_EVENTS, durable: d}}\n    to: [{subject: b}]\n  - name: r2\n    from: service.{x}\n    source: {jetstream: {stream: SERVICE_LOGS, durable: d}}\n    to: [{subject: c}]\n";
    assert!(compile(other, &[]).is_ok());
    // A durable of `consumers:` is the clients', not a route's.
    let config = prism_broker::config::parse(
        "consumers:\n  storage: { stream: SYSTEM_EVENTS }\n",
        "broker.yaml",
        &prism_broker::config::EnvSource::default(),
    )
    .unwrap();
    let route = one_route("    from: system.{x}\n    source: {jetstream: {stream: SYSTEM_EVENTS, durable: storage}}\n    to: [{subject: b}]\n");
    let err = RouteTable::compile(
        &[file("r.yaml", &route)],
        &[],
        &TableSettings::from_config(&config),
    )
    .unwrap_err();
    let found: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert!(
        found
            .iter()
            .any(|p| p.contains("is a configured consumer (consumers.storage")),
        "{found:#?}"
    );
}

#[test]
fn a_broken_from_does_not_cascade_into_its_templates() {
    let found = problems(&one_route(
        "    from: 'a..{x}'\n    to: [{subject: 'b.{x}'}]\n",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[test]
fn other_field_problems() {
    assert_problem(
        &one_route("    from: a\n    to: [{subject: 'b..{$.x}'}]\n"),
        "can never be valid",
    );
    assert_problem(
        &one_route("    from: a.{x}\n    partition_by: '{$.symbol}'\n    to: [{subject: b}]\n"),
        "captures only",
    );
    assert_problem(
        &one_route("    from: a\n    age_from: ts\n    to: [{subject: b}]\n"),
        "`age_from`",
    );
    assert_problem(
        &one_route("    from: a\n    on_error: retry\n    to: [{subject: b}]\n"),
        "`on_error`",
    );
    assert_problem(
        &one_route("    from: a\n    to: []\n"),
        "at least one output",
    );
    assert_problem(
        "routes:\n  - name: 'has space'\n    from: a\n    to: [{subject: b}]\n",
        "`name` is 1-64",
    );
    assert_problem(
        "routes:\n  - from: a\n    to: [{subject: b}]\n",
        "missing field `name`",
    );
    assert_problem(
        &one_route("    to: [{subject: b}]\n"),
        "missing field `from`",
    );
    assert_problem(&one_route("    from: a\n"), "missing field `to`");
    assert_problem(
        &one_route("    from: a.{x}.{x}\n    to: [{subject: b}]\n"),
        "appears twice",
    );
    assert_problem(
        &one_route("    from: a.>.b\n    to: [{subject: b}]\n"),
        "must be the last token",
    );
    assert_problem(
        &one_route("    from: a\n    transform: [{nope: 1}]\n    to: [{subject: b}]\n"),
        "unknown transform kind `nope`",
    );
    assert_problem("routes:\n  - name: [\n", "invalid yaml");
}

fn table(routes: &str) -> RouteTable {
    compile(routes, &[("t.yaml", PIPELINE)]).unwrap_or_else(|p| panic!("{p:#?}"))
}

fn run(table: &RouteTable, subject: &str, headers: &Headers, payload: Value) -> RouteOutcome {
    let bytes = Bytes::from(payload.to_string());
    table.routes()[0].process(subject, headers, &bytes, NOW)
}

#[test]
fn outputs_fan_out_with_headers_and_msg_id() {
    let t = table(&one_route(
        "    from: trade.{exchange}.{symbol}\n    transform: [canon]\n    age_from: $.ts_ms\n    to:\n      - {subject: 'a.{exchange}', msg_id: '{symbol}:{$.id}', headers: {X-Route: r1}}\n      - {subject: 'b.{symbol}', carry_headers: false, jetstream: false}\n",
    ));
    let headers = Headers::from_pairs([("Nats-Msg-Id", "dup"), ("X-In", "1")]).unwrap();
    let outcome = run(
        &t,
        "trade.okx.BTC",
        &headers,
        json!({"price": "1.5", "id": 7, "ts_ms": NOW - 120}),
    );
    let RouteOutcome::Outputs { messages, age_ms } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(age_ms, Some(120));
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].subject, "a.okx");
    assert_eq!(
        messages[0].msg_id.as_ref().map(|v| v.as_str()),
        Some("BTC:7")
    );
    assert_eq!(messages[0].headers.get("X-In"), Some("1"));
    assert_eq!(messages[0].headers.get("X-Route"), Some("r1"));
    assert_eq!(
        messages[0].headers.get("Nats-Msg-Id"),
        None,
        "server controls are not carried"
    );
    assert!(messages[1].headers.is_empty());
    let payload: Value = serde_json::from_slice(&messages[1].payload).unwrap();
    assert_eq!(
        payload,
        json!({"price": 1.5, "id": 7, "ts_ms": NOW - 120, "venue": "okx"})
    );
    assert_eq!(
        run(&t, "other.okx.BTC", &headers, json!({})),
        RouteOutcome::NoMatch
    );
}

#[test]
fn routes_without_payload_use_forward_bytes_untouched() {
    let t = table(&one_route(
        "    from: a.{x}\n    when: [{capture: x, ne: skip}]\n    to: [{subject: 'b.{x}'}]\n",
    ));
    let raw = Bytes::from_static(b"\x00not json at all");
    let RouteOutcome::Outputs { messages, .. } =
        t.routes()[0].process("a.y", &Headers::new(), &raw, NOW)
    else {
        panic!()
    };
    assert_eq!(messages[0].payload, raw);
    assert_eq!(
        t.routes()[0].process("a.skip", &Headers::new(), &raw, NOW),
        RouteOutcome::Filtered
    );
}

#[test]
fn dead_letters_name_route_error_and_subject() {
    let t = table(&one_route(
        "    from: a.{x}\n    transform: [{to_number: [p]}]\n    to: [{subject: 'b.{x}'}]\n",
    ));
    let headers = Headers::from_pairs([("X-In", "1"), ("Nats-Expected-Stream", "S")]).unwrap();
    let outcome = run(&t, "a.y", &headers, json!({"p": "abc"}));
    let RouteOutcome::Failed {
        error,
        action: FailureAction::DeadLetter(dl),
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert!(error.to_string().contains("expected a numeric string"));
    assert_eq!(dl.subject, "deadletter.r1");
    assert_eq!(dl.headers.get("Prism-Route"), Some("r1"));
    assert_eq!(dl.headers.get("Prism-Original-Subject"), Some("a.y"));
    assert!(dl
        .headers
        .get("Prism-Error")
        .is_some_and(|e| e.contains("numeric")));
    assert_eq!(dl.headers.get("X-In"), Some("1"));
    assert_eq!(
        dl.headers.get("Nats-Expected-Stream"),
        None,
        "server controls are not carried"
    );
    assert_eq!(
        dl.payload,
        Bytes::from(json!({"p": "abc"}).to_string()),
        "original payload"
    );
    assert!(
        dl.jetstream,
        "the default DEAD_LETTERS stream stores dead letters"
    );
}

#[test]
fn on_error_drop_and_pass_through() {
    let drop = table(&one_route("    from: a.{x}\n    on_error: drop\n    transform: [{to_number: [p]}]\n    to: [{subject: 'b.{x}'}]\n"));
    assert!(matches!(
        run(&drop, "a.y", &Headers::new(), json!({"p": []})),
        RouteOutcome::Failed {
            action: FailureAction::Drop,
            ..
        }
    ));
    let pass = table(&one_route("    from: a.{x}\n    on_error: pass_through\n    transform: [{to_number: [p]}]\n    to: [{subject: 'b.{x}'}]\n"));
    let outcome = run(&pass, "a.y", &Headers::new(), json!({"p": "bad"}));
    let RouteOutcome::Failed {
        action: FailureAction::PassThrough(msgs),
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(msgs[0].subject, "b.y");
    assert_eq!(
        msgs[0].payload,
        Bytes::from(json!({"p": "bad"}).to_string())
    );
    // when even the untransformed output cannot be addressed, pass_through dead-letters
    let pass_path = table(&one_route(
        "    from: a.{x}\n    on_error: pass_through\n    to: [{subject: 'b.{$.k}'}]\n",
    ));
    assert!(matches!(
        run(
            &pass_path,
            "a.y",
            &Headers::new(),
            json!({"k": "has space"})
        ),
        RouteOutcome::Failed {
            action: FailureAction::DeadLetter(_),
            ..
        }
    ));
}

#[test]
fn invalid_rendered_subjects_are_routing_errors() {
    let t = table(&one_route(
        "    from: a.{x}\n    to: [{subject: 'b.{$.k}'}]\n",
    ));
    for bad in [
        json!({"k": ""}),
        json!({"k": "x y"}),
        json!({"k": "*"}),
        json!({"k": "a.b"}),
        json!({"k": null}),
        json!({}),
    ] {
        let outcome = run(&t, "a.y", &Headers::new(), bad.clone());
        assert!(
            matches!(
                outcome,
                RouteOutcome::Failed {
                    action: FailureAction::DeadLetter(_),
                    ..
                }
            ),
            "{bad}: {outcome:?}"
        );
    }
}

#[test]
fn dry_run_lists_matching_routes_only() {
    let t = table("routes:\n  - name: one\n    from: a.{x}\n    to: [{subject: 'b.{x}'}]\n  - name: two\n    from: a.*\n    when: [{path: $.go, eq: true}]\n    to: [{subject: c}]\n  - name: three\n    from: z\n    to: [{subject: c}]\n");
    let results = t.evaluate(
        "a.q",
        &Headers::new(),
        &Bytes::from_static(b"{\"go\": false}"),
        NOW,
    );
    let names: Vec<&str> = results.iter().map(|r| r.route.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    assert_eq!(results[1].outcome, RouteOutcome::Filtered);
    let shown = serde_json::to_value(&results).unwrap();
    assert_eq!(shown[0]["outcome"], "outputs");
    assert_eq!(shown[0]["messages"][0]["payload"], json!({"go": false}));
    assert_eq!(shown[1], json!({"route": "two", "outcome": "filtered"}));
}

#[test]
fn partition_keys_come_from_captures() {
    let t = table(&one_route(
        "    from: trade.{ex}.{sym}\n    partition_by: '{ex}/{sym}'\n    to: [{subject: b}]\n",
    ));
    assert_eq!(
        t.routes()[0].partition_key("trade.okx.BTC").as_deref(),
        Some("okx/BTC")
    );
    assert_eq!(t.routes()[0].partition_key("nope"), None);
    assert_eq!(t.routes()[0].subscription(), "trade.*.*");
}

#[test]
fn shipped_rules_compile_against_the_default_streams() {
    // the seeds' streams, DEAD_LETTERS and KLINES (the candles' stream)
    let settings = TableSettings::default();
    assert!(settings.streams.len() > default_streams().len());
    let dir = env!("CARGO_MANIFEST_DIR");
    let t = RouteTable::load(
        format!("{dir}/routes.d").as_ref(),
        format!("{dir}/transforms").as_ref(),
        &settings,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(t.routes().len() >= 4);
    assert!(t.route("trades-canonical").is_some());
    assert!(t.route("trade-candles-1m").is_some_and(|r| r.is_stateful()));
    assert_eq!(t.transform_names().len(), 5);
}

#[test]
fn compiled_routes_can_move_into_tasks() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<RouteTable>();
    send_sync::<std::sync::Arc<prism_broker::rules::CompiledRoute>>();
    send_sync::<RouteOutcome>();
}

fn shipped() -> RouteTable {
    let dir = env!("CARGO_MANIFEST_DIR");
    RouteTable::load(
        format!("{dir}/routes.d").as_ref(),
        format!("{dir}/transforms").as_ref(),
        &TableSettings::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The error a failed outcome carries and its dead letter.
fn dead_letter(outcome: RouteOutcome) -> (String, prism_broker::rules::OutputMessage) {
    match outcome {
        RouteOutcome::Failed {
            error,
            action: FailureAction::DeadLetter(dl),
        } => (error.to_string(), dl),
        other => panic!("expected a dead letter, got {other:?}"),
    }
}

#[test]
fn a_trade_id_with_a_line_break_is_dead_lettered_naming_nats_msg_id() {
    let t = shipped();
    let route = t.route("trades-canonical").unwrap();
    for trade_id in ["a\nb", "a\r\nb", "\r"] {
        let payload = Bytes::from(
            json!({"price": "1", "quantity": "1", "side": "buy", "trade_id": trade_id}).to_string(),
        );
        let outcome = route.process(
            "trade.binance.spot.BTC-USDT",
            &Headers::new(),
            &payload,
            NOW,
        );
        let (error, dl) = dead_letter(outcome);
        assert!(error.contains("Nats-Msg-Id"), "{error}");
        let prism_error = dl.headers.get("Prism-Error").unwrap();
        assert!(prism_error.contains("Nats-Msg-Id"), "{prism_error}");
        assert_eq!(dl.payload, payload, "the original payload");
        // the dead letter itself is a valid NATS message
        let nats = dl.into_nats();
        assert_eq!(nats.subject, "deadletter.trades-canonical");
        assert!(nats.headers.get("Prism-Error").is_some());
    }
}

#[test]
fn rendered_header_values_nats_cannot_carry_go_to_on_error() {
    let t = table(&one_route(
        "    from: a.{x}\n    to: [{subject: 'b.{x}', headers: {X-Id: 'id-{$.id}'}}]\n",
    ));
    let ok = run(&t, "a.y", &Headers::new(), json!({"id": "ü 7"}));
    let RouteOutcome::Outputs { messages, .. } = ok else {
        panic!("{ok:?}")
    };
    assert_eq!(messages[0].headers.get("X-Id"), Some("id-ü 7"));
    for bad in ["1\n2", "1\r2", "\r\n"] {
        let (error, _) = dead_letter(run(&t, "a.y", &Headers::new(), json!({"id": bad})));
        assert!(
            error.starts_with("output header: header X-Id value"),
            "{error}"
        );
    }
    let drop = table(&one_route(
        "    from: a.{x}\n    on_error: drop\n    to: [{subject: 'b.{x}', msg_id: '{$.id}'}]\n",
    ));
    assert!(matches!(
        run(&drop, "a.y", &Headers::new(), json!({"id": "x\ny"})),
        RouteOutcome::Failed {
            action: FailureAction::Drop,
            ..
        }
    ));
}

#[test]
fn header_names_and_literal_values_are_linted_with_the_nats_rules() {
    for (headers, needle) in [
        (
            "{Zürich: x}",
            "header name \"Zürich\" is not valid for nats",
        ),
        ("{'a b': x}", "header name \"a b\""),
        ("{'a:b': x}", "header name \"a:b\""),
        ("{'': x}", "header name \"\""),
        ("{X-A: \"one\\ntwo\"}", "header X-A value \"one\\ntwo\""),
        ("{X-A: \"{x}\\r\"}", "header X-A value \"\\r\""),
    ] {
        assert_problem(
            &one_route(&format!(
                "    from: a.{{x}}\n    to: [{{subject: 'b.{{x}}', headers: {headers}}}]\n"
            )),
            needle,
        );
    }
    assert_problem(
        &one_route("    from: a.{x}\n    to: [{subject: 'b.{x}', msg_id: \"{x}\\n\"}]\n"),
        "`msg_id`: header Nats-Msg-Id value",
    );
}

#[test]
fn pass_through_publishes_the_original_payload_and_renders_from_it() {
    // the steps change `k` and then fail; the output subject reads `k`
    let t = table(&one_route(
        "    from: a.{x}\n    on_error: pass_through\n    transform: [{set: {k: changed}}, {to_number: [p]}]\n    to: [{subject: 'b.{$.k}', msg_id: '{$.id}'}]\n",
    ));
    let original = json!({"k": "orig", "p": "not a number", "id": "i-1"});
    let outcome = run(&t, "a.y", &Headers::new(), original.clone());
    let RouteOutcome::Failed {
        action: FailureAction::PassThrough(messages),
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].subject, "b.orig");
    assert_eq!(messages[0].payload, Bytes::from(original.to_string()));
    assert_eq!(messages[0].msg_id.as_ref().map(|v| v.as_str()), Some("i-1"));
}

#[test]
fn publish_failures_use_the_same_dead_letter_saying_the_error_once() {
    let t = table(&one_route(
        "    from: a.{x}\n    to: [{subject: 'b.{x}'}]\n",
    ));
    let route = &t.routes()[0];
    let headers = Headers::from_pairs([("X-In", "1"), ("Nats-Msg-Id", "m")]).unwrap();
    let payload = Bytes::from_static(b"raw");
    let error = prism_broker::rules::RouteError::Publish("publish failed: timed out".into());
    let dl = route.dead_letter("a.y", &headers, &payload, &error);
    assert_eq!(dl.subject, "deadletter.r1");
    assert_eq!(
        dl.headers.get("Prism-Error"),
        Some("publish failed: timed out")
    );
    assert_eq!(dl.headers.get("Prism-Route"), Some("r1"));
    assert_eq!(dl.headers.get("Prism-Original-Subject"), Some("a.y"));
    assert_eq!(dl.headers.get("X-In"), Some("1"));
    assert_eq!(dl.headers.get("Nats-Msg-Id"), None);
    assert_eq!(dl.payload, payload);
}

#[test]
fn subjects_longer_than_the_server_reads_go_to_on_error() {
    let t = table(&one_route(
        "    from: a.{x}\n    to: [{subject: 'b.{$.k}'}]\n",
    ));
    let fits = "k".repeat(3000);
    assert!(matches!(
        run(&t, "a.y", &Headers::new(), json!({ "k": fits })),
        RouteOutcome::Outputs { .. }
    ));
    let (error, _) = dead_letter(run(
        &t,
        "a.y",
        &Headers::new(),
        json!({ "k": "k".repeat(5000) }),
    ));
    assert!(error.contains("more than 3072"), "{}", &error[..200]);
}
