use super::*;

fn parse_str(yaml: &str) -> Result<BrokerConfig, ConfigError> {
    parse(yaml, "broker.yaml", &EnvSource::default())
}

fn problem_paths(err: &ConfigError) -> Vec<String> {
    err.problems().iter().map(|p| p.path.clone()).collect()
}

#[test]
fn empty_file_gives_the_defaults() {
    let config = parse_str("").unwrap();
    assert_eq!(config.service.port, 8086);
    assert!(config.nats.auto_start);
    assert_eq!(config.nats.jetstream.max_memory.bytes(), 1 << 30);
    let names: Vec<_> = config
        .effective_streams()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        names,
        [
            "MARKET_DATA",
            "SYSTEM_EVENTS",
            "SERVICE_LOGS",
            "DEAD_LETTERS",
            "KLINES"
        ]
    );
}

#[test]
fn the_shipped_config_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/broker.yaml"))
        .unwrap();
    let config = parse_str(&text).unwrap();
    assert!(config
        .effective_streams()
        .iter()
        .any(|s| s.name == "CUSTOM_STREAM"));
}

#[test]
fn units_are_converted() {
    let config = parse_str(
        "nats:\n  jetstream: { max_memory: 512MB, max_storage: 2GB }\nstreams:\n  X: { subjects: [x.>], max_age: 7d, max_bytes: 1GB }\n",
    )
    .unwrap();
    assert_eq!(config.nats.jetstream.max_memory.bytes(), 512 << 20);
    let x = config
        .effective_streams()
        .into_iter()
        .find(|s| s.name == "X")
        .unwrap();
    assert_eq!(x.max_age.as_secs(), 7 * 86_400);
    assert_eq!(x.max_bytes, 1 << 30);
}

#[test]
fn default_streams_match_the_seeds() {
    let streams = default_streams();
    let market = &streams[0];
    assert_eq!(market.name, "MARKET_DATA");
    assert!(market.subjects.contains(&"market.>".to_string()));
    assert!(market.subjects.contains(&"trade.>".to_string()));
    assert_eq!(market.max_age.as_secs(), 3600);
    assert_eq!(market.max_msgs, 1_000_000);
    assert_eq!(streams[1].max_age.as_secs(), 86_400);
    assert_eq!(streams[1].max_msgs, 100_000);
    assert_eq!(streams[2].max_age.as_secs(), 604_800);
    assert_eq!(streams[2].max_msgs, 500_000);
}

