//! Benchmark of `POST /api/v1/broker/publish` with JetStream acks against a raw async-nats
//! JetStream publish loop, same concurrency, same nats-server, same run.
//!
//! `cargo bench --bench publish` (env: `BENCH_SECS`, default 30; `BENCH_CONCURRENCY`,
//! default 32). Starts the release `prism-broker` binary with its own nats-server on free
//! loopback ports and a temp data dir; everything stops when the run ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_prism-broker");
const TRADE: &str = r#"{"symbol":"BTC-USDT","price":"67234.56000000","quantity":"0.01250000","side":"sell","trade_id":"5123456789","exchange":"binance","market_type":"spot","data_source":"marketprism","normalized_symbol":"BTC-USDT","data_type":"trade","ts_ms":1795290133376,"trade_ts_ms":1795290133198,"publisher":"unified-collector","collected_ts_ms":1795290133375}"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Service {
    child: Child,
    api: String,
    nats: String,
    _dir: tempfile::TempDir,
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

async fn start_service() -> Service {
    let dir = tempfile::tempdir().unwrap();
    let (api, nats, http) = (free_port(), free_port(), free_port());
    let config = json!({
        "service": { "port": api, "log_level": "warn" },
        "nats": { "port": nats, "http_port": http, "data_dir": dir.path().join("nats"),
                  "jetstream": { "max_memory": "256MB", "max_storage": "4GB" } },
        "streams": { "MARKET_DATA": { "max_msgs": 5000000 } },
        "router": { "routes_dir": dir.path().join("r"), "transforms_dir": dir.path().join("t"), "watch": false },
    });
    let path = dir.path().join("broker.yaml");
    std::fs::write(&path, config.to_string()).unwrap();
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let service = Service {
        child,
        api: format!("http://127.0.0.1:{api}"),
        nats: format!("nats://127.0.0.1:{nats}"),
        _dir: dir,
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
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

struct Outcome {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

/// Runs `concurrency` loops of `op` for `warmup + secs`; measures only after the warm-up.
async fn drive<F, Fut>(concurrency: usize, warmup: Duration, secs: Duration, op: F) -> Outcome
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
                        lat.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
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

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / nextest discovery: nothing to run as a test
    }
    let secs = Duration::from_secs(env_or("BENCH_SECS", 30));
    let concurrency = env_or("BENCH_CONCURRENCY", 32) as usize;
    let warmup = Duration::from_secs(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let service = start_service().await;
        let pid = service.child.id();
        println!(
            "publish benchmark: {concurrency} concurrent, {secs:?} each (after {warmup:?} warm-up)"
        );

        // Baseline: raw async-nats JetStream publish + ack, same server, same concurrency.
        let client = async_nats::connect(&service.nats).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut raw = drive(concurrency, warmup, secs, move |worker| {
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
        .await;

        // The REST API: one keep-alive connection per worker.
        let url = format!("{}/api/v1/broker/publish", service.api);
        let clients: Arc<Vec<reqwest::Client>> = Arc::new(
            (0..concurrency)
                .map(|_| {
                    reqwest::Client::builder()
                        .pool_max_idle_per_host(1)
                        .build()
                        .unwrap()
                })
                .collect(),
        );
        let trade: serde_json::Value = serde_json::from_str(TRADE).unwrap();
        let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
            (0..concurrency)
                .map(|w| {
                    json!({ "subject": format!("trade.bench.api.W{w}"), "message": trade })
                        .to_string()
                        .into()
                })
                .collect(),
        );
        let mut api = drive(concurrency, warmup, secs, move |worker| {
            let (clients, bodies, url) = (clients.clone(), bodies.clone(), url.clone());
            async move {
                let r = clients[worker]
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies[worker].clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        })
        .await;
        let rss = rss_kib(pid);

        println!();
        println!("| path | acked publishes/s | p50 ms | p99 ms | errors |");
        println!("|---|---:|---:|---:|---:|");
        for (name, o) in [
            ("raw async-nats JetStream publish", &mut raw),
            ("REST POST /api/v1/broker/publish", &mut api),
        ] {
            let (p50, p99) = (o.pct(0.50), o.pct(0.99));
            println!(
                "| {name} | {:.0} | {p50:.2} | {p99:.2} | {} |",
                o.rate(),
                o.errors
            );
        }
        println!();
        println!(
            "REST / raw throughput ratio: {:.2}",
            api.rate() / raw.rate()
        );
        println!("service resident memory after the run: {} MiB", rss / 1024);
    });
}
