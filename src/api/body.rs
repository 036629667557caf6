//! Request bodies: read with a size limit (413 `PAYLOAD_TOO_LARGE` in the envelope, not
//! actix's plain-text default) and parsed as JSON (400 with the endpoint's error code).

use actix_web::web;
use futures::StreamExt;
use serde_json::Value;

use super::envelope::{ApiError, ErrorCode};

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_limited(
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => too_large(),
            other => ApiError::new(
                ErrorCode::InvalidParameters,
                format!("cannot read request body: {other}"),
            ),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads and parses a JSON body; a body that is not JSON is a 400 with `code`.
pub async fn read_json(
    payload: web::Payload,
    limit: usize,
    code: ErrorCode,
) -> Result<Value, ApiError> {
    let body = read_limited(payload, limit).await?;
    parse_json(&body, code)
}

/// Parses a JSON body; a body that is empty or not JSON is a 400 with `code`.
pub fn parse_json(body: &[u8], code: ErrorCode) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            code,
            "request body is empty: a JSON object is expected",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(code, format!("request body is not valid JSON: {e}")))
}