#[test]
fn configured_entry_merges_over_a_default() {
    let config = parse_str("streams:\n  MARKET_DATA: { max_age: 2h }\n").unwrap();
    let market = &config.effective_streams()[0];
    assert_eq!(market.max_age.as_secs(), 7200);
    assert_eq!(
        market.max_msgs, 1_000_000,
        "fields not given keep the default"
    );
    assert!(market.subjects.contains(&"trade.>".to_string()));
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let err = parse_str(
        "service:\n  port: not-a-port\nnats:\n  prot: 4222\n  jetstream: { max_memory: 12XB }\nstreams:\n  S: { subjects: [s.>], retention: forever }\n",
    )
    .unwrap_err();
    let paths = problem_paths(&err);
    assert!(paths.contains(&"service.port".to_string()), "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with("nats")), "{paths:?}");
    assert!(
        paths.contains(&"nats.jetstream.max_memory".to_string()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"streams.S.retention".to_string()),
        "{paths:?}"
    );
    assert_eq!(err.problems().len(), 4, "{err}");
    let text = err.to_string();
    assert!(text.contains("prot"), "unknown field is named: {text}");
    assert!(
        text.lines().all(|l| l.starts_with("broker.yaml: ")),
        "{text}"
    );
}

#[test]
fn semantic_problems_are_collected_too() {
    let err = parse_str(
        "nats:\n  port: 8222\n  http_port: 8222\nstreams:\n  bad.name: { subjects: [x.>] }\n  EMPTY: {}\n  OVER: { subjects: [\"market.binance.>\"] }\n",
    )
    .unwrap_err();
    let paths = problem_paths(&err);
    assert!(paths.contains(&"nats.http_port".to_string()), "{paths:?}");
    assert!(paths.contains(&"streams.bad.name".to_string()), "{paths:?}");
    assert!(
        paths.contains(&"streams.EMPTY.subjects".to_string()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"streams.OVER.subjects[0]".to_string()),
        "{paths:?}"
    );
}

#[test]
fn env_overrides_win_over_the_file() {
    let env = EnvSource::from_pairs([
        ("API_HOST", "0.0.0.0"),
        ("API_PORT", "9090"),
        ("NATS_URL", "nats://a:4222,nats://b:4222"),
        ("LOG_LEVEL", "DEBUG"),
        ("ENVIRONMENT", "production"),
        ("PRISM_API_TOKEN", "s3cret"),
    ]);
    let config = parse("service: { port: 1 }\n", "f", &env).unwrap();
    assert_eq!(config.service.host, "0.0.0.0");
    assert_eq!(config.service.port, 9090);
    assert_eq!(config.nats.url.to_vec(), ["nats://a:4222", "nats://b:4222"]);
    assert_eq!(config.service.log_level, "debug");
    assert_eq!(config.service.environment, "production");
    assert_eq!(config.service.api_token.as_deref(), Some("s3cret"));
}

#[test]
fn bad_env_value_is_a_problem() {
    let env = EnvSource::from_pairs([("API_PORT", "http")]);
    let err = parse("", "f", &env).unwrap_err();
    assert_eq!(problem_paths(&err), ["service.port"]);
}

#[test]
fn url_list_and_external_mode() {
    let config =
        parse_str("nats:\n  auto_start: false\n  url: [nats://a:4222, nats://b:4222]\n").unwrap();
    assert_eq!(
        config.nats.client_urls(),
        ["nats://a:4222", "nats://b:4222"]
    );
    let config = parse_str("nats: { port: 5555 }\n").unwrap();
    assert_eq!(config.nats.client_urls(), ["nats://127.0.0.1:5555"]);
}

#[test]
fn yaml_syntax_error_is_reported() {
    let err = parse_str("service: [unclosed\n").unwrap_err();
    assert!(err.to_string().contains("invalid yaml"), "{err}");
}

#[test]
fn the_docker_config_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/docker.yaml"))
        .unwrap();
    let config = parse_str(&text).unwrap();
    assert_eq!(config.nats.host, "0.0.0.0");
    assert_eq!(config.nats.client_urls(), ["nats://127.0.0.1:4222"]);
}

#[test]
fn port_zero_is_accepted_everywhere_and_never_a_collision() {
    let config = parse_str(
        "service: { port: 0, ports_file: run/ports.json }\nnats:\n  port: 0\n  http_port: 0\n  server_name: n1\n  cluster: { name: c, port: 0, routes: [nats-route://127.0.0.1:7000] }\n",
    )
    .unwrap();
    assert_eq!(config.service.port, 0);
    assert_eq!(config.nats.port, 0);
    assert_eq!(config.nats.http_port, 0);
    assert_eq!(config.nats.cluster.port, 0);
    assert_eq!(
        config.service.ports_file.as_deref(),
        Some(std::path::Path::new("run/ports.json"))
    );
}

#[test]
fn fixed_ports_still_collide_and_a_ports_file_must_be_a_file() {
    let err = parse_str(
        "service: { ports_file: \"\" }\nnats:\n  port: 0\n  http_port: 7000\n  server_name: n1\n  cluster: { name: c, port: 7000, routes: [nats-route://127.0.0.1:7001] }\n",
    )
    .unwrap_err();
    assert_eq!(
        problem_paths(&err),
        ["service.ports_file", "nats.cluster.port"]
    );
}

#[test]
fn a_missing_default_file_means_the_defaults_with_env_overrides_anywhere_else_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let default = dir.path().join("broker.yaml");
    let env = EnvSource::from_pairs([("API_PORT", "9999")]);
    // What serve, check and test read when the default path has no file.
    let config = super::load_from(&default, &default, &env).unwrap();
    assert_eq!(config.service.port, 9999, "env overrides still apply");
    assert_eq!(config.effective_streams().len(), 5);
    let bad = EnvSource::from_pairs([("API_PORT", "http")]);
    assert!(
        super::load_from(&default, &default, &bad).is_err(),
        "and are validated"
    );
    let other = dir.path().join("other.yaml");
    assert!(matches!(
        super::load_from(&other, &default, &env),
        Err(ConfigError::Read { .. })
    ));
}

