//! The drop-in for the MarketPrism deployment, against the real binary and real
//! nats-servers: `config/marketprism.yaml` passes `check` (shipped routes included) and
//! runs against the deployment-style external NATS with the stream, the hot-storage
//! durables and the publish answer its services use; and the deployment's `BrokerDown`
//! alert (`deploy/alerts.yml`), evaluated by Prometheus' own `promtool`, is quiet on our
//! `/metrics` while NATS is connected and fires once it has been down for 30 s.
//!
//! `promtool` comes with the Debian package `prometheus` (`.ci/run` installs it). Without
//! it the alert test evaluates the rule's expression itself (it only accepts the
//! `NAME == NUMBER` form BrokerDown has) and says so on stderr.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/metrics.rs"]
mod exposition;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use common::*;
use futures::StreamExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(20);

const FAMILIES: [&str; 6] = [
    "funding_rate",
    "open_interest",
    "liquidation",
    "volatility_index",
    "lsr_top_position",
    "lsr_all_account",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_marketprism_config_passes_check_with_the_shipped_routes() {
    let out = Command::new(BIN)
        .args(["--config", "config/marketprism.yaml", "check"])
        .current_dir(repo())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("routes: 4 from routes.marketprism.d"),
        "{text}"
    );
    for route in [
        "trades-canonical",
        "top-of-book",
        "spot-bid-levels",
        "large-liquidations",
    ] {
        assert!(text.contains(route), "{text}");
    }
    // The routes it loads are the shipped ones, not a copy.
    let linked = std::fs::read_to_string(repo().join("routes.marketprism.d/market-data.yaml"));
    let shipped = std::fs::read_to_string(repo().join("routes.d/market-data.yaml"));
    assert_eq!(linked.unwrap(), shipped.unwrap());
}

/// `config/marketprism.yaml` as JSON, pointed at `nats` and made test-friendly (ports 0,
/// loopback, absolute rule paths, no file watch).
fn marketprism_builder(nats: &NatsServer) -> ServiceBuilder {
    let text = std::fs::read_to_string(repo().join("config/marketprism.yaml")).unwrap();
    let shipped: Value = serde_saphyr::from_str(&text).unwrap();
    let mut builder = ServiceBuilder::new();
    let base = builder.config.clone();
    builder.config = shipped;
    builder
        .set("service.host", json!("127.0.0.1"))
        .set("service.port", json!(0))
        .set("service.ports_file", base["service"]["ports_file"].clone())
        .set("service.log_level", json!("info,async_nats=warn"))
        .set("nats.url", json!(nats.url()))
        .set(
            "router.routes_dir",
            json!(repo().join("routes.marketprism.d")),
        )
        .set("router.transforms_dir", json!(repo().join("transforms")))
        .set("router.watch", json!(false))
}

