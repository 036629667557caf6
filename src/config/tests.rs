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
            "DEAD_LETTERS"
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
        "service: { port: 0, ports_file: run/ports.json }\nnats:\n  port: 0\n  http_port: 0\n  cluster: { name: c, port: 0 }\n",
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
        "service: { ports_file: \"\" }\nnats:\n  port: 0\n  http_port: 7000\n  cluster: { name: c, port: 7000 }\n",
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
    assert_eq!(config.effective_streams().len(), 4);
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
