//! actix-web: [`configure`] registers every route so the binary and the tests use the same
//! wiring; handlers answer in the seed's envelope ([`envelope`]) and fail with [`ApiError`].

pub mod envelope;
mod health;
mod nats_info;
pub mod state;

use actix_web::web;

pub use envelope::{ApiError, ErrorCode};
pub use state::AppState;

/// Registers every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(crate::stats::render_metrics))
        .service(web::scope("/api/v1").route("/nats/info", web::get().to(nats_info::nats_info)));
}