#[tokio::test]
async fn the_marketprism_config_runs_the_stream_durables_and_routes_the_deployment_uses() {
    // MARKET_DATA's 2 GiB are reserved up front: a store limit that allows it, whatever the
    // test machine's free disk (nothing near that much is written).
    let nats = NatsServer::start_configured(Some("jetstream { max_file_store: 8GB }\n")).await;
    let service = marketprism_builder(&nats).start().await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());

    let mut stream = js.get_stream("MARKET_DATA").await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    let want: Vec<String> = FAMILIES.iter().map(|f| format!("{f}.>")).collect();
    assert_eq!(config.subjects, want);
    assert_eq!(config.max_age, Duration::from_secs(48 * 3600));
    assert_eq!(config.max_messages, 5_000_000);
    assert_eq!(config.max_bytes, 2 << 30);
    assert_eq!(config.duplicate_window, Duration::from_secs(300));

    for family in FAMILIES {
        let name = format!("simple_hot_storage_realtime_{family}");
        let info = stream.consumer_info(&name).await.unwrap();
        let c = &info.config;
        assert_eq!(c.filter_subject, format!("{family}.>"), "{name}");
        assert_eq!(c.ack_policy, consumer::AckPolicy::Explicit, "{name}");
        assert_eq!(c.deliver_policy, consumer::DeliverPolicy::Last, "{name}");
        assert_eq!(c.ack_wait, Duration::from_secs(60), "{name}");
        assert_eq!((c.max_deliver, c.max_ack_pending), (3, 2000), "{name}");
        assert_eq!(
            c.deliver_subject.as_deref(),
            Some(format!("_deliver.{name}").as_str())
        );
    }

    // A trade goes out on core NATS (no stream captures it), a funding rate is stored and
    // answered with the Python service's fields.
    let (status, trade) = service
        .post(
            "/api/v1/broker/publish",
            &json!({ "subject": "trade.binance.spot.BTC-USDT", "message": {"price": "1"} }),
        )
        .await;
    assert_eq!(status, 200, "{trade}");
    assert_eq!(trade["data"]["jetstream"], false, "{trade}");
    assert_eq!(trade["data"]["message_id"], Value::Null);
    let (status, funding) = service
        .post(
            "/api/v1/broker/publish",
            &json!({ "subject": "funding_rate.okx.perpetual.BTC-USDT",
                     "message": {"current_funding_rate": 0.0001}, "msg_id": "funding:1" }),
        )
        .await;
    assert_eq!(status, 200, "{funding}");
    let data = &funding["data"];
    assert_eq!(data["stream"], "MARKET_DATA", "{funding}");
    assert_eq!(data["message_id"], data["sequence"], "{funding}");
    assert!(data["published_at"].is_string() && data["message_size"].is_u64());

    // The hot storage binds to its durable (as nats.py's js.subscribe(durable=…) does)
    // and gets the funding rate.
    let durable: consumer::PushConsumer = stream
        .get_consumer("simple_hot_storage_realtime_funding_rate")
        .await
        .unwrap();
    let mut messages = durable.messages().await.unwrap();
    let message = tokio::time::timeout(DEADLINE, messages.next())
        .await
        .expect("a delivery")
        .unwrap()
        .unwrap();
    assert_eq!(
        message.subject.as_str(),
        "funding_rate.okx.perpetual.BTC-USDT"
    );
    message.ack().await.unwrap();

    let (status, routes) = service.get("/api/v1/routes").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = routes["data"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{routes}");
    assert!(!names.contains(&"legacy-market-subjects"));
}

fn promtool() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
}

