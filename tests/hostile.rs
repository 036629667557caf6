//! Hostile input on the live service: messages no well-behaved client sends (a `trade_id`
//! with a line break, a header value with a lone `\r`, a header name that is not ASCII, a
//! header line without a colon, multibyte subjects, a payload near `max_payload`) go through
//! the shipped rules on a real nats-server, written on the wire by hand. Every route keeps
//! routing, none restarts, and the service stays ready.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(15);

/// A raw NATS connection that writes protocol lines exactly as given.
struct Raw {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (read, writer) = stream.into_split();
        let mut raw = Raw {
            reader: BufReader::new(read),
            writer,
        };
        let mut info = String::new();
        raw.reader.read_line(&mut info).await.unwrap();
        assert!(info.starts_with("INFO"), "{info}");
        raw.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n")
            .await;
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// `HPUB subject hdr_len total_len` with the header block and payload as given.
    async fn hpub(&mut self, subject: &str, header_lines: &[&[u8]], payload: &[u8]) {
        let mut headers = b"NATS/1.0\r\n".to_vec();
        for line in header_lines {
            headers.extend_from_slice(line);
            headers.extend_from_slice(b"\r\n");
        }
        headers.extend_from_slice(b"\r\n");
        let mut op = format!(
            "HPUB {subject} {} {}\r\n",
            headers.len(),
            headers.len() + payload.len()
        )
        .into_bytes();
        op.extend_from_slice(&headers);
        op.extend_from_slice(payload);
        op.extend_from_slice(b"\r\n");
        self.send(&op).await;
    }

    /// Waits until the server processed everything sent so far.
    async fn ping(&mut self) {
        self.send(b"PING\r\n").await;
        let mut line = String::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).await.unwrap();
            if line.starts_with("PONG") {
                return;
            }
            assert!(!line.starts_with("-ERR"), "server refused: {line}");
        }
    }
}

fn trade(id: &str) -> Value {
    json!({
        "symbol": "BTC-USDT", "price": "67234.56", "quantity": "0.0125", "side": "buy",
        "trade_id": id, "exchange": "binance", "market_type": "spot",
        "data_source": "marketprism", "ts_ms": 1795290133376u64, "trade_ts_ms": 1795290133198u64,
        "publisher": "unified-collector",
    })
}

#[tokio::test]
async fn hostile_messages_never_stop_a_route() {
    let service = ServiceBuilder::new().shipped_rules().start().await;
    let client = service.nats_client().await;
    let mut canonical = client.subscribe("canonical.trade.>").await.unwrap();
    let mut tops = client.subscribe("top_of_book.>").await.unwrap();
    server_sync(&client).await;
    let mut raw = Raw::connect(service.nats_port()).await;

    let body = trade("a\nb").to_string();
    // A trade_id with a line break: its msg_id cannot be a header; dead-lettered.
    raw.hpub("trade.binance.spot.BTC-USDT", &[], body.as_bytes())
        .await;
    // A header value with a lone \r, a non-ASCII header name, a line without a colon.
    let ok = trade("1").to_string();
    raw.hpub(
        "trade.binance.spot.BTC-USDT",
        &[b"X-Bad: a\rb"],
        ok.as_bytes(),
    )
    .await;
    raw.hpub(
        "trade.binance.spot.BTC-USDT",
        &["Ünïcode: x".as_bytes(), b"no colon here"],
        trade("2").to_string().as_bytes(),
    )
    .await;
    // Multibyte subject tokens, control characters and multibyte text in the payload.
    raw.hpub(
        "trade.binance.spot.BTC-日本",
        &[b"X-Text: caf\xc3\xa9"],
        trade("3\u{1}\u{7f}é").to_string().as_bytes(),
    )
    .await;
    // A payload close to max_payload (1 MiB), and one that is not JSON at all.
    let big = json!({ "price": "1", "quantity": "1", "side": "buy", "trade_id": "big",
        "pad": "x".repeat(1_000_000) })
    .to_string();
    raw.hpub("trade.binance.spot.BIG", &[], big.as_bytes())
        .await;
    raw.hpub(
        "orderbook.binance.spot.BTC-USDT",
        &[b"X: \x01"],
        b"\xff\xfe not json",
    )
    .await;
    raw.ping().await;

    // Every route keeps routing: a good trade and a good book come out.
    let good = trade("good").to_string();
    client
        .publish("trade.binance.spot.BTC-USDT", good.into())
        .await
        .unwrap();
    let book = json!({ "bids": [{"price": "1", "quantity": "2"}], "asks": [{"price": "3", "quantity": "4"}], "ts_ms": 1 });
    client
        .publish("orderbook.binance.spot.BTC-USDT", book.to_string().into())
        .await
        .unwrap();
    let trades = collect(&mut canonical, 5, WAIT).await;
    let ids: Vec<String> = trades
        .iter()
        .map(|m| {
            serde_json::from_slice::<Value>(&m.payload).unwrap()["trade_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(ids.contains(&"good".to_string()), "{ids:?}");
    assert!(
        ids.contains(&"1".to_string()),
        "the lone-\\r header did not stop it: {ids:?}"
    );
    assert!(!ids.contains(&"a\nb".to_string()));
    assert_eq!(collect(&mut tops, 1, WAIT).await.len(), 1);

    // The trade_id with a line break is in DEAD_LETTERS, naming Nats-Msg-Id.
    let js = async_nats::jetstream::new(client.clone());
    let letter = wait_for("the dead letter", WAIT, || async {
        let stream = js.get_stream("DEAD_LETTERS").await.ok()?;
        stream.get_raw_message(1).await.ok()
    })
    .await;
    let error = letter
        .headers
        .get("Prism-Error")
        .unwrap()
        .as_str()
        .to_string();
    assert!(error.contains("Nats-Msg-Id"), "{error}");

    // Nothing restarted and the service is ready.
    let (_, routes) = service.get("/api/v1/routes").await;
    for route in routes["data"]["routes"].as_array().unwrap() {
        assert_eq!(route["counters"]["task_restarts"], 0, "{route}");
    }
    service.wait_ready(WAIT).await;
    assert!(!service.log().contains("panicked"), "{}", service.log());
}