#[test]
fn collectors_default_to_the_python_service_and_collector_ttl_sec_overrides() {
    let config = parse_str("").unwrap();
    assert_eq!(config.collectors.subject, "health.collector.>");
    assert_eq!(config.collectors.stale_after.duration().as_secs(), 30);
    assert_eq!(config.collectors.ttl.duration().as_secs(), 600);
    let yaml = "collectors: { ttl: 5m, stale_after: 10s }\n";
    let env = EnvSource::from_pairs([("COLLECTOR_TTL_SEC", "120")]);
    let config = parse(yaml, "broker.yaml", &env).unwrap();
    assert_eq!(config.collectors.ttl.duration().as_secs(), 120, "env wins");
    assert_eq!(config.collectors.stale_after.duration().as_secs(), 10);
    let env = EnvSource::from_pairs([("COLLECTOR_TTL_SEC", "ten minutes")]);
    let err = parse(yaml, "broker.yaml", &env).unwrap_err();
    assert_eq!(problem_paths(&err), ["collectors.ttl"]);
    assert!(err.to_string().contains("COLLECTOR_TTL_SEC"), "{err}");
}

#[test]
fn every_problem_of_the_collectors_section_is_reported() {
    let err = parse_str(
        "collectors: { subject: \"health..x\", stale_after: 0, ttl: 0, max_instances: 0, extra: 1 }\n",
    )
    .unwrap_err();
    assert_eq!(problem_paths(&err), ["collectors.extra"]);
    let err = parse_str(
        "collectors: { subject: \"health..x\", stale_after: 0, ttl: 0, max_instances: 0 }\n",
    )
    .unwrap_err();
    assert_eq!(
        problem_paths(&err),
        [
            "collectors.subject",
            "collectors.stale_after",
            "collectors.ttl",
            "collectors.max_instances"
        ]
    );
}

#[test]
fn consumers_are_resolved_with_defaults() {
    let config = parse_str(
        "consumers:\n  store: { stream: MARKET_DATA, filter_subject: funding_rate.>, deliver_policy: last, ack_wait: 1m, max_deliver: 3, max_ack_pending: 2000, deliver_subject: _deliver.store }\n  plain: { stream: SYSTEM_EVENTS }\n",
    )
    .unwrap();
    let specs = config.durable_consumers();
    assert_eq!(specs.len(), 2);
    let plain = &specs[0];
    assert_eq!(plain.name, "plain");
    assert_eq!(plain.filter_subject, "");
    assert_eq!(plain.deliver_policy, DeliverFrom::All);
    assert_eq!(plain.ack_policy, AckMode::Explicit);
    assert_eq!(plain.ack_wait.as_secs(), 30);
    assert_eq!((plain.max_deliver, plain.max_ack_pending), (-1, 1000));
    assert_eq!(plain.deliver_subject, None);
    let store = &specs[1];
    assert_eq!(store.deliver_policy, DeliverFrom::Last);
    assert_eq!(store.ack_wait.as_secs(), 60);
    assert_eq!(store.deliver_subject.as_deref(), Some("_deliver.store"));
}

