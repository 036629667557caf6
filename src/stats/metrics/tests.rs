//! Unit tests of the metric declarations and the router's `RouteMetrics` handle.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;

/// Every sample of the exposition as `name{sorted labels}` → value.
fn samples(metrics: &Metrics) -> HashMap<String, f64> {
    let text = metrics.render().unwrap();
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let previous = out.insert(series.to_string(), value.parse::<f64>().unwrap());
        assert!(previous.is_none(), "duplicate series {series}");
    }
    out
}

fn value(metrics: &Metrics, series: &str) -> Option<f64> {
    samples(metrics).get(series).copied()
}

#[test]
fn every_metric_is_prefixed_and_documented() {
    let metrics = Metrics::new().unwrap();
    metrics.route("r");
    metrics.nats_server.apply_varz(&json!({"connections": 1}));
    metrics.jetstream.apply(JetStreamUsage::default());
    metrics.streams.set_stream("S", 1, 2, 3);
    metrics.streams.set_consumer("S", "c", 1, 2);
    metrics
        .http
        .observe("/health", "GET", 200, Duration::from_millis(1));
    metrics.bind_collectors(one_collector());
    let scrape = prometheus_parse::Scrape::parse(
        metrics.render().unwrap().lines().map(|l| Ok(l.to_string())),
    )
    .unwrap();
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
    ];
    for sample in &scrape.samples {
        // Ours, or one of the Python service's names (copies of ours, tested below).
        let compat = COMPAT_FAMILIES.iter().find(|c| c.name == sample.metric);
        assert!(
            sample.metric.starts_with("prism_") || compat.is_some(),
            "{}",
            sample.metric
        );
        // The parser reports a histogram's _sum and _count as samples of their own.
        let family = ["_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = sample.metric.strip_suffix(suffix)?;
                scrape.docs.contains_key(base).then_some(base)
            })
            .unwrap_or(&sample.metric);
        assert!(
            scrape.docs.get(family).is_some_and(|d| !d.is_empty()),
            "{} has no help",
            sample.metric
        );
        for label in sample.labels.keys() {
            let renamed = compat.and_then(|c| c.label).map(|(_, theirs)| theirs);
            assert!(
                allowed.contains(&label.as_str()) || renamed == Some(label.as_str()),
                "label {label}"
            );
        }
    }
}

