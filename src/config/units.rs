//! Units used in `broker.yaml`: byte sizes (`1GB`, `512MB`, plain numbers) and durations
//! (plain seconds, or `250ms`, `30s`, `5m`, `1h`, `7d`). Parsing only, no I/O.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A size in bytes. Suffixes are binary multiples as nats-server reads them
/// (`1KB` = 1024, `1MB` = 1024², `1GB` = 1024³); `KiB`/`MiB`/`GiB`/`TiB` and `K`/`M`/`G`/`T`
/// mean the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// Splits `512MB` into `(512.0, "MB")`; `what` and `expected` word the error.
fn split_number<'a>(text: &'a str, what: &str, expected: &str) -> Result<(f64, &'a str), String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("invalid {what} {text:?}: expected {expected}"));
    }
    let number = number
        .parse()
        .map_err(|_| format!("invalid {what} {text:?}: bad number {number:?}"))?;
    Ok((number, unit))
}

/// Parses `1GB`, `512 MB`, `1MiB`, `4096`.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = split_number(text, "size", "a number such as 512MB or 1GB")?;
    let multiplier: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        other => {
            return Err(format!(
                "invalid size {text:?}: unknown unit {other:?} (use B, KB, MB, GB or TB)"
            ))
        }
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("invalid size {text:?}: too large"));
    }
    Ok(bytes.round() as u64)
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes, or a string such as \"512MB\" or \"1GB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
                if v < 0.0 || !v.is_finite() {
                    return Err(E::custom(format!("invalid size {v}: must not be negative")));
                }
                Ok(ByteSize(v.round() as u64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_byte_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

/// A duration: a plain number is seconds; strings take `ms`, `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub Duration);

impl Span {
    pub const fn secs(secs: u64) -> Self {
        Span(Duration::from_secs(secs))
    }
    pub const fn millis(ms: u64) -> Self {
        Span(Duration::from_millis(ms))
    }
    pub const fn duration(self) -> Duration {
        self.0
    }
}

/// Parses `7200`, `250ms`, `30s`, `5m`, `1h`, `7d`, `1.5h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = split_number(
        text,
        "duration",
        "seconds or a number with ms, s, m, h or d",
    )?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86_400.0,
        other => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {other:?} (use ms, s, m, h or d)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("invalid duration {text:?}"))
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpanVisitor;
        impl Visitor<'_> for SpanVisitor {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("seconds, or a string such as \"250ms\", \"30s\", \"1h\" or \"7d\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Span, E> {
                Ok(Span(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Span, E> {
                u64::try_from(v)
                    .map(|v| Span(Duration::from_secs(v)))
                    .map_err(|_| E::custom(format!("invalid duration {v}: must not be negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Span, E> {
                Duration::try_from_secs_f64(v)
                    .map(Span)
                    .map_err(|_| E::custom(format!("invalid duration {v}: must not be negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Span, E> {
                parse_duration(v).map(Span).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SpanVisitor)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_multiples() {
        assert_eq!(parse_byte_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_byte_size("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_byte_size("512 mb").unwrap(), 512 << 20);
        assert_eq!(parse_byte_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_byte_size("4096").unwrap(), 4096);
        assert_eq!(parse_byte_size("1.5KB").unwrap(), 1536);
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(parse_byte_size("GB").is_err());
        assert!(parse_byte_size("12XB").is_err());
        assert!(parse_byte_size("").is_err());
        let err: Result<ByteSize, _> = serde_json::from_str("-5");
        assert!(err.unwrap_err().to_string().contains("negative"));
    }

    #[test]
    fn durations_accept_seconds_and_suffixes() {
        assert_eq!(parse_duration("7200").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        let span: Span = serde_json::from_str("3600").unwrap();
        assert_eq!(span.duration(), Duration::from_secs(3600));
    }

    #[test]
    fn bad_durations_are_errors() {
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        let err: Result<Span, _> = serde_json::from_str("-1");
        assert!(err.is_err());
    }
}