#[test]
fn every_problem_of_the_consumers_section_is_reported() {
    // Unknown fields and bad values found by deserializing, each with its path.
    let err = parse_str(
        "consumers:\n  a: { stream: MARKET_DATA, deliver_policy: sometimes, colour: red }\n  b: { ack_policy: maybe }\n",
    )
    .unwrap_err();
    assert_eq!(
        problem_paths(&err),
        [
            "consumers.a.colour",
            "consumers.a.deliver_policy",
            "consumers.b.ack_policy"
        ]
    );
    // Semantic problems, all of them.
    let err = parse_str(
        "consumers:\n  \"bad.name\": { stream: MARKET_DATA }\n  nostream: {}\n  unknown: { stream: NOPE }\n  outside: { stream: SYSTEM_EVENTS, filter_subject: trade.> }\n  loop: { stream: MARKET_DATA, deliver_subject: trade.x }\n  limits: { stream: MARKET_DATA, ack_wait: 0, max_deliver: 0, max_ack_pending: -5, filter_subject: \"a..b\" }\n",
    )
    .unwrap_err();
    assert_eq!(
        problem_paths(&err),
        [
            "consumers.bad.name",
            "consumers.limits.filter_subject",
            "consumers.limits.ack_wait",
            "consumers.limits.max_deliver",
            "consumers.limits.max_ack_pending",
            "consumers.loop.deliver_subject",
            "consumers.nostream.stream",
            "consumers.outside.filter_subject",
            "consumers.unknown.stream"
        ]
    );
    assert!(err.to_string().contains("NOPE"), "{err}");
    assert!(
        err.to_string().contains("captured by stream MARKET_DATA"),
        "{err}"
    );
}

#[test]
fn the_marketprism_config_is_valid_and_what_the_deployment_uses() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/marketprism.yaml"
    ))
    .unwrap();
    let config = parse_str(&text).unwrap();
    assert_eq!(config.service.port, 8086);
    assert!(!config.nats.auto_start);
    let market = config
        .effective_streams()
        .into_iter()
        .find(|s| s.name == "MARKET_DATA")
        .unwrap();
    let families = [
        "funding_rate",
        "open_interest",
        "liquidation",
        "volatility_index",
        "lsr_top_position",
        "lsr_all_account",
    ];
    let subjects: Vec<String> = families.iter().map(|f| format!("{f}.>")).collect();
    assert_eq!(market.subjects, subjects);
    assert_eq!(market.max_age.as_secs(), 48 * 3600);
    assert_eq!(market.max_msgs, 5_000_000);
    assert_eq!(market.max_bytes, 2 << 30);
    assert_eq!(market.duplicate_window.as_secs(), 300);
    // Trades and order books are in no stream.
    for stream in config.effective_streams() {
        for s in &stream.subjects {
            assert!(
                !crate::subject::overlap(s, "trade.>")
                    && !crate::subject::overlap(s, "orderbook.>"),
                "{} captures {s}",
                stream.name
            );
        }
    }
    let consumers = config.durable_consumers();
    let names: Vec<&str> = consumers.iter().map(|c| c.name.as_str()).collect();
    let mut want: Vec<String> = families
        .iter()
        .map(|f| format!("simple_hot_storage_realtime_{f}"))
        .collect();
    want.sort();
    assert_eq!(names, want);
    for c in &consumers {
        let family = c.name.trim_start_matches("simple_hot_storage_realtime_");
        assert_eq!(c.stream, "MARKET_DATA");
        assert_eq!(c.filter_subject, format!("{family}.>"));
        assert_eq!(c.ack_policy, AckMode::Explicit);
        assert_eq!(c.deliver_policy, DeliverFrom::Last);
        assert_eq!(c.ack_wait.as_secs(), 60);
        assert_eq!((c.max_deliver, c.max_ack_pending), (3, 2000));
        assert_eq!(
            c.deliver_subject.as_deref(),
            Some(format!("_deliver.{}", c.name).as_str())
        );
    }
    assert_eq!(config.collectors, CollectorsConfig::default());
}

#[test]
fn restart_defaults_recover_within_seconds_and_hang_timeout_is_ten_seconds() {
    let config = parse_str("").unwrap();
    let restart = &config.nats.restart;
    assert_eq!(restart.max_backoff.duration().as_secs(), 2);
    assert_eq!(restart.initial_backoff.duration().as_millis(), 250);
    assert_eq!(restart.crash_window.duration().as_secs(), 300);
    assert_eq!(restart.crash_loop_after, 3);
    assert_eq!(config.nats.hang_timeout.duration().as_secs(), 10);
    let config = parse_str("nats: { hang_timeout: 0 }\n").unwrap();
    assert!(config.nats.hang_timeout.duration().is_zero(), "0 disables");
    let err = parse_str(
        "nats:\n  hang_timeout: 500ms\n  restart: { crash_window: 0, crash_loop_after: 0 }\n",
    )
    .unwrap_err();
    assert_eq!(
        problem_paths(&err),
        [
            "nats.restart.crash_window",
            "nats.restart.crash_loop_after",
            "nats.hang_timeout"
        ]
    );
}