/// `promtool check metrics` on an exposition: no format error, no lint problem.
fn check_metrics(promtool: &Path, text: &str) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn metrics_text(service: &Service) -> String {
    let r = service
        .http
        .get(service.url("/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.unwrap()
}

/// The value of `marketprism_broker_connected` in an exposition (strictly parsed).
fn connected(text: &str) -> Option<f64> {
    exposition::parse(text)
        .unwrap_or_else(|e| panic!("bad exposition: {e}"))
        .get("marketprism_broker_connected", &[])
}

/// A promtool series value: the sample, or `_` (missing) when the scrape had none.
fn sample(value: Option<f64>) -> String {
    value.map_or("_".to_string(), |v| v.to_string())
}

/// The deployment's rule from deploy/alerts.yml: (expr, for).
fn broker_down_rule() -> (String, Duration) {
    let text = std::fs::read_to_string(repo().join("deploy/alerts.yml")).unwrap();
    let rules: Value = serde_saphyr::from_str(&text).unwrap();
    let rule = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "BrokerDown")
        .unwrap()
        .clone();
    let hold = prism_broker::config::units::parse_duration(rule["for"].as_str().unwrap()).unwrap();
    (rule["expr"].as_str().unwrap().to_string(), hold)
}

/// Scrapes taken every 15 s: three while connected, then six with NATS down.
const STEP: u64 = 15;

/// When promtool is missing: evaluates `NAME == NUMBER` with its hold over the series and
/// returns whether the alert fires at each of `at` (seconds).
fn evaluate_without_promtool(values: &[Option<f64>], at: &[u64]) -> Vec<bool> {
    let (expr, hold) = broker_down_rule();
    let (name, number) = expr.split_once("==").expect("NAME == NUMBER");
    assert_eq!(name.trim(), "marketprism_broker_connected");
    let number: f64 = number.trim().parse().unwrap();
    at.iter()
        .map(|&t| {
            // Active since the first step of the unbroken run of matching samples up to t.
            let last = (t / STEP) as usize;
            let mut since = None;
            for (i, v) in values.iter().enumerate().take(last + 1) {
                match v {
                    Some(v) if *v == number => {
                        since.get_or_insert(i as u64 * STEP);
                    }
                    _ => since = None,
                }
            }
            since.is_some_and(|s| Duration::from_secs(t - s) >= hold)
        })
        .collect()
}

#[tokio::test]
async fn broker_down_is_quiet_while_connected_and_fires_when_nats_is_down() {
    // A long restart backoff keeps the killed nats-server down while the test looks.
    let service = ServiceBuilder::new()
        .set(
            "nats.restart",
            json!({ "initial_backoff": "60s", "max_backoff": "60s" }),
        )
        .start()
        .await;
    let promtool = promtool();
    let up_text = metrics_text(&service).await;
    let up = connected(&up_text);
    assert_eq!(up, Some(1.0), "connected");

    let pid = service.nats_pid().await.unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    // Judged by the broker status (the shared client's own state), not by the metric
    // under test. (/ready's `nats_client` may name the HTTP workers' publishing
    // connections, which can notice first.)
    wait_for("the broker's client to lose nats", DEADLINE, || async {
        let (_, body) = service.get("/api/v1/broker/status").await;
        (body["data"]["nats"]["client_connected"] == false).then_some(())
    })
    .await;
    let down_text = metrics_text(&service).await;
    let down = connected(&down_text);

    let values: Vec<Option<f64>> = [up, up, up, down, down, down, down, down, down].to_vec();
    match promtool {
        Some(promtool) => {
            check_metrics(&promtool, &up_text);
            check_metrics(&promtool, &down_text);
            let dir = tempfile::tempdir().unwrap();
            let series: Vec<String> = values.iter().map(|v| sample(*v)).collect();
            let test = json!({
                "rule_files": [repo().join("deploy/alerts.yml")],
                "evaluation_interval": format!("{STEP}s"),
                "tests": [{
                    "interval": format!("{STEP}s"),
                    "input_series": [{
                        "series": "marketprism_broker_connected{job=\"message-broker\",instance=\"broker:8086\"}",
                        "values": series.join(" "),
                    }],
                    "alert_rule_test": [
                        // Connected: quiet.
                        { "eval_time": "30s", "alertname": "BrokerDown", "exp_alerts": [] },
                        // Down since 45 s: pending, not firing yet.
                        { "eval_time": "60s", "alertname": "BrokerDown", "exp_alerts": [] },
                        // Down for 45 s by now: firing, with the deployment's labels.
                        { "eval_time": "90s", "alertname": "BrokerDown", "exp_alerts": [{
                            "exp_labels": { "severity": "critical", "service": "message-broker",
                                            "job": "message-broker", "instance": "broker:8086" },
                            "exp_annotations": { "summary": "Message Broker disconnected",
                                                 "description": "Broker connection status is 0 for more than 30s." },
                        }] },
                    ],
                }],
            });
            let path = dir.path().join("broker-down.test.yml");
            std::fs::write(&path, test.to_string()).unwrap();
            let out = Command::new(&promtool)
                .args(["test", "rules"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "promtool test rules with scrapes up={up:?} down={down:?}:\n{}{}\nbroker log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                service.log()
            );
        }
        None => {
            eprintln!("promtool not found (apt-get install prometheus): evaluating BrokerDown in the test");
            assert_eq!(
                evaluate_without_promtool(&values, &[30, 60, 90]),
                [false, false, true],
                "scrapes up={up:?} down={down:?}"
            );
        }
    }
}

#[test]
fn the_fallback_evaluator_needs_the_series_present() {
    // The evaluator used without promtool: a missing series never fires (as in Prometheus).
    let up = Some(1.0);
    let values = [up, up, up, None, None, None, None, None, None];
    assert_eq!(
        evaluate_without_promtool(&values, &[30, 60, 90]),
        [false, false, false]
    );
    let down = Some(0.0);
    let values = [up, up, up, down, down, down, down, down, down];
    assert_eq!(
        evaluate_without_promtool(&values, &[30, 60, 75, 90]),
        [false, false, true, true]
    );
}
