//! Benchmark of the status endpoints against `GET /health`, with `wrk` as the load
//! generator, in the same run on the same service.
//!
//! `cargo bench --bench status` (env: `BENCH_SECS`, default 10 per window; `BENCH_ROUNDS`,
//! default 3; `BENCH_CONNECTIONS`, default 32; `BENCH_THREADS`, default 2). Starts the
//! release `prism-broker` binary with its own nats-server on free loopback ports and a temp
//! data dir, then runs `wrk -t2 -c32 -d10s --latency` against `GET /health` and
//! `GET /api/v1/status` alternately (`ROUNDS` windows each, so both see the same share of
//! the shared machine's noise), then one window against each of the other snapshot-backed
//! endpoints. Prints a table (p99 of the median and of the worst window: on a shared
//! machine one window can catch another process's burst), each window, the status / health
//! throughput ratio and the service's resident memory. Needs `wrk` on PATH
//! (`apt-get install -y wrk`). `BENCH_BIN` runs another build of the service instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{env_or, listing_only, start_service};
use serde_json::json;

/// What one `wrk` window measured.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Non-2xx/3xx answers plus socket errors; must stay 0.
    failures: u64,
}

/// `"1.23ms"`, `"456.00us"`, `"1.02s"` → milliseconds.
fn parse_duration_ms(text: &str) -> f64 {
    let (number, factor) = if let Some(v) = text.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = text.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = text.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (text, f64::NAN)
    };
    number.parse::<f64>().unwrap_or(f64::NAN) * factor
}

fn parse_wrk(output: &str) -> Window {
    let mut w = Window::default();
    for line in output.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Requests/sec:", rate] => w.requests_per_sec = rate.parse().unwrap_or(f64::NAN),
            ["50%", latency] => w.p50_ms = parse_duration_ms(latency),
            ["99%", latency] => w.p99_ms = parse_duration_ms(latency),
            ["Non-2xx", "or", "3xx", "responses:", n] => w.failures += n.parse().unwrap_or(1),
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                w.failures += rest
                    .iter()
                    .filter_map(|f| f.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    w
}

fn wrk(url: &str, threads: u64, connections: u64, secs: u64) -> Window {
    let output = Command::new("wrk")
        .args([
            format!("-t{threads}"),
            format!("-c{connections}"),
            format!("-d{secs}s"),
            "--latency".to_string(),
            url.to_string(),
        ])
        .output()
        .expect("wrk must be installed (apt-get install -y wrk)");
    assert!(
        output.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let window = parse_wrk(&text);
    assert!(
        window.requests_per_sec > 0.0,
        "unreadable wrk output:\n{text}"
    );
    window
}

fn mean(windows: &[Window], f: impl Fn(&Window) -> f64) -> f64 {
    windows.iter().map(f).sum::<f64>() / windows.len().max(1) as f64
}

fn median(windows: &[Window], f: impl Fn(&Window) -> f64) -> f64 {
    let mut values: Vec<f64> = windows.iter().map(f).collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn max(windows: &[Window], f: impl Fn(&Window) -> f64) -> f64 {
    windows.iter().map(f).fold(f64::NAN, f64::max)
}

fn main() {
    if listing_only() {
        return;
    }
    let secs = env_or("BENCH_SECS", 10);
    let rounds = env_or("BENCH_ROUNDS", 3).max(1);
    let connections = env_or("BENCH_CONNECTIONS", 32);
    let threads = env_or("BENCH_THREADS", 2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let service = runtime.block_on(start_service(&[], json!({})));
    // Some traffic so the streams and varz carry figures.
    runtime.block_on(async {
        let http = reqwest::Client::new();
        for i in 0..20 {
            let body = json!({ "subject": format!("system.bench.{i}"), "message": { "i": i } });
            let r = http
                .post(format!("{}/api/v1/broker/publish", service.api))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    });
    println!(
        "status benchmark: wrk -t{threads} -c{connections} -d{secs}s --latency, \
         {rounds} alternating windows per endpoint"
    );

    let health_url = format!("{}/health", service.api);
    let status_url = format!("{}/api/v1/status", service.api);
    let (mut health, mut status) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        health.push(wrk(&health_url, threads, connections, secs));
        status.push(wrk(&status_url, threads, connections, secs));
    }
    let others: Vec<(&str, Window)> = [
        "/api/v1/broker/status",
        "/api/v1/broker/health",
        "/api/v1/nats/info",
        "/api/v1/broker/streams",
    ]
    .into_iter()
    .map(|path| {
        let url = format!("{}{path}", service.api);
        (path, wrk(&url, threads, connections, secs))
    })
    .collect();
    let (rss, peak) = service.rss_mib();

    let health_rate = mean(&health, |w| w.requests_per_sec);
    println!();
    println!(
        "| request | req/s (mean) | p50 ms | p99 ms (median window) | p99 ms (worst window) | failures | / health |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, windows) in [("GET /health", &health), ("GET /api/v1/status", &status)] {
        let rate = mean(windows, |w| w.requests_per_sec);
        println!(
            "| {name} | {rate:.0} | {:.2} | {:.2} | {:.2} | {} | {:.2} |",
            mean(windows, |w| w.p50_ms),
            median(windows, |w| w.p99_ms),
            max(windows, |w| w.p99_ms),
            windows.iter().map(|w| w.failures).sum::<u64>(),
            rate / health_rate,
        );
    }
    for (path, w) in &others {
        println!(
            "| GET {path} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.2} |",
            w.requests_per_sec,
            w.p50_ms,
            w.p99_ms,
            w.p99_ms,
            w.failures,
            w.requests_per_sec / health_rate,
        );
    }
    println!();
    let windows = |ws: &[Window]| {
        ws.iter()
            .map(|w| format!("{:.0} req/s p99 {:.2} ms", w.requests_per_sec, w.p99_ms))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("health windows: {}", windows(&health));
    println!("status windows: {}", windows(&status));
    println!(
        "status / health throughput ratio: {:.2}",
        mean(&status, |w| w.requests_per_sec) / health_rate
    );
    println!("service resident memory after the run: {rss} MiB (peak {peak} MiB)");
}
