//! Benchmark of `POST /api/v1/broker/publish` with JetStream acks against a raw async-nats
//! JetStream publish loop, same concurrency, same nats-server, same run.
//!
//! `cargo bench --bench publish` (env: `BENCH_SECS`, default 30; `BENCH_CONCURRENCY`,
//! default 32; `BENCH_BATCH` trades per batch request, default 100, over
//! `BENCH_BATCH_CONCURRENCY` connections, default 8; latencies of the batch row are per
//! request; `BENCH_WORKERS`, the service's HTTP workers, default 0 = one per core). Also
//! prints the CPU that the broker, its nats-server and the bench process spent per acked
//! message in each measured phase, from `/proc`. Starts the release `prism-broker` binary
//! with its own nats-server on free loopback ports and a temp data dir; everything stops
//! when the run ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{
    cpu_during, env_or, listing_only, raw_publishers, rest_batch_publishers, rest_publishers,
    start_service,
};
use serde_json::json;

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
            json!({ "streams": { "MARKET_DATA": { "max_msgs": 5000000 } },
                    "service": { "workers": env_or("BENCH_WORKERS", 0) } }),
        )
        .await;
        println!(
            "publish benchmark: {concurrency} concurrent, {secs:?} each (after {warmup:?} warm-up)"
        );

        // CPU of the broker, its nats-server and this process (the load generator) in
        // each measured phase.
        let [broker, nats] = service.procs();
        let paths = vec![broker, nats, "/proc/self".to_string()];

        // Baseline: raw async-nats JetStream publish + ack, same server, same concurrency.
        let client = async_nats::connect(&service.nats).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let cpu = cpu_during(paths.clone(), warmup, secs);
        let mut raw = raw_publishers(&js, concurrency, warmup, secs).await;
        let raw_cpu = cpu.await.unwrap();

        // The REST API: one keep-alive HTTP/1.1 connection per worker, driven by a minimal
        // client (see `Conn`) so the load generator takes as little CPU as it can.
        let addr = service.api.trim_start_matches("http://").to_string();
        let cpu = cpu_during(paths.clone(), warmup, secs);
        let mut api = rest_publishers(std::slice::from_ref(&addr), concurrency, warmup, secs).await;
        let api_cpu = cpu.await.unwrap();

        // Batches of `BENCH_BATCH` (default 100) trades per request, fewer connections.
        let per_request = env_or("BENCH_BATCH", 100) as usize;
        let batch_concurrency = env_or("BENCH_BATCH_CONCURRENCY", 8) as usize;
        let cpu = cpu_during(paths.clone(), warmup, secs);
        let mut batch =
            rest_batch_publishers(&[addr], batch_concurrency, per_request, warmup, secs).await;
        let batch_cpu = cpu.await.unwrap();
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
        let (p50, p99) = (batch.pct(0.50), batch.pct(0.99));
        println!(
            "| REST POST /api/v1/broker/publish/batch, {per_request} per request, {batch_concurrency} connections | {:.0} | {p50:.2} | {p99:.2} | {} |",
            batch.rate() * per_request as f64,
            batch.errors
        );
        println!();
        println!(
            "REST / raw throughput ratio: {:.2}; batch / raw messages/s: {:.2}",
            api.rate() / raw.rate(),
            batch.rate() * per_request as f64 / raw.rate()
        );
        println!();
        println!("CPU per acked message, µs (the bench process is the load generator):");
        println!();
        println!("| path | broker | nats-server | bench process | cores busy |");
        println!("|---|---:|---:|---:|---:|");
        let messages = [
            raw.requests,
            api.requests,
            batch.requests * per_request as u64,
        ];
        for ((name, ticks), n) in [
            ("raw async-nats JetStream publish", &raw_cpu),
            ("REST POST /api/v1/broker/publish", &api_cpu),
            ("REST POST /api/v1/broker/publish/batch", &batch_cpu),
        ]
        .into_iter()
        .zip(messages)
        {
            let per = |t: u64| t as f64 * 10_000.0 / n.max(1) as f64;
            let busy = ticks.iter().sum::<u64>() as f64 / 100.0 / secs.as_secs_f64();
            println!(
                "| {name} | {:.2} | {:.2} | {:.2} | {busy:.2} |",
                per(ticks[0]),
                per(ticks[1]),
                per(ticks[2])
            );
        }
        println!("service resident memory after the run: {rss} MiB (peak {peak} MiB)");
    });
}
