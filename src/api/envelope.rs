//! The seed's response envelope and the API error type.
//!
//! Success: `{"status":"success","message":…,"data":…,"timestamp":…}`.
//! Error: `{"status":"error","error_code":…,"message":…,"data":null|details,"timestamp":…}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};

/// The seed's error codes plus ours; serialized as `SCREAMING_SNAKE_CASE`. The seed's
/// `INTERNAL_ERROR` is not among them: every failure we answer has its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    NatsConnectionError,
    StreamNotFound,
    StreamCreationError,
    MessagePublishError,
    InvalidStreamData,
    InvalidMessageData,
    JetstreamError,
    InvalidParameters,
    ServiceUnavailable,
    Unauthorized,
    PayloadTooLarge,
    RouteNotFound,
    InvalidRoutes,
    NotFound,
    MethodNotAllowed,
    /// The stream meant to store the message did not acknowledge it (no responders during a
    /// leader election or while it is being re-created, no ack in time, no quorum): retry.
    StreamUnavailable,
    /// The stream or JetStream has no room (a stream limit with `discard: new`, or the
    /// server's storage): retrying soon will not help until space is freed.
    StorageFull,
}

impl ErrorCode {
    /// The HTTP status a code maps to unless an endpoint says otherwise.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::NatsConnectionError
            | ErrorCode::ServiceUnavailable
            | ErrorCode::StreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::StreamNotFound | ErrorCode::RouteNotFound | ErrorCode::NotFound => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::StreamCreationError => StatusCode::CONFLICT,
            ErrorCode::InvalidStreamData
            | ErrorCode::InvalidMessageData
            | ErrorCode::InvalidParameters
            | ErrorCode::InvalidRoutes => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MessagePublishError | ErrorCode::JetstreamError => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// Now as RFC 3339 UTC with milliseconds, e.g. `2025-06-29T05:32:44.123Z`.
pub fn timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A 200 response in the success envelope.
pub fn success(message: impl Into<String>, data: impl Serialize) -> HttpResponse {
    success_with(StatusCode::OK, message, data)
}

pub fn success_with(
    status: StatusCode,
    message: impl Into<String>,
    data: impl Serialize,
) -> HttpResponse {
    HttpResponse::build(status).json(Success {
        status: "success",
        message: message.into(),
        data,
        timestamp: timestamp(),
    })
}

/// The success envelope, serialized straight from `data` (no `Value` tree in between), so
/// `data` may embed pre-rendered JSON (`RawValue`).
#[derive(Serialize)]
struct Success<T> {
    status: &'static str,
    message: String,
    data: T,
    timestamp: String,
}

/// An error answered in the error envelope.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub status: StatusCode,
    pub message: String,
    pub data: Option<Value>,
    /// Seconds for the `Retry-After` header; every 503 gets one (1 s unless set).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            status: code.status(),
            message: message.into(),
            data: None,
            retry_after: None,
        }
    }

    /// Sets the `Retry-After` seconds.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// True when the same request may succeed later unchanged (the client should retry).
    pub fn retryable(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
    }

    /// The `Retry-After` seconds this error answers with, if any.
    fn retry_after_seconds(&self) -> Option<u32> {
        self.retry_after.or(self.retryable().then_some(1))
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn body(&self) -> Value {
        json!({
            "status": "error",
            "error_code": self.code,
            "message": self.message,
            "data": self.data,
            "timestamp": timestamp(),
        })
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after_seconds() {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(self.body())
    }
}
