//! Graceful shutdown of the HTTP side: once draining starts, requests already being handled
//! finish, every new request is answered 503 `SERVICE_UNAVAILABLE` (with `Retry-After`, and
//! `Connection: close` so a client does not reuse the connection), `/ready` fails, and the
//! service waits until nothing is in flight before it stops the server. So no request that
//! reached the service is left without an answer, and none started after the signal is
//! half-done.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, ResponseError};
use futures::StreamExt;

use super::envelope::{ApiError, ErrorCode};
use super::state::AppState;

/// How long draining lasts at least, so requests already on their way get their 503.
const LINGER: Duration = Duration::from_millis(300);

#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts draining and waits until no request is in flight (at least [`LINGER`], at
    /// most `timeout`). Returns the requests still in flight when it gave up.
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.draining.store(true, Ordering::Release);
        let started = Instant::now();
        loop {
            let in_flight = self.in_flight.load(Ordering::Acquire);
            let elapsed = started.elapsed();
            if (in_flight == 0 && elapsed >= LINGER) || elapsed >= timeout {
                return in_flight;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Decrements the in-flight count however the request ends (also when it is cancelled).
struct InFlight<'a>(&'a Drain);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pub async fn refuse_when_draining(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let drain = &state.drain;
    drain.in_flight.fetch_add(1, Ordering::AcqRel);
    let _in_flight = InFlight(drain);
    if drain.is_draining() {
        // Read the body first: closing a connection with unread input resets it, and the
        // client might lose the answer.
        let mut payload = req.take_payload();
        while let Some(Ok(_)) = payload.next().await {}
        let mut response = ApiError::new(
            ErrorCode::ServiceUnavailable,
            "the service is shutting down; retry on another instance or after restart",
        )
        .error_response();
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        return Ok(req.into_response(response));
    }
    let mut response = next
        .call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)?;
    if drain.is_draining() {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}
