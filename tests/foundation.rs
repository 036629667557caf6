//! The foundation: a supervised nats-server, readiness, restarts, start-up errors,
//! graceful shutdown, and external mode. Real processes on loopback, no mocks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use serde_json::json;

#[tokio::test]
async fn default_style_config_starts_its_own_nats_and_becomes_ready() {
    let service = ServiceBuilder::new().start().await;
    let (status, body) = service.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "success");
    let (status, body) = service.get("/ready").await;
    assert_eq!(status, 200, "{body}");
    let (_, info) = service.get("/api/v1/nats/info").await;
    let data = &info["data"];
    assert_eq!(data["supervised"], true);
    assert_eq!(data["status"], "running");
    let pid = data["pid"].as_u64().unwrap() as u32;
    assert!(pid_alive(pid));
    assert_eq!(data["ports"]["nats"], service.nats_port());
    // The generated config and the server log live under the data dir; port 0 is left to
    // nats-server to pick.
    let nats_dir = service.data_dir().join("nats");
    let conf = std::fs::read_to_string(nats_dir.join("nats-server.conf")).unwrap();
    assert!(conf.contains("\nport: -1\n"), "{conf}");
    assert!(conf.contains("jetstream {"));
    assert!(nats_dir.join("nats-server.log").exists());
    // JetStream really is on: a stream can be created through the broker's server.
    let client = async_nats::connect(service.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "PROBE".into(),
        subjects: vec!["probe.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn ready_is_503_with_the_error_envelope_until_nats_is_up() {
    // External mode against a port where nothing listens: the API answers, NATS does not.
    let nothing = unused_port();
    let builder = ServiceBuilder::new()
        .set("nats.auto_start", json!(false))
        .set(
            "nats.url",
            json!(format!("nats://127.0.0.1:{}", nothing.port)),
        );
    let service = builder.start_listening().await;
    let (status, body) = wait_for("/ready answers", Duration::from_secs(20), || async {
        let r = service.http.get(service.url("/ready")).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.json::<serde_json::Value>().await.ok()?))
    })
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "error");
    assert_eq!(body["error_code"], "NATS_CONNECTION_ERROR");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["data"]["ready"], false);
    // Liveness is independent of NATS.
    assert_eq!(service.get("/health").await.0, 200);
}

#[tokio::test]
async fn killed_child_is_restarted_and_ready_recovers() {
    let service = ServiceBuilder::new()
        .set(
            "nats.restart",
            json!({ "initial_backoff": "1s", "max_backoff": "2s" }),
        )
        .start()
        .await;
    let (_, before) = service.get("/api/v1/nats/info").await;
    assert_eq!(before["data"]["restarts"], 0);
    let old_pid = before["data"]["pid"].as_u64().unwrap() as u32;

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old_pid as i32), Signal::SIGKILL).unwrap();
    wait_for(
        "/ready 503 after kill -9",
        Duration::from_secs(5),
        || async { (service.ready_status().await == Some(503)).then_some(()) },
    )
    .await;
    service.wait_ready(Duration::from_secs(15)).await;

    let (_, after) = service.get("/api/v1/nats/info").await;
    let new_pid = after["data"]["pid"].as_u64().unwrap() as u32;
    assert_ne!(new_pid, old_pid);
    assert!(pid_alive(new_pid));
    assert!(after["data"]["restarts"].as_u64().unwrap() >= 1, "{after}");
    assert!(
        after["data"]["client_reconnects"].as_u64().unwrap() >= 1,
        "{after}"
    );
    assert!(service.log().contains("nats-server exited unexpectedly"));
}

#[tokio::test]
async fn missing_binary_exits_with_an_install_hint() {
    let builder = ServiceBuilder::new().set("nats.binary", json!("/nonexistent/nats-server"));
    let (status, log) = builder.run_to_exit(None);
    assert_eq!(status.code(), Some(1), "{log}");
    let line = log
        .lines()
        .find(|l| l.starts_with("prism-broker:"))
        .expect(&log);
    assert!(line.contains("not found"), "{line}");
    assert!(line.contains("apt-get install nats-server"), "{line}");
}

#[tokio::test]
async fn binary_missing_from_path_is_reported_too() {
    let builder = ServiceBuilder::new()
        .set("nats.binary", json!("nats-server"))
        .env("PATH", "/nonexistent");
    let (status, log) = builder.run_to_exit(None);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("\"nats-server\" not found"), "{log}");
}

#[tokio::test]
async fn nats_port_in_use_is_named() {
    let blocker = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let builder = ServiceBuilder::new().set("nats.port", json!(port));
    let (status, log) = builder.run_to_exit(None);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("port {port} (nats.port) is already in use")),
        "{log}"
    );
}

#[tokio::test]
async fn monitoring_port_in_use_is_named() {
    let blocker = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let builder = ServiceBuilder::new().set("nats.http_port", json!(port));
    let (status, log) = builder.run_to_exit(None);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("port {port} (nats.http_port) is already in use")),
        "{log}"
    );
}

