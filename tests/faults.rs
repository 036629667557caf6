//! Fault tests: the situations of the reliability campaign, reproduced on real nats-servers
//! and the real binary, each bounded in time, asserting the fixed behaviour.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::json;

/// SIGTERM under 32 concurrent publishers: every request that reached the service gets an
/// answer (200, or 503 while it drains); none meets a connection closed without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_request_it_accepted() {
    let mut service = ServiceBuilder::new().start().await;
    let url = service.url("/api/v1/broker/publish");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused, dropped) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut tasks = Vec::new();
    for worker in 0..32 {
        let (url, stop, ok, refused, dropped) = (
            url.clone(),
            stop.clone(),
            ok.clone(),
            refused.clone(),
            dropped.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) && i < 100_000 {
                i += 1;
                let body = json!({
                    "subject": format!("trade.t.spot.W{worker}"),
                    "message": { "i": i },
                    "msg_id": format!("{worker}-{i}"),
                });
                match http
                    .post(&url)
                    .json(&body)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    // Draining: a well-behaved client (or load balancer) stops here.
                    Ok(r) if r.status() == 503 => {
                        assert!(r.headers().contains_key("retry-after"));
                        let body: serde_json::Value = r.json().await.unwrap();
                        assert!(
                            body["message"].as_str().unwrap().contains("shutting down"),
                            "{body}"
                        );
                        refused.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    // The listener is closed: the request never reached the service.
                    Err(e) if e.is_connect() => break,
                    Err(e) => {
                        eprintln!("request without an answer: {e:?}");
                        dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }));
    }
    wait_for("traffic", Duration::from_secs(20), || async {
        (ok.load(Ordering::Relaxed) >= 500).then_some(())
    })
    .await;
    service.signal(Signal::SIGTERM);
    // Waiting blocks this thread: the clients keep running on the other one.
    let status = tokio::task::block_in_place(|| service.wait_exit(Duration::from_secs(15)))
        .expect("exits after SIGTERM");
    stop.store(true, Ordering::Release);
    for task in tasks {
        task.await.unwrap();
    }
    assert!(status.success(), "{status:?}");
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        0,
        "requests left without an answer (ok {}, refused {}); log:\n{}",
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        service.log()
    );
    assert!(service.log().contains("shutting down"));
}
