//! `GET /api/v1/routes/{name}/tap`: watch a route at work, as server-sent events — what it
//! receives and what it publishes, dead-letters, drops, filters or emits from state
//! ([`crate::router::tap`]). `?limit=` events a second (default 10, at most
//! [`MAX_LIMIT`]; what the rate leaves out is counted as skipped), `?seconds=` how long the
//! stream lasts (default 60, at most [`MAX_SECONDS`]). Needs the API token when one is set,
//! like a mutating endpoint: the events show payloads.
//!
//! The stream: one `event: <kind>` with the event as JSON `data:` per event, an
//! `event: skipped` with `{"skipped": n}` every second while events are skipped, and a
//! last `event: end` with `{"skipped", "sent", "reason"}` (the time is up, or the service
//! is shutting down).
//!
//! Also [`print_tap`], the terminal client of `prism-broker tap ROUTE`.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::envelope::{ApiError, ErrorCode};
use super::state::AppState;
use crate::router::tap::TapSession;

/// Default and highest event rate of a tap, per second.
pub const DEFAULT_LIMIT: u32 = 10;
pub const MAX_LIMIT: u32 = 100;
/// Default and longest duration of a tap, in seconds.
pub const DEFAULT_SECONDS: u64 = 60;
pub const MAX_SECONDS: u64 = 600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapQuery {
    limit: Option<u32>,
    seconds: Option<u64>,
}

fn sse(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

struct Streaming {
    session: TapSession,
    until: tokio::time::Instant,
    sent: u64,
    reported_skipped: u64,
    state: web::Data<AppState>,
    done: bool,
}

pub async fn tap(
    state: web::Data<AppState>,
    name: web::Path<String>,
    query: web::Query<TapQuery>,
) -> Result<HttpResponse, ApiError> {
    let table = state.router.table();
    if table.route(&name).is_none() {
        return Err(ApiError::new(
            ErrorCode::RouteNotFound,
            format!("route {name} not found"),
        ));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameters,
            format!("limit is 1 to {MAX_LIMIT} events a second, found {limit}"),
        ));
    }
    let seconds = query.seconds.unwrap_or(DEFAULT_SECONDS);
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameters,
            format!("seconds is 1 to {MAX_SECONDS}, found {seconds}"),
        ));
    }
    let session = state.router.taps.route(&name).open(limit);
    let start = Streaming {
        session,
        until: tokio::time::Instant::now() + Duration::from_secs(seconds),
        sent: 0,
        reported_skipped: 0,
        state: state.clone(),
        done: false,
    };
    let hello = sse(
        "open",
        &json!({"route": name.as_str(), "limit": limit, "seconds": seconds}),
    );
    let stream = futures::stream::once(async move { Ok::<Bytes, actix_web::Error>(hello) })
        .chain(futures::stream::unfold(start, next_chunk));
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(stream))
}

use futures::StreamExt;

/// The next chunk of a tap stream: an event, a skipped count, or the end.
async fn next_chunk(mut s: Streaming) -> Option<(Result<Bytes, actix_web::Error>, Streaming)> {
    if s.done {
        return None;
    }
    loop {
        let end = |s: &mut Streaming, reason: &str| {
            s.done = true;
            let data = json!({"skipped": s.session.skipped(), "sent": s.sent, "reason": reason});
            sse("end", &data)
        };
        if s.state.drain.is_draining() {
            let chunk = end(&mut s, "the service is shutting down");
            return Some((Ok(chunk), s));
        }
        let tick = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep_until(s.until) => {
                let chunk = end(&mut s, "time is up");
                return Some((Ok(chunk), s));
            }
            event = s.session.next() => match event {
                Some(event) => {
                    s.sent += 1;
                    let data = serde_json::to_value(&*event).unwrap_or(Value::Null);
                    return Some((Ok(sse(event.kind, &data)), s));
                }
                None => {
                    let chunk = end(&mut s, "the route's tap closed");
                    return Some((Ok(chunk), s));
                }
            },
            _ = tick => {
                let skipped = s.session.skipped();
                if skipped != s.reported_skipped {
                    s.reported_skipped = skipped;
                    return Some((Ok(sse("skipped", &json!({"skipped": skipped}))), s));
                }
            }
        }
    }
}

/// Why `prism-broker tap` could not tap.
#[derive(Debug, thiserror::Error)]
pub enum TapClientError {
    #[error("cannot reach {url}: {source}")]
    Connect { url: String, source: reqwest::Error },
    #[error("{url}: {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the stream broke: {0}")]
    Stream(reqwest::Error),
}

/// `prism-broker tap ROUTE`: prints each event of the route's tap as one line
/// (`time kind subject payload [error]`), until the tap ends.
pub async fn print_tap(
    base: &str,
    route: &str,
    limit: u32,
    seconds: u64,
    token: Option<&str>,
) -> Result<(), TapClientError> {
    let url = format!(
        "{}/api/v1/routes/{route}/tap?limit={limit}&seconds={seconds}",
        base.trim_end_matches('/')
    );
    let mut request = reqwest::Client::new().get(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .await
        .map_err(|source| TapClientError::Connect {
            url: url.clone(),
            source,
        })?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        return Err(TapClientError::Refused { url, status, body });
    }
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await.map_err(TapClientError::Stream)? {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(at) = buffer.find("\n\n") {
            let block: String = buffer.drain(..at + 2).collect();
            if let Some(line) = render(&block) {
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// One server-sent event block as a terminal line.
fn render(block: &str) -> Option<String> {
    let mut event = "message";
    let mut data = "";
    for line in block.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            event = e;
        } else if let Some(d) = line.strip_prefix("data: ") {
            data = d;
        }
    }
    let value: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let text = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some(match event {
        "open" => format!(
            "tapping route {} at most {} events/s for {} s",
            text("route"),
            value["limit"],
            value["seconds"]
        ),
        "skipped" => format!("… {} events skipped so far (rate limit)", value["skipped"]),
        "end" => format!(
            "end: {} ({} events shown, {} skipped)",
            text("reason"),
            value["sent"],
            value["skipped"]
        ),
        kind => {
            let at = value["at_ms"].as_i64().unwrap_or_default();
            let time = chrono::DateTime::from_timestamp_millis(at)
                .map(|t| t.format("%H:%M:%S%.3f").to_string())
                .unwrap_or_default();
            let mut line = format!("{time} {kind:<14} {} {}", text("subject"), text("payload"));
            let error = text("error");
            if !error.is_empty() {
                line.push_str(&format!(" [{error}]"));
            }
            line.trim_end().to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_render_as_lines() {
        let line = render("event: published\ndata: {\"kind\":\"published\",\"at_ms\":0,\"subject\":\"a.b\",\"payload\":\"{}\"}\n\n").unwrap();
        assert_eq!(line, "00:00:00.000 published      a.b {}");
        let line =
            render("event: end\ndata: {\"reason\":\"time is up\",\"sent\":3,\"skipped\":9}\n\n")
                .unwrap();
        assert_eq!(line, "end: time is up (3 events shown, 9 skipped)");
    }
}