const CLUSTER_NODE: &str = "nats:\n  server_name: node1\n  cluster:\n    name: prism\n    port: 6222\n    routes: [nats-route://node2:6222, nats-route://node3:6222]\n";

#[test]
fn a_cluster_of_three_gets_three_replicas_for_the_default_streams() {
    let config = parse_str(CLUSTER_NODE).unwrap();
    assert!(config.nats.clustered());
    assert_eq!(config.nats.cluster_size(), Some(3));
    for spec in config.effective_streams() {
        assert_eq!(spec.replicas, 3, "{}", spec.name);
    }
    // The config says otherwise: it wins, for that stream only.
    let text = format!("{CLUSTER_NODE}streams:\n  SERVICE_LOGS: {{ replicas: 1 }}\n  OWN: {{ subjects: [own.>] }}\n");
    let specs = parse_str(&text).unwrap().effective_streams();
    let replicas = |name: &str| specs.iter().find(|s| s.name == name).unwrap().replicas;
    assert_eq!(replicas("SERVICE_LOGS"), 1);
    assert_eq!(replicas("MARKET_DATA"), 3);
    assert_eq!(replicas("DEAD_LETTERS"), 3);
    assert_eq!(
        replicas("OWN"),
        3,
        "streams the config adds are replicated like the defaults unless they say"
    );
    // Not clustered, or a cluster of two: one replica each.
    for spec in parse_str("").unwrap().effective_streams() {
        assert_eq!(spec.replicas, 1);
    }
    let two = "nats:\n  server_name: a\n  cluster: { name: c, routes: [nats-route://b:6222] }\n";
    let config = parse_str(two).unwrap();
    assert_eq!(config.nats.cluster_size(), Some(2));
    assert!(config.effective_streams().iter().all(|s| s.replicas == 1));
}

#[test]
fn cluster_size_counts_distinct_routes_that_are_not_this_node() {
    // The same route list on every node (this node's own route included) is common.
    let text = "nats:\n  server_name: n1\n  host: 127.0.0.1\n  cluster:\n    name: c\n    port: 7001\n    routes: [nats-route://127.0.0.1:7001, nats-route://127.0.0.1:7002, nats-route://127.0.0.1:7003, nats-route://localhost:7001]\n";
    assert_eq!(parse_str(text).unwrap().nats.cluster_size(), Some(3));
    let text = "nats:\n  server_name: n1\n  cluster:\n    name: c\n    advertise: node1.example:6222\n    routes: [nats-route://node1.example:6222, nats-route://node2.example:6222]\n";
    assert_eq!(parse_str(text).unwrap().nats.cluster_size(), Some(2));
    // An explicit size wins (e.g. a node that knows one seed of a five-node cluster).
    let text = "nats:\n  server_name: n4\n  cluster: { name: c, size: 5, routes: [nats-route://seed:6222] }\nstreams:\n  MARKET_DATA: { replicas: 5 }\n";
    let config = parse_str(text).unwrap();
    assert_eq!(config.nats.cluster_size(), Some(5));
    assert_eq!(config.effective_streams()[0].replicas, 5);
    // External mode: the broker cannot know.
    let config =
        parse_str("nats: { auto_start: false }\nstreams:\n  MARKET_DATA: { replicas: 3 }\n")
            .unwrap();
    assert_eq!(config.nats.cluster_size(), None);
    assert_eq!(config.effective_streams()[0].replicas, 3);
}

#[test]
fn replicas_are_checked_against_the_cluster() {
    let err = parse_str("streams:\n  MARKET_DATA: { replicas: 3 }\n").unwrap_err();
    assert_eq!(problem_paths(&err), ["streams.MARKET_DATA.replicas"]);
    assert!(err.to_string().contains("not clustered"), "{err}");
    let text = format!("{CLUSTER_NODE}streams:\n  MARKET_DATA: {{ replicas: 4 }}\n  X: {{ subjects: [x.>], replicas: 0 }}\n");
    let err = parse_str(&text).unwrap_err();
    assert_eq!(
        problem_paths(&err),
        ["streams.MARKET_DATA.replicas", "streams.X.replicas"]
    );
    assert!(err.to_string().contains("cluster has 3 nodes"), "{err}");
}

