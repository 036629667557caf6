//! Shared by the bench binaries: start the release `prism-broker` binary with its own
//! nats-server on loopback and a temp data dir, and a few measuring helpers. Every port is
//! 0 (picked while binding, never raced for) and read back from the broker's ports file.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_prism-broker");

/// The sample trade of `tests/data/marketprism-samples.jsonl`.
pub const TRADE: &str = r#"{"symbol":"BTC-USDT","price":"67234.56000000","quantity":"0.01250000","side":"sell","trade_id":"5123456789","exchange":"binance","market_type":"spot","data_source":"marketprism","normalized_symbol":"BTC-USDT","data_type":"trade","ts_ms":1795290133376,"trade_ts_ms":1795290133198,"publisher":"unified-collector","collected_ts_ms":1795290133375}"#;

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `cargo test --benches` and nextest list bench binaries: nothing to run as a test then.
pub fn listing_only() -> bool {
    std::env::args().any(|a| a == "--list" || a == "--test")
}

/// A running service; stopped with SIGTERM on drop.
pub struct Service {
    pub child: Child,
    pub api: String,
    pub nats: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

impl Service {
    /// Resident memory (current, peak) in MiB.
    pub fn rss_mib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
                .unwrap_or(0)
                / 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// Starts the service. `rules` are `(file name, text)` pairs for `routes.d/` and
/// `transforms/` (a name under `transforms/` starts with `transforms/`); `extra` is merged
/// into the config's top level.
pub async fn start_service(rules: &[(String, String)], extra: Value) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let ports_file = dir.path().join("ports.json");
    std::fs::create_dir_all(dir.path().join("routes.d")).unwrap();
    std::fs::create_dir_all(dir.path().join("transforms")).unwrap();
    for (name, text) in rules {
        let path = match name.strip_prefix("transforms/") {
            Some(file) => dir.path().join("transforms").join(file),
            None => dir.path().join("routes.d").join(name),
        };
        std::fs::write(path, text).unwrap();
    }
    let mut config = json!({
        "service": { "port": 0, "ports_file": ports_file, "log_level": "warn" },
        "nats": { "port": 0, "http_port": 0, "data_dir": dir.path().join("nats"),
                  "jetstream": { "max_memory": "512MB", "max_storage": "8GB" } },
        "streams": { "MARKET_DATA": { "max_msgs": 10000000 } },
        "router": { "routes_dir": dir.path().join("routes.d"),
                    "transforms_dir": dir.path().join("transforms"), "watch": false },
    });
    if let (Some(base), Value::Object(extra)) = (config.as_object_mut(), extra) {
        for (k, v) in extra {
            match (base.get_mut(&k), v) {
                (Some(Value::Object(b)), Value::Object(e)) => b.extend(e),
                (_, v) => {
                    base.insert(k, v);
                }
            }
        }
    }
    let path = dir.path().join("broker.yaml");
    std::fs::write(&path, config.to_string()).unwrap();
    // `BENCH_BIN` runs another build of the service (e.g. the previous commit's) under the
    // same harness, for before/after figures.
    let binary = std::env::var("BENCH_BIN").unwrap_or_else(|_| BIN.to_string());
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = u64::from(child.id());
    let ports = loop {
        let found = std::fs::read_to_string(&ports_file)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .filter(|v| v["pid"] == pid);
        if let Some(ports) = found {
            break ports;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("prism-broker exited ({status}) before listening");
        }
        assert!(
            Instant::now() < deadline,
            "prism-broker wrote no ports file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let service = Service {
        child,
        api: ports["api"]["url"].as_str().unwrap().to_string(),
        nats: ports["nats"]["urls"][0].as_str().unwrap().to_string(),
        dir,
    };
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{}/ready", service.api)).send().await {
            if r.status().is_success() {
                return service;
            }
        }
        assert!(Instant::now() < deadline, "service not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The repository's rule files, as `start_service` takes them.
pub fn shipped_rules() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut rules = Vec::new();
    for (dir, prefix) in [("routes.d", ""), ("transforms", "transforms/")] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let name = format!("{prefix}{}", path.file_name().unwrap().to_string_lossy());
                rules.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    rules
}

/// Percentile `p` (0..1) of latencies in microseconds, in milliseconds.
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[i] as f64 / 1000.0
}