#[test]
fn route_handle_counts_its_series_and_the_message_totals() {
    let metrics = Metrics::new().unwrap();
    let route = metrics.route("trades");
    for _ in 0..5 {
        route.matched();
    }
    for _ in 0..3 {
        route.passed();
    }
    route.filtered();
    route.filtered();
    for _ in 0..4 {
        route.published();
    }
    route.errored();
    route.dead_lettered();
    route.errored();
    route.dropped();
    route.passed_through();

    assert_eq!(
        route.counts(),
        RouteCounts {
            matched: 5,
            passed: 3,
            filtered: 2,
            published: 4,
            errored: 2,
            dead_lettered: 1,
            dropped: 1,
            passed_through: 1,
            ..RouteCounts::default()
        }
    );
    // The status endpoints' totals move with the route's counters.
    assert_eq!(metrics.message_totals(), (4, 5, 2));
    let s = samples(&metrics);
    assert_eq!(
        s[r#"prism_route_messages_matched_total{route="trades"}"#],
        5.0
    );
    assert_eq!(
        s[r#"prism_route_messages_published_total{route="trades"}"#],
        4.0
    );
    assert_eq!(
        s[r#"prism_route_messages_dead_lettered_total{route="trades"}"#],
        1.0
    );
    assert_eq!(s[r#"prism_messages_published_total{source="router"}"#], 4.0);
    assert_eq!(s[r#"prism_messages_published_total{source="api"}"#], 0.0);
    assert_eq!(s["prism_messages_consumed_total"], 5.0);
    assert_eq!(s[r#"prism_message_errors_total{source="router"}"#], 2.0);
}

#[test]
fn message_totals_agree_with_the_exposition() {
    let metrics = Metrics::new().unwrap();
    for _ in 0..7 {
        metrics.api_published();
    }
    metrics.api_publish_failed();
    let route = metrics.route("r");
    route.matched();
    route.published();
    let s = samples(&metrics);
    let published = s[r#"prism_messages_published_total{source="api"}"#]
        + s[r#"prism_messages_published_total{source="router"}"#];
    let errors = s[r#"prism_message_errors_total{source="api"}"#]
        + s[r#"prism_message_errors_total{source="router"}"#];
    let (p, c, e) = metrics.message_totals();
    assert_eq!(p as f64, published);
    assert_eq!(c as f64, s["prism_messages_consumed_total"]);
    assert_eq!(e as f64, errors);
    assert_eq!((p, c, e), (8, 1, 1));
}

#[test]
fn two_handles_on_one_route_share_the_series() {
    let metrics = Metrics::new().unwrap();
    let a = metrics.route("r");
    let b = metrics.route("r");
    let c = a.clone();
    a.matched();
    b.matched();
    c.matched();
    assert_eq!(a.counts().matched, 3);
    assert_eq!(
        value(&metrics, r#"prism_route_messages_matched_total{route="r"}"#),
        Some(3.0)
    );
}

#[test]
fn handles_count_from_many_threads_without_losing_increments() {
    let metrics = Metrics::new().unwrap();
    let route = metrics.route("hot");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let route = route.clone();
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    route.matched();
                    route.observe_processing(Duration::from_micros(10));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(route.counts().matched, 40_000);
    assert_eq!(route.processing_samples(), 40_000);
    assert_eq!(metrics.messages_consumed.get(), 40_000);
}

#[test]
fn message_age_is_routing_time_minus_the_timestamp_in_ms() {
    let metrics = Metrics::new().unwrap();
    let route = metrics.route("ages");
    route.observe_age_ms(1_000, 1_250); // 0.25 s
    route.observe_age_ms(1_000, 3_000); // 2 s
    route.observe_age_ms(5_000, 4_000); // from the future: 0
    assert_eq!(route.age_samples(), 3);
    let s = samples(&metrics);
    let sum = s[r#"prism_route_message_age_seconds_sum{route="ages"}"#];
    assert!((sum - 2.25).abs() < 1e-9, "{sum}");
    assert_eq!(
        s[r#"prism_route_message_age_seconds_bucket{route="ages",le="0.001"}"#],
        1.0
    );
    assert_eq!(
        s[r#"prism_route_message_age_seconds_bucket{route="ages",le="0.25"}"#],
        2.0
    );
    assert_eq!(
        s[r#"prism_route_message_age_seconds_bucket{route="ages",le="2.5"}"#],
        3.0
    );
}

#[test]
fn processing_latency_lands_in_the_histogram() {
    let metrics = Metrics::new().unwrap();
    let route = metrics.route("p");
    route.observe_processing(Duration::from_micros(300));
    let s = samples(&metrics);
    assert_eq!(
        s[r#"prism_route_processing_duration_seconds_bucket{route="p",le="0.00025"}"#],
        0.0
    );
    assert_eq!(
        s[r#"prism_route_processing_duration_seconds_bucket{route="p",le="0.0005"}"#],
        1.0
    );
    assert_eq!(
        s[r#"prism_route_processing_duration_seconds_count{route="p"}"#],
        1.0
    );
}

#[test]
fn retain_routes_removes_the_series_of_deleted_routes() {
    let metrics = Metrics::new().unwrap();
    let kept = metrics.route("kept");
    let gone = metrics.route("gone");
    kept.matched();
    gone.matched();
    metrics.retain_routes(["kept"]);
    let s = samples(&metrics);
    assert!(s.contains_key(r#"prism_route_messages_matched_total{route="kept"}"#));
    assert!(!s.keys().any(|k| k.contains(r#"route="gone""#)), "{s:?}");
    // A stale handle still counts safely, just not into the exposition; the totals do.
    gone.matched();
    assert_eq!(metrics.messages_consumed.get(), 3);
    // Asking for the route again brings fresh series back.
    metrics.route("gone");
    assert_eq!(
        value(
            &metrics,
            r#"prism_route_messages_matched_total{route="gone"}"#
        ),
        Some(0.0)
    );
}

#[test]
fn reloads_and_routes_version() {
    let metrics = Metrics::new().unwrap();
    metrics.reload_succeeded(1, 4);
    metrics.reload_failed();
    metrics.reload_failed();
    metrics.reload_succeeded(2, 5);
    let s = samples(&metrics);
    assert_eq!(s[r#"prism_route_reloads_total{outcome="ok"}"#], 2.0);
    assert_eq!(s[r#"prism_route_reloads_total{outcome="failed"}"#], 2.0);
    assert_eq!(s["prism_routes_version"], 2.0);
    assert_eq!(s["prism_routes_loaded"], 5.0);
}

#[test]
fn nats_liveness_is_read_from_the_state_at_scrape_time() {
    let metrics = Metrics::new().unwrap();
    // Unbound: zeros, series present.
    assert_eq!(value(&metrics, "prism_nats_server_up"), Some(0.0));
    let state = Arc::new(NatsState::supervised(Default::default()));
    metrics.bind_nats(state.clone());
    state.mark_up(42);
    state.count_restart();
    state.count_restart();
    state.set_client_connected(true);
    state.set_client_connected(false);
    state.set_client_connected(true);
    let s = samples(&metrics);
    assert_eq!(s["prism_nats_server_up"], 1.0);
    assert_eq!(s["prism_nats_client_connected"], 1.0);
    assert_eq!(s["prism_nats_server_restarts_total"], 2.0);
    assert_eq!(s["prism_nats_client_reconnects_total"], 1.0);
    state.mark_down();
    // Scraping twice never double counts.
    let _ = samples(&metrics);
    let s = samples(&metrics);
    assert_eq!(s["prism_nats_server_up"], 0.0);
    assert_eq!(s["prism_nats_server_restarts_total"], 2.0);
}

#[test]
fn crash_figures_and_the_jetstream_probe_are_read_at_scrape_time() {
    let metrics = Metrics::new().unwrap();
    let state = Arc::new(NatsState::supervised(Default::default()));
    metrics.bind_nats(state.clone());
    state.mark_up(7);
    state.reset_probe();
    let s = samples(&metrics);
    assert_eq!(s["prism_nats_server_recent_crashes"], 0.0);
    assert_eq!(s["prism_nats_server_crash_looping"], 0.0);
    assert_eq!(s["prism_nats_server_hang_restarts_total"], 0.0);
    assert_eq!(s["prism_nats_jetstream_answering"], 1.0);
    state.count_crash(false);
    state.count_crash(false);
    state.count_crash(true);
    state.record_probe(Err("timed out".into()));
    let s = samples(&metrics);
    assert_eq!(s["prism_nats_server_recent_crashes"], 3.0);
    assert_eq!(
        s["prism_nats_server_crash_looping"], 1.0,
        "3 is the default loop"
    );
    assert_eq!(s["prism_nats_server_hang_restarts_total"], 1.0);
    assert_eq!(s["prism_nats_jetstream_answering"], 0.0);
    // External mode has no probe: no series claims it answers or not.
    let external = Metrics::new().unwrap();
    external.bind_nats(Arc::new(NatsState::external()));
    assert_eq!(value(&external, "prism_nats_jetstream_answering"), None);
}

#[test]
fn cluster_node_gauges_show_only_for_a_cluster_and_stream_series_go_with_their_stream() {
    let metrics = Metrics::new().unwrap();
    assert_eq!(value(&metrics, "prism_cluster_peers"), None);
    metrics.cluster.set_node(false, 0, true);
    assert_eq!(
        value(&metrics, "prism_cluster_peers"),
        None,
        "not clustered"
    );
    metrics.cluster.set_node(true, 2, true);
    assert_eq!(value(&metrics, "prism_cluster_peers"), Some(2.0));
    assert_eq!(value(&metrics, "prism_cluster_meta_leader"), Some(1.0));
    metrics.cluster.set_stream("MARKET_DATA", 3, 2, 17, true);
    let s = samples(&metrics);
    assert_eq!(s["prism_stream_replicas{stream=\"MARKET_DATA\"}"], 3.0);
    assert_eq!(
        s["prism_stream_replicas_current{stream=\"MARKET_DATA\"}"],
        2.0
    );
    assert_eq!(s["prism_stream_replica_lag{stream=\"MARKET_DATA\"}"], 17.0);
    assert_eq!(s["prism_stream_has_leader{stream=\"MARKET_DATA\"}"], 1.0);
    metrics.cluster.remove_stream("MARKET_DATA");
    metrics.cluster.hide_node();
    let s = samples(&metrics);
    assert!(
        !s.keys().any(|k| k.starts_with("prism_stream_replica")),
        "{s:?}"
    );
    assert!(!s.keys().any(|k| k.starts_with("prism_cluster_")), "{s:?}");
}

#[test]
fn external_mode_server_up_follows_the_client() {
    let metrics = Metrics::new().unwrap();
    let state = Arc::new(NatsState::external());
    metrics.bind_nats(state.clone());
    assert_eq!(value(&metrics, "prism_nats_server_up"), Some(0.0));
    state.set_client_connected(true);
    assert_eq!(value(&metrics, "prism_nats_server_up"), Some(1.0));
}

#[test]
fn varz_gauges_are_absent_until_a_snapshot_is_applied() {
    let metrics = Metrics::new().unwrap();
    assert_eq!(value(&metrics, "prism_nats_server_connections"), None);
    assert_eq!(value(&metrics, "prism_nats_jetstream_storage_bytes"), None);
    metrics.nats_server.apply_varz(&json!({
        "connections": 3, "in_msgs": 10, "out_msgs": 20, "in_bytes": 100,
        "out_bytes": 200, "slow_consumers": 0, "mem": 12345678,
    }));
    let jsz = json!({"memory": 5, "storage": 4096, "streams": 3, "consumers": 1});
    metrics
        .jetstream
        .apply(JetStreamUsage::from_jsz(&jsz).unwrap());
    let s = samples(&metrics);
    assert_eq!(s["prism_nats_server_connections"], 3.0);
    assert_eq!(s["prism_nats_server_out_bytes"], 200.0);
    assert_eq!(s["prism_nats_server_memory_bytes"], 12345678.0);
    assert_eq!(s["prism_nats_jetstream_storage_bytes"], 4096.0);
    assert_eq!(s["prism_nats_jetstream_streams"], 3.0);
    metrics.nats_server.hide();
    assert_eq!(value(&metrics, "prism_nats_server_connections"), None);
}

#[test]
fn stream_series_are_set_and_removed() {
    let metrics = Metrics::new().unwrap();
    metrics.streams.set_stream("MARKET_DATA", 10, 2048, 1);
    metrics
        .streams
        .set_consumer("MARKET_DATA", "prism-trades", 4, 2);
    let s = samples(&metrics);
    assert_eq!(s[r#"prism_stream_messages{stream="MARKET_DATA"}"#], 10.0);
    assert_eq!(
        s[r#"prism_consumer_ack_pending_messages{consumer="prism-trades",stream="MARKET_DATA"}"#],
        2.0
    );
    metrics
        .streams
        .remove_consumer("MARKET_DATA", "prism-trades");
    metrics.streams.remove_stream("MARKET_DATA");
    assert!(!metrics.render().unwrap().contains("MARKET_DATA"));
}

#[test]
fn unknown_methods_share_one_label_value() {
    assert_eq!(bounded_method("GET"), "GET");
    assert_eq!(bounded_method("BREW"), "OTHER");
    assert_eq!(bounded_method("get"), "OTHER");
}

/// A collectors state with one collector heard from now.
fn one_collector() -> Arc<crate::collectors::CollectorsState> {
    let config = crate::config::CollectorsConfig::default();
    let state = Arc::new(crate::collectors::CollectorsState::new(&config));
    let mut table = crate::collectors::table::CollectorTable::new(state.settings);
    table.accept("health.collector.c-1", b"{}", std::time::Instant::now(), 0);
    state.publish_for_tests(table.view());
    state
}

/// Every family the service can export (gated ones opened, one series of each labelled
/// family created).
fn declared_families() -> std::collections::HashSet<String> {
    let metrics = Metrics::new().unwrap();
    metrics.route("r");
    metrics.nats_server.apply_varz(&json!({}));
    metrics.jetstream.apply(JetStreamUsage::default());
    metrics.streams.set_stream("S", 0, 0, 0);
    metrics.streams.set_consumer("S", "c", 0, 0);
    metrics.cluster.set_node(true, 0, false);
    metrics.cluster.set_stream("S", 1, 1, 0, true);
    metrics.bind_nats(Arc::new(NatsState::supervised(Default::default())));
    metrics
        .http
        .observe("/health", "GET", 200, Duration::from_millis(1));
    metrics.bind_collectors(one_collector());
    metrics
        .registry
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect()
}

/// `prism_…` names used in a text, with histogram suffixes stripped.
fn referenced_metrics(text: &str) -> std::collections::BTreeSet<String> {
    let re = regex::Regex::new(r"prism_[a-z_]+").unwrap();
    re.find_iter(text)
        .map(|m| {
            let name = m.as_str();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name)
                .to_string()
        })
        .collect()
}

#[test]
fn grafana_dashboard_uses_only_declared_metrics_and_covers_the_issue() {
    let text = include_str!("../../../deploy/grafana/prism-broker.json");
    let dashboard: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(dashboard["uid"], "prism-broker");
    let declared = declared_families();
    let mut exprs = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push_str(target["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(def) = var["definition"].as_str() {
            exprs.push_str(def);
        }
    }
    let used = referenced_metrics(&exprs);
    for name in &used {
        assert!(declared.contains(name), "dashboard uses undeclared {name}");
    }
    for needed in [
        "prism_route_messages_matched_total",
        "prism_route_messages_dead_lettered_total",
        "prism_route_message_age_seconds",
        "prism_nats_server_up",
        "prism_stream_messages",
        "prism_http_request_duration_seconds",
        "prism_collectors_active",
        "prism_collector_heartbeat_age_seconds",
        "prism_cluster_peers",
        "prism_cluster_meta_leader",
        "prism_stream_replicas_current",
        "prism_stream_replica_lag",
        "prism_stream_has_leader",
        "prism_nats_server_crash_looping",
    ] {
        assert!(used.contains(needed), "dashboard lacks {needed}");
    }
}

#[test]
fn prometheus_config_scrapes_the_api_port() {
    let text = include_str!("../../../deploy/prometheus.yml");
    assert!(text.contains("metrics_path: /metrics"));
    assert!(text.contains("\"localhost:8086\""));
}

#[test]
fn compatibility_families_copy_ours_under_the_old_names() {
    use std::time::Instant;

    use crate::collectors::{table::Settings, CollectorsState};

    let metrics = Metrics::new().unwrap();
    let nats = Arc::new(NatsState::supervised(Default::default()));
    metrics.bind_nats(nats.clone());
    nats.set_client_connected(true);
    metrics.streams.set_stream("MARKET_DATA", 10, 2048, 6);
    metrics.streams.set_stream("SYSTEM_EVENTS", 0, 0, 0);
    let text = metrics.render().unwrap();
    let s = samples(&metrics);
    assert_eq!(s["marketprism_broker_connected"], 1.0);
    assert_eq!(
        s[r#"marketprism_broker_stream_messages_total{stream="MARKET_DATA"}"#],
        10.0
    );
    assert_eq!(
        s[r#"marketprism_broker_stream_bytes_total{stream="MARKET_DATA"}"#],
        2048.0
    );
    assert_eq!(
        s[r#"marketprism_broker_stream_consumers{stream="MARKET_DATA"}"#],
        6.0
    );
    assert_eq!(
        s[r#"marketprism_broker_stream_messages_total{stream="SYSTEM_EVENTS"}"#],
        0.0
    );
    // Levels named _total are untyped (as the Python service's were), the rest gauges.
    assert!(text.contains("# TYPE marketprism_broker_stream_messages_total untyped\n"));
    assert!(text.contains("# TYPE marketprism_broker_connected gauge\n"));
    // No collector bound yet: none active, and no per-instance series.
    assert_eq!(s["marketprism_broker_collectors_active"], 0.0);
    assert!(!text.contains("marketprism_broker_collector_last_heartbeat_age_seconds"));

    // Disconnected: 0 under both names, in the same scrape.
    nats.set_client_connected(false);
    let s = samples(&metrics);
    assert_eq!(s["prism_nats_client_connected"], 0.0);
    assert_eq!(s["marketprism_broker_connected"], 0.0);

    // Collectors: the age gauge's `collector` label is the old `instance`.
    let state = Arc::new(CollectorsState::new(
        &crate::config::CollectorsConfig::default(),
    ));
    metrics.bind_collectors(state.clone());
    let mut table = crate::collectors::table::CollectorTable::new(Settings {
        stale_after: Duration::from_secs(30),
        ttl: Duration::from_secs(600),
        max_instances: 8,
    });
    let long_ago = Instant::now() - Duration::from_secs(45);
    table.accept("health.collector.old-1", b"{}", long_ago, 0);
    table.accept("health.collector.fresh-2", b"{}", Instant::now(), 0);
    state.publish_for_tests(table.view());
    let s = samples(&metrics);
    assert_eq!(s["prism_collectors_active"], 1.0);
    assert_eq!(s["prism_collectors_stale"], 1.0);
    assert_eq!(s["marketprism_broker_collectors_active"], 1.0);
    let ours = s[r#"prism_collector_heartbeat_age_seconds{collector="old-1"}"#];
    let theirs = s[r#"marketprism_broker_collector_last_heartbeat_age_seconds{instance="old-1"}"#];
    assert!((45.0..60.0).contains(&ours), "{ours}");
    assert_eq!(ours, theirs, "one gather feeds both");

    // A removed stream leaves both names.
    metrics.streams.remove_stream("MARKET_DATA");
    assert!(!metrics.render().unwrap().contains("MARKET_DATA"));
}

#[test]
fn compat_label_values_are_escaped() {
    let metrics = Metrics::new().unwrap();
    metrics.streams.set_stream("we\"ird\\", 1, 1, 1);
    let text = metrics.render().unwrap();
    assert!(
        text.contains(r#"marketprism_broker_stream_messages_total{stream="we\"ird\\"} 1"#),
        "{text}"
    );
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
}