#[test]
fn every_cluster_problem_is_reported_at_once() {
    let err = parse_str(
        "nats:\n  users: [{ user: app, password: pw }]\n  cluster:\n    name: \"my cluster\"\n    advertise: nohost\n    size: 0\n    routes: [\"nats://node2:6222\", \"nats-route://node3\", \"nats-route://node4:6222/x\", \"nats-route://node5:6222\", \"nats-route://node5:6222\", \"nats-route://node6:0\"]\n",
    )
    .unwrap_err();
    assert_eq!(
        problem_paths(&err),
        [
            "nats.cluster.name",
            "nats.server_name",
            "nats.cluster.routes[0]",
            "nats.cluster.routes[1]",
            "nats.cluster.routes[2]",
            "nats.cluster.routes[4]",
            "nats.cluster.routes[5]",
            "nats.cluster.advertise",
            "nats.cluster.authorization",
            "nats.cluster.size",
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("must start with nats-route://"), "{text}");
    assert!(text.contains("unique in the cluster"), "{text}");
    assert!(text.contains("listed twice"), "{text}");
    // No routes at all, and credentials that are empty.
    let err = parse_str(
        "nats:\n  server_name: n1\n  cluster: { name: c, authorization: { user: \"\", password: \"\" } }\n",
    )
    .unwrap_err();
    assert_eq!(
        problem_paths(&err),
        [
            "nats.cluster.routes",
            "nats.cluster.authorization.user",
            "nats.cluster.authorization.password"
        ]
    );
    assert!(err.to_string().contains("at least one route"), "{err}");
    // Cluster fields without a cluster name.
    let err = parse_str(
        "nats:\n  server_name: \"a b\"\n  cluster: { routes: [nats-route://b:1], advertise: \"a:1\", size: 3 }\n",
    )
    .unwrap_err();
    assert_eq!(
        problem_paths(&err),
        [
            "nats.server_name",
            "nats.cluster.routes",
            "nats.cluster.advertise",
            "nats.cluster.size"
        ]
    );
}

#[test]
fn a_complete_secured_cluster_node_is_valid() {
    let config = parse_str(
        "nats:\n  server_name: node2\n  users: [{ user: app, password: pw }]\n  cluster:\n    name: prism\n    port: 0\n    advertise: \"[fd00::2]:6222\"\n    authorization: { user: route, password: s3cret }\n    routes: [\"nats-route://node1:6222\", \"nats-route://route:s3cret@[fd00::3]:6222\"]\n",
    )
    .unwrap();
    assert_eq!(config.nats.cluster_size(), Some(3));
    assert_eq!(
        RouteUrl::parse("nats-route://route:s3cret@[fd00::3]:6222").unwrap(),
        RouteUrl {
            userinfo: Some("route:s3cret".into()),
            host: "fd00::3".into(),
            port: 6222
        }
    );
}

#[test]
fn the_cluster_node_configs_are_valid_and_distinct() {
    let mut ports = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    for n in 1..=3 {
        let path = format!("{}/config/cluster/node{n}.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let config = parse(&text, &path, &EnvSource::default()).unwrap();
        assert!(config.nats.clustered(), "{path}");
        assert_eq!(config.nats.cluster_size(), Some(3), "{path}");
        assert!(names.insert(config.nats.server_name.clone().unwrap()));
        for port in [
            config.service.port,
            config.nats.port,
            config.nats.http_port,
            config.nats.cluster.port,
        ] {
            assert!(port != 0 && ports.insert(port), "{path}: port {port}");
        }
        let market = &config.effective_streams()[0];
        assert_eq!((market.name.as_str(), market.replicas), ("MARKET_DATA", 3));
        // Each node routes to the two others.
        assert_eq!(config.nats.cluster.routes.len(), 2, "{path}");
    }
}
