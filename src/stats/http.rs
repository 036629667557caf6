//! The REST side of the metrics: [`RequestMetrics`], an actix-web middleware that counts
//! every request by endpoint (the matched route pattern, e.g.
//! `/api/v1/broker/streams/{name}`, or `unmatched` — never the raw path), bounded method and
//! status, and observes its latency; and [`render_metrics`], the `GET /metrics` handler.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{web, Error, HttpResponse};
use futures::future::{ready, LocalBoxFuture, Ready};
use tracing::error;

use super::metrics::{bounded_method, Metrics, CONTENT_TYPE, UNMATCHED_ENDPOINT};
use crate::api::AppState;

/// `GET /metrics`: the whole registry in the Prometheus text format.
pub async fn render_metrics(state: web::Data<AppState>) -> HttpResponse {
    match state.metrics.render() {
        Ok(text) => HttpResponse::Ok().content_type(CONTENT_TYPE).body(text),
        Err(e) => {
            error!(error = %e, "cannot render metrics");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body(format!("cannot render metrics: {e}\n"))
        }
    }
}

/// Wrap the whole `App` with it (`App::new().wrap(RequestMetrics::new(metrics))`) so
/// unmatched requests are counted too.
#[derive(Clone)]
pub struct RequestMetrics {
    metrics: Arc<Metrics>,
}

impl RequestMetrics {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        RequestMetrics { metrics }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestMetricsMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestMetricsMiddleware {
            service,
            metrics: self.metrics.clone(),
        }))
    }
}

pub struct RequestMetricsMiddleware<S> {
    service: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<ServiceRequest> for RequestMetricsMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let method = bounded_method(req.method().as_str());
        // The pattern comes from the app's resource map, so it is known before routing.
        let endpoint = req.match_pattern();
        let metrics = self.metrics.clone();
        let response = self.service.call(req);
        Box::pin(async move {
            let result = response.await;
            let status = match &result {
                Ok(res) => res.status().as_u16(),
                Err(e) => e.as_response_error().status_code().as_u16(),
            };
            metrics.http.observe(
                endpoint.as_deref().unwrap_or(UNMATCHED_ENDPOINT),
                method,
                status,
                started.elapsed(),
            );
            result
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use actix_web::{test, App, HttpResponse};

    use super::*;

    fn count(metrics: &Metrics, endpoint: &str, method: &str, status: &str) -> u64 {
        metrics
            .http
            .requests
            .with_label_values(&[endpoint, method, status])
            .get()
    }

    #[actix_web::test]
    async fn endpoints_are_route_patterns_and_unmatched_paths_share_one_label() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let app = test::init_service(
            App::new()
                .wrap(RequestMetrics::new(metrics.clone()))
                .route("/health", web::get().to(HttpResponse::Ok))
                .service(web::scope("/api/v1").route(
                    "/broker/streams/{name}",
                    web::get().to(|| async { HttpResponse::NotFound().finish() }),
                )),
        )
        .await;
        for path in ["/health", "/health", "/api/v1/broker/streams/A"] {
            test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        }
        for path in ["/api/v1/broker/streams/B", "/nope", "/api/v1/nope/x"] {
            test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        }
        let req = test::TestRequest::default()
            .method(actix_web::http::Method::from_bytes(b"BREW").unwrap())
            .uri("/nope")
            .to_request();
        test::call_service(&app, req).await;

        assert_eq!(count(&metrics, "/health", "GET", "200"), 2);
        assert_eq!(
            count(&metrics, "/api/v1/broker/streams/{name}", "GET", "404"),
            2
        );
        assert_eq!(count(&metrics, UNMATCHED_ENDPOINT, "GET", "404"), 2);
        assert_eq!(count(&metrics, UNMATCHED_ENDPOINT, "OTHER", "404"), 1);
        let text = metrics.render().unwrap();
        assert!(!text.contains("streams/A"), "{text}");
        assert!(!text.contains("/nope"), "{text}");
        let latency = metrics
            .http
            .duration
            .with_label_values(&["/health", "GET"])
            .get_sample_count();
        assert_eq!(latency, 2);
    }
}
