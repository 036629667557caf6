//! `GET /api/v1/nats/info`: pid, ports, restarts, the supervisor's record (crashes,
//! JetStream probe) and connection of the NATS server read live, and its `varz` figures (the connected server's INFO in external mode) from the
//! status snapshot, dated by `data.snapshot`.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;

use super::envelope::success;
use super::state::AppState;
use super::status::{ports, server_status, supervision, Supervision};
use crate::stats::snapshot::SnapshotMeta;

#[derive(Serialize)]
struct NatsInfo<'a, P> {
    status: &'static str,
    supervised: bool,
    pid: Option<u32>,
    ports: P,
    restarts: u64,
    /// Supervised mode only: crashes and the JetStream probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    supervision: Option<Supervision>,
    client_connected: bool,
    client_reconnects: u64,
    last_error: Option<String>,
    server_info: &'a RawValue,
    snapshot: &'a SnapshotMeta,
}

pub async fn nats_info(state: web::Data<AppState>) -> HttpResponse {
    let view = state.snapshot_view().await;
    let nats = &state.nats;
    success(
        "NATS server info retrieved successfully",
        NatsInfo {
            status: server_status(&state),
            supervised: nats.supervised,
            pid: nats.pid(),
            ports: ports(&state),
            restarts: nats.restarts(),
            supervision: supervision(&state),
            client_connected: state.nats_connected(),
            client_reconnects: nats.client_reconnects(),
            last_error: nats.last_error(),
            server_info: &view.latest().rendered.server_info,
            snapshot: &view.meta,
        },
    )
}