#[tokio::test]
async fn api_port_in_use_is_named() {
    let blocker = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let builder = ServiceBuilder::new().set("service.port", json!(port));
    let (status, log) = builder.run_to_exit(None);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(&format!(":{port} (service.port)")), "{log}");
}

#[tokio::test]
async fn config_with_three_mistakes_lists_all_three_and_exits_2() {
    let builder = ServiceBuilder::new();
    let text = "service:\n  port: eighty\nnats:\n  jetstream: { max_memory: lots }\n  prot: 4222\n";
    let (status, log) = builder.run_to_exit(Some(text));
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("broker.yaml: service.port:"), "{log}");
    assert!(
        log.contains("broker.yaml: nats.jetstream.max_memory:"),
        "{log}"
    );
    assert!(log.contains("prot"), "{log}");
    let problem_lines = log.lines().filter(|l| l.contains("broker.yaml: ")).count();
    assert_eq!(problem_lines, 3, "{log}");
}

#[tokio::test]
async fn config_the_server_rejects_is_reported() {
    let builder = ServiceBuilder::new().set(
        "nats.tls",
        json!({ "cert_file": "/nonexistent/cert.pem", "key_file": "/nonexistent/key.pem" }),
    );
    let (status, log) = builder.run_to_exit(None);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("nats-server rejected the generated config"),
        "{log}"
    );
}

#[tokio::test]
async fn sigterm_stops_service_and_child_within_10s() {
    let mut service = ServiceBuilder::new().start().await;
    let nats_pid = service.nats_pid().await.unwrap();
    let started = Instant::now();
    service.signal(Signal::SIGTERM);
    let status = service
        .wait_exit(Duration::from_secs(10))
        .expect("exited within 10 s");
    assert!(status.success(), "{status:?}\n{}", service.log());
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_for("nats-server gone", Duration::from_secs(2), || async {
        (!pid_alive(nats_pid)).then_some(())
    })
    .await;
    // Ports are free again: the listener on the client port can be bound.
    TcpListener::bind(("127.0.0.1", service.nats_port())).unwrap();
    // Nothing listens any more where the ports file said.
    assert!(!service.builder.ports_file().exists());
}

