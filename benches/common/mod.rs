//! Shared by the bench binaries: start the release `prism-broker` binary with its own
//! nats-server on loopback and a temp data dir, and a few measuring helpers. Every port is
//! 0 (picked while binding, never raced for) and read back from the broker's ports file.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
        rss_mib(self.child.id())
    }

    /// The `/proc` paths of the broker and of the nats-server it started, for [`cpu_ticks`].
    pub fn procs(&self) -> [String; 2] {
        let pid = self.child.id();
        let nats = children(pid)
            .first()
            .map(|c| format!("/proc/{c}"))
            .unwrap_or_default();
        [format!("/proc/{pid}"), nats]
    }
}

/// Resident memory (current, peak) of process `pid` in MiB.
pub fn rss_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
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

/// CPU time (user + system) of process or thread `path` (`/proc/<pid>` or
/// `/proc/<pid>/task/<tid>`), in clock ticks (1/100 s).
pub fn cpu_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("{path}/stat")).unwrap_or_default();
    // after the command name in parentheses: state is field 3, utime 14, stime 15
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

/// The CPU ticks each of `paths` spends between `warmup` and `warmup + secs` from now:
/// spawn it beside a [`drive`] call with the same durations.
pub fn cpu_during(
    paths: Vec<String>,
    warmup: Duration,
    secs: Duration,
) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        tokio::time::sleep(warmup).await;
        let before: Vec<u64> = paths.iter().map(|p| cpu_ticks(p)).collect();
        tokio::time::sleep(secs).await;
        paths
            .iter()
            .zip(before)
            .map(|(p, b)| cpu_ticks(p).saturating_sub(b))
            .collect()
    })
}

/// The direct children of process `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        found.extend(
            text.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    found
}

/// The thread of this process named `name`, as a `/proc` path for [`cpu_ticks`].
pub fn own_thread(name: &str) -> Option<String> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    // the newest (highest thread id) of that name: an earlier one may still be ending
    tasks
        .flatten()
        .filter(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            comm.trim() == name
        })
        .filter_map(|task| {
            let tid: u64 = task.file_name().to_str()?.parse().ok()?;
            Some((tid, task.path().to_string_lossy().into_owned()))
        })
        .max()
        .map(|(_, path)| path)
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

/// What [`drive`] measured.
pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies_us: Vec<u64>,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    pub fn pct(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        percentile_ms(&self.latencies_us, p)
    }
}

/// Runs `concurrency` loops of `op` for `warmup + secs`; measures only after the warm-up.
pub async fn drive<F, Fut>(concurrency: usize, warmup: Duration, secs: Duration, op: F) -> Outcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (op, measuring, stop) = (op.clone(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::with_capacity(1 << 16));
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let success = op(worker).await;
                if measuring.load(Ordering::Relaxed) {
                    if success {
                        ok += 1;
                        lat.push(started.elapsed().as_micros().min(u64::MAX as u128) as u64);
                    } else {
                        errors += 1;
                    }
                }
            }
            (ok, errors, lat)
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(secs).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut outcome = Outcome {
        requests: 0,
        errors: 0,
        elapsed,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let (ok, errors, lat) = task.await.unwrap();
        outcome.requests += ok;
        outcome.errors += errors;
        outcome.latencies_us.extend(lat);
    }
    outcome
}

/// A keep-alive HTTP/1.1 connection that sends one prepared POST and reads the answer.
pub struct Conn {
    reader: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: &str, path: &str, body: &str) -> Conn {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, writer) = stream.into_split();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        Conn {
            reader: tokio::io::BufReader::new(read),
            writer,
            request,
            line: String::new(),
            body: Vec::new(),
        }
    }

    /// Sends the request; returns the status once the whole response is read.
    pub async fn post(&mut self) -> Option<u16> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        self.writer.write_all(&self.request).await.ok()?;
        self.line.clear();
        self.reader.read_line(&mut self.line).await.ok()?;
        let status = self.line.split_whitespace().nth(1)?.parse().ok()?;
        let mut length = 0usize;
        loop {
            self.line.clear();
            self.reader.read_line(&mut self.line).await.ok()?;
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok()?;
                }
            }
        }
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body).await.ok()?;
        Some(status)
    }
}

/// `concurrency` raw async-nats JetStream publishers of [`TRADE`] (publish, then wait for
/// the ack), each on its own `trade.bench.raw.W<n>` subject: the baseline of the publish
/// benches.
pub async fn raw_publishers(
    js: &async_nats::jetstream::Context,
    concurrency: usize,
    warmup: Duration,
    secs: Duration,
) -> Outcome {
    let js = js.clone();
    drive(concurrency, warmup, secs, move |worker| {
        let js = js.clone();
        async move {
            match js
                .publish(format!("trade.bench.raw.W{worker}"), TRADE.into())
                .await
            {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await
}

/// `concurrency` REST publishers of [`TRADE`], one keep-alive connection each (a [`Conn`]),
/// spread over the API addresses `addrs` (`host:port`) round robin.
pub async fn rest_publishers(
    addrs: &[String],
    concurrency: usize,
    warmup: Duration,
    secs: Duration,
) -> Outcome {
    rest_batch_publishers(addrs, concurrency, 0, warmup, secs).await
}

/// As [`rest_publishers`], with `per_request` trades in each `POST
/// /api/v1/broker/publish/batch` (a 200 means every one was acked); 0 sends single
/// `POST /api/v1/broker/publish` requests.
pub async fn rest_batch_publishers(
    addrs: &[String],
    concurrency: usize,
    per_request: usize,
    warmup: Duration,
    secs: Duration,
) -> Outcome {
    let trade: Value = serde_json::from_str(TRADE).unwrap();
    let mut conns = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let subject = format!("trade.bench.api.W{w}");
        let (path, body) = match per_request {
            0 => (
                "/api/v1/broker/publish",
                json!({ "subject": subject, "message": trade }),
            ),
            n => (
                "/api/v1/broker/publish/batch",
                json!({ "messages": vec![json!({ "subject": subject, "message": trade }); n] }),
            ),
        };
        conns.push(tokio::sync::Mutex::new(
            Conn::open(&addrs[w % addrs.len()], path, &body.to_string()).await,
        ));
    }
    let conns = Arc::new(conns);
    drive(concurrency, warmup, secs, move |worker| {
        let conns = conns.clone();
        async move { conns[worker].lock().await.post().await == Some(200) }
    })
    .await
}
