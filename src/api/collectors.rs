//! `GET /api/v1/collectors`: the data collectors heard from on the heartbeat subject, as
//! `/api/v1/status` shows them (`count`, `instances`), with the settings they are judged by,
//! the stale ones, whether the subscription stands, and the heartbeat counters
//! (`prism_collector_heartbeats_total`). Read from the collectors' published view; no
//! NATS request, no lock.

use std::time::Instant;

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::envelope::success;
use super::state::AppState;
use crate::collectors::Instances;

#[derive(Serialize)]
struct Heartbeats {
    accepted: u64,
    malformed: u64,
    rejected: u64,
}

#[derive(Serialize)]
struct Collectors<'a> {
    count: usize,
    instances: Instances<'a>,
    /// Collectors not stale.
    active: usize,
    /// Names of the stale collectors.
    stale: Vec<&'a str>,
    subject: &'a str,
    subscribed: bool,
    stale_after_sec: f64,
    ttl_sec: f64,
    max_instances: usize,
    heartbeats: Heartbeats,
}

pub async fn collectors(state: web::Data<AppState>) -> HttpResponse {
    let collectors = &state.collectors;
    let report = collectors.report(Instant::now());
    let count = report.count();
    let stale = report.stale();
    let counter = |outcome| state.metrics.collectors.heartbeats(outcome);
    let data = Collectors {
        count,
        active: count - stale.len(),
        instances: report.instances(),
        stale,
        subject: &collectors.subject,
        subscribed: collectors.subscribed(state.nats.connection_generation()),
        stale_after_sec: collectors.settings.stale_after.as_secs_f64(),
        ttl_sec: collectors.settings.ttl.as_secs_f64(),
        max_instances: collectors.settings.max_instances,
        heartbeats: Heartbeats {
            accepted: counter("accepted"),
            malformed: counter("malformed"),
            rejected: counter("rejected"),
        },
    };
    success("Collectors retrieved successfully", data)
}