#[tokio::test]
async fn sigint_stops_too() {
    let mut service = ServiceBuilder::new().start().await;
    let nats_pid = service.nats_pid().await.unwrap();
    service.signal(Signal::SIGINT);
    let status = service
        .wait_exit(Duration::from_secs(10))
        .expect("exited within 10 s");
    assert!(status.success());
    wait_for("nats-server gone", Duration::from_secs(2), || async {
        (!pid_alive(nats_pid)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn crash_of_the_broker_leaves_no_server_and_the_next_start_works() {
    let mut service = ServiceBuilder::new().start().await;
    let nats_pid = service.nats_pid().await.unwrap();
    service.signal(Signal::SIGKILL);
    service.wait_exit(Duration::from_secs(5)).expect("killed");
    wait_for(
        "orphan nats-server gone",
        Duration::from_secs(5),
        || async { (!pid_alive(nats_pid)).then_some(()) },
    )
    .await;
    // Same config and data dir (a stale pid file, the JetStream store; ports picked anew):
    // starts cleanly.
    let builder = std::mem::replace(&mut service.builder, ServiceBuilder::new());
    drop(service);
    let again = builder.start().await;
    assert_eq!(again.get("/ready").await.0, 200);
}

#[tokio::test]
async fn external_mode_uses_a_separate_server() {
    let nats = NatsServer::start().await;
    let service = ServiceBuilder::new()
        .set("nats.auto_start", json!(false))
        .set("nats.url", json!([nats.url()]))
        .start()
        .await;
    let (_, info) = service.get("/api/v1/nats/info").await;
    assert_eq!(info["data"]["supervised"], false);
    assert_eq!(info["data"]["status"], "external");
    assert!(info["data"]["pid"].is_null());
    assert_eq!(info["data"]["server_info"]["port"], nats.port);
    assert!(!service.data_dir().join("nats/nats-server.conf").exists());
}

#[tokio::test]
async fn nats_url_env_overrides_the_file() {
    let nats = NatsServer::start().await;
    let service = ServiceBuilder::new()
        .set("nats.auto_start", json!(false))
        .set("nats.url", json!("nats://127.0.0.1:1"))
        .env("NATS_URL", &nats.url())
        .start()
        .await;
    assert_eq!(service.get("/ready").await.0, 200);
}

#[tokio::test]
async fn users_get_a_broker_account_and_the_broker_still_connects() {
    let service = ServiceBuilder::new()
        .set(
            "nats.users",
            json!([{ "user": "producer", "password": "pw", "permissions": { "publish": ["market.>"] } }]),
        )
        .start()
        .await;
    // Anonymous clients are refused; the configured user gets in.
    assert!(async_nats::connect(service.nats_url()).await.is_err());
    let opts = async_nats::ConnectOptions::with_user_and_password("producer".into(), "pw".into());
    let client = opts.connect(service.nats_url()).await.unwrap();
    client.publish("market.x", "1".into()).await.unwrap();
    client.flush().await.unwrap();
}

#[tokio::test]
async fn picked_ports_are_reported_and_kept_across_child_restarts() {
    let service = ServiceBuilder::new().start().await;
    let ports = service.ports.clone();
    let (nats, http) = (service.nats_port(), service.nats_http_port());
    assert!(
        nats != 0 && http != 0 && service.api_port() != 0,
        "{ports:?}"
    );
    assert_eq!(ports.nats_urls, [format!("nats://127.0.0.1:{nats}")]);
    assert_eq!(ports.nats_cluster, None);
    let (_, info) = service.get("/api/v1/nats/info").await;
    assert_eq!(info["data"]["ports"]["nats"], nats, "{info}");
    assert_eq!(info["data"]["ports"]["http"], http, "{info}");
    assert_eq!(info["data"]["server_info"]["port"], nats, "{info}");
    let (_, status) = service.get("/api/v1/broker/status").await;
    assert_eq!(status["data"]["port"], service.api_port(), "{status}");
    assert_eq!(status["data"]["nats"]["ports"]["nats"], nats, "{status}");
    assert_eq!(status["data"]["nats"]["ports"]["http"], http, "{status}");
    assert_eq!(
        status["data"]["nats"]["urls"],
        json!([format!("nats://127.0.0.1:{nats}")])
    );
    let (_, status) = service.get("/api/v1/status").await;
    assert_eq!(status["data"]["port"], service.api_port(), "{status}");
    let log = service.log();
    let line = log
        .lines()
        .find(|l| l.contains("prism-broker listening"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains(&format!("api=127.0.0.1:{}", service.api_port()))
            && line.contains(&format!("nats_port={nats}"))
            && line.contains(&format!("nats_http_port={http}")),
        "{line}"
    );

    // A client of our own, connected before the crash, comes back to the same address.
    let client = service.nats_client().await;
    let mut sub = client.subscribe("probe.after-restart").await.unwrap();
    server_sync(&client).await;
    let old_pid = service.nats_pid().await.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old_pid as i32), Signal::SIGKILL).unwrap();
    wait_for("a new nats-server", Duration::from_secs(15), || async {
        let pid = service.nats_pid().await?;
        (pid != old_pid && service.ready_status().await == Some(200)).then_some(())
    })
    .await;
    let (_, info) = service.get("/api/v1/nats/info").await;
    assert_eq!(info["data"]["ports"]["nats"], nats, "{info}");
    assert_eq!(info["data"]["ports"]["http"], http, "{info}");
    assert!(info["data"]["restarts"].as_u64().unwrap() >= 1, "{info}");
    // The restarted child was configured with the pinned ports.
    let conf = std::fs::read_to_string(service.data_dir().join("nats/nats-server.conf")).unwrap();
    assert!(conf.contains(&format!("\nport: {nats}\n")), "{conf}");
    assert!(
        conf.contains(&format!("http: \"127.0.0.1:{http}\"")),
        "{conf}"
    );
    wait_for(
        "our client reconnected",
        Duration::from_secs(15),
        || async {
            client
                .publish("probe.after-restart", "1".into())
                .await
                .ok()?;
            tokio::time::timeout(Duration::from_millis(500), client.flush())
                .await
                .ok()?
                .ok()
        },
    )
    .await;
    let got = collect(&mut sub, 1, Duration::from_secs(10)).await;
    assert!(!got.is_empty(), "the resubscribed client got nothing");
}

#[tokio::test]
async fn a_ports_file_that_cannot_be_written_stops_the_service() {
    let builder = ServiceBuilder::new();
    // A path under a regular file cannot be created.
    let blocked = builder.config_path().join("ports.json");
    let builder = builder.set("service.ports_file", json!(blocked));
    let (status, log) = builder.run_to_exit(None);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("cannot write the ports file") && log.contains("(service.ports_file)"),
        "{log}"
    );
}

#[tokio::test]
async fn reserved_cluster_ports_are_distinct_free_and_below_the_ephemeral_range() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let low: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    let held: Vec<ReservedPort> = (0..5).map(|_| reserve_cluster_port()).collect();
    let mut ports: Vec<u16> = held.iter().map(|r| r.port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 5, "{held:?}");
    for port in &ports {
        assert!(*port < low, "{port} is not below {low}");
        // Reserved, not taken: a server can listen there.
        TcpListener::bind(("127.0.0.1", *port)).unwrap();
    }
    // Held: nobody (not even this process, through another open file) gets its lock.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(std::env::temp_dir().join(format!("prism-broker-test-ports/{}.lock", held[0].port)))
        .unwrap();
    assert!(lock.try_lock().is_err());
}
