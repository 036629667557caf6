//! Bearer-token check: when `service.api_token` is set, every mutating request (POST, PUT,
//! PATCH, DELETE) needs `Authorization: Bearer <token>`, and so does a route tap (it shows
//! live payloads); other reads stay open.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error, ResponseError};

use super::envelope::{ApiError, ErrorCode};
use super::state::AppState;

/// Compares without stopping at the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `/api/v1/routes/{name}/tap`.
fn is_tap(path: &str) -> bool {
    path.starts_with("/api/v1/routes/") && path.ends_with("/tap")
}

pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || is_tap(req.path());
    let token = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.config.service.api_token.clone());
    if let (true, Some(token)) = (mutating, token) {
        let given = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let allowed = given.is_some_and(|g| same(g.as_bytes(), token.as_bytes()));
        if !allowed {
            let message = if given.is_none() {
                "this endpoint needs Authorization: Bearer <token>"
            } else {
                "the bearer token is not valid"
            };
            let response = ApiError::new(ErrorCode::Unauthorized, message).error_response();
            return Ok(req.into_response(response));
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}
