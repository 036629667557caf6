//! actix-web: [`configure`] registers every route of the service from one table
//! ([`endpoints`]), so the binary, the tests and the OpenAPI check use the same wiring.
//! Handlers answer in the seed's envelope ([`envelope`]) and fail with [`ApiError`];
//! unknown paths are 404 `NOT_FOUND` and wrong methods 405 `METHOD_NOT_ALLOWED`, both in
//! the envelope.

mod auth;
mod body;
mod collectors;
pub(crate) mod drain;
pub(crate) mod envelope;
mod health;
mod nats_info;
mod openapi;
pub(crate) mod publish;
mod routes;
pub(crate) mod state;
mod status;
mod streams;
pub mod tap;

use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError, Route};

pub(crate) use envelope::{ApiError, ErrorCode};
pub(crate) use state::AppState;

/// Every endpoint: method, path pattern, handler.
fn endpoints() -> Vec<(Method, &'static str, Route)> {
    vec![
        (Method::GET, "/health", web::get().to(health::health)),
        (Method::GET, "/ready", web::get().to(health::ready)),
        (
            Method::GET,
            "/metrics",
            web::get().to(crate::stats::render_metrics),
        ),
        (
            Method::GET,
            "/api/v1/openapi.json",
            web::get().to(openapi::document),
        ),
        (Method::GET, "/api/v1/status", web::get().to(status::status)),
        (
            Method::GET,
            "/api/v1/collectors",
            web::get().to(collectors::collectors),
        ),
        (
            Method::GET,
            "/api/v1/nats/info",
            web::get().to(nats_info::nats_info),
        ),
        (
            Method::GET,
            "/api/v1/broker/status",
            web::get().to(status::broker_status),
        ),
        (
            Method::GET,
            "/api/v1/broker/health",
            web::get().to(status::broker_health),
        ),
        (Method::GET, "/api/v1/streams", web::get().to(streams::list)),
        (
            Method::GET,
            "/api/v1/broker/streams",
            web::get().to(streams::list),
        ),
        (
            Method::POST,
            "/api/v1/broker/streams",
            web::post().to(streams::create),
        ),
        (
            Method::GET,
            "/api/v1/broker/streams/{name}",
            web::get().to(streams::get),
        ),
        (
            Method::PUT,
            "/api/v1/broker/streams/{name}",
            web::put().to(streams::update),
        ),
        (
            Method::DELETE,
            "/api/v1/broker/streams/{name}",
            web::delete().to(streams::delete),
        ),
        (
            Method::POST,
            "/api/v1/publish",
            web::post().to(publish::publish),
        ),
        (
            Method::POST,
            "/api/v1/broker/publish",
            web::post().to(publish::publish),
        ),
        (
            Method::POST,
            "/api/v1/broker/publish/batch",
            web::post().to(publish::publish_batch),
        ),
        (Method::GET, "/api/v1/routes", web::get().to(routes::list)),
        (
            Method::GET,
            "/api/v1/routes/{name}",
            web::get().to(routes::get),
        ),
        (
            Method::POST,
            "/api/v1/routes/reload",
            web::post().to(routes::reload),
        ),
        (
            Method::POST,
            "/api/v1/routes/test",
            web::post().to(routes::test),
        ),
        (
            Method::GET,
            "/api/v1/routes/{name}/tap",
            web::get().to(tap::tap),
        ),
    ]
}

/// `(method, path pattern)` of every registered endpoint.
pub fn registered() -> Vec<(Method, &'static str)> {
    endpoints().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// Registers every route of the service, the token check and the 404/405 answers.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut resources: Vec<(&'static str, Vec<Route>)> = Vec::new();
    for (_, path, route) in endpoints() {
        match resources.iter_mut().find(|(p, _)| *p == path) {
            Some((_, routes)) => routes.push(route),
            None => resources.push((path, vec![route])),
        }
    }
    // Literal paths before patterns, so `/api/v1/routes/test` is not taken for
    // `/api/v1/routes/{name}`.
    resources.sort_by_key(|(path, _)| path.contains('{'));
    let mut scope = web::scope("")
        .wrap(from_fn(auth::require_token))
        .wrap(from_fn(drain::refuse_when_draining))
        .default_service(web::to(not_found));
    for (path, routes) in resources {
        let resource = routes
            .into_iter()
            .fold(web::resource(path), |resource, route| resource.route(route))
            .default_service(web::to(method_not_allowed));
        scope = scope.service(resource);
    }
    cfg.service(scope);
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no endpoint at {}", req.path()),
    )
    .error_response()
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let pattern = req
        .match_pattern()
        .unwrap_or_else(|| req.path().to_string());
    let allowed: Vec<String> = registered()
        .into_iter()
        .filter(|(_, p)| *p == pattern)
        .map(|(m, _)| m.to_string())
        .collect();
    let mut response = ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} is not allowed on {}; allowed: {}",
            req.method(),
            req.path(),
            allowed.join(", ")
        ),
    )
    .error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed.join(", ")) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}
