//! Benchmark of `POST /api/v1/broker/publish` with JetStream acks against a raw async-nats
//! JetStream publish loop, same concurrency, same nats-server, same run.
//!
//! `cargo bench --bench publish` (env: `BENCH_SECS`, default 30; `BENCH_CONCURRENCY`,
//! default 32). Starts the release `prism-broker` binary with its own nats-server on free
//! loopback ports and a temp data dir; everything stops when the run ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env_or, listing_only, percentile_ms, start_service, TRADE};
use serde_json::json;

struct Outcome {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        percentile_ms(&self.latencies_us, p)
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
struct Conn {
    reader: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str, path: &str, body: &str) -> Conn {
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
    async fn post(&mut self) -> Option<u16> {
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

fn main() {
    if listing_only() {
        return;
    }
    let secs = Duration::from_secs(env_or("BENCH_SECS", 30));
    let concurrency = env_or("BENCH_CONCURRENCY", 32) as usize;
    let warmup = Duration::from_secs(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let service = start_service(
            &[],
            json!({ "streams": { "MARKET_DATA": { "max_msgs": 5000000 } } }),
        )
        .await;
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

        // The REST API: one keep-alive HTTP/1.1 connection per worker, driven by a minimal
        // client (see `Conn`) so the load generator takes as little CPU as it can.
        let addr = service.api.trim_start_matches("http://").to_string();
        let trade: serde_json::Value = serde_json::from_str(TRADE).unwrap();
        let mut conns = Vec::with_capacity(concurrency);
        for w in 0..concurrency {
            let body =
                json!({ "subject": format!("trade.bench.api.W{w}"), "message": trade }).to_string();
            conns.push(tokio::sync::Mutex::new(
                Conn::open(&addr, "/api/v1/broker/publish", &body).await,
            ));
        }
        let conns = Arc::new(conns);
        let mut api = drive(concurrency, warmup, secs, move |worker| {
            let conns = conns.clone();
            async move { conns[worker].lock().await.post().await == Some(200) }
        })
        .await;
        let (rss, peak) = service.rss_mib();

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
        println!("service resident memory after the run: {rss} MiB (peak {peak} MiB)");
    });
}
