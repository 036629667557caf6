//! `GET /api/v1/openapi.json`: the checked-in OpenAPI 3 document of the whole API
//! (`docs/openapi.json`). A test keeps it and [`super::registered`] in step.

use actix_web::HttpResponse;

/// The document, compiled into the binary.
pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT)
}
