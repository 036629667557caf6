//! `timestamp`: converts a time field between epoch numbers and RFC 3339 text, with the unit
//! stated on both sides.
//!
//! ```yaml
//! - timestamp: { field: trade_ts_ms, from: epoch_ms, to: rfc3339, target: trade_time }
//! - timestamp: { field: liquidation_time, from: rfc3339, to: epoch_ms }
//! ```
//! Units: `epoch_s`, `epoch_ms`, `epoch_us`, `epoch_ns`, `rfc3339`. Epoch inputs may be
//! numbers or numeric strings; epoch outputs are integers (floored); RFC 3339 output is UTC
//! with as many fraction digits as needed (`…T19:42:13.376Z`). `target` defaults to
//! `field`. A missing field or `null` is left alone; an unparsable value is an error.
//!
//! Layer 2 (a step kind): imports `steps/transform.rs`, `steps/fields.rs` and primitives.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::FieldPath;
use super::transform::{
    parse_config, parse_field, Applied, BuildContext, Transform, TransformError,
};
use crate::rules::context::MessageContext;
use crate::rules::value::parse_decimal;

const KIND: &str = "timestamp";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    EpochS,
    EpochMs,
    EpochUs,
    EpochNs,
    Rfc3339,
}

impl TimeUnit {
    /// Nanoseconds per unit of an epoch unit.
    fn nanos(self) -> i128 {
        match self {
            TimeUnit::EpochS => 1_000_000_000,
            TimeUnit::EpochMs => 1_000_000,
            TimeUnit::EpochUs => 1_000,
            TimeUnit::EpochNs | TimeUnit::Rfc3339 => 1,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimestampConfig {
    field: String,
    from: TimeUnit,
    to: TimeUnit,
    #[serde(default)]
    target: Option<String>,
}

#[derive(Debug)]
pub struct Timestamp {
    field: FieldPath,
    target: FieldPath,
    from: TimeUnit,
    to: TimeUnit,
}

pub fn build(
    config: &Value,
    _ctx: &BuildContext<'_>,
) -> Result<Box<dyn Transform>, TransformError> {
    let c: TimestampConfig = parse_config(KIND, config)?;
    if c.from == c.to {
        return Err(TransformError::Config {
            kind: KIND,
            message: "`from` and `to` are the same unit".into(),
        });
    }
    let field = parse_field(KIND, &c.field)?;
    let target = match &c.target {
        Some(t) => parse_field(KIND, t)?,
        None => field.clone(),
    };
    Ok(Box::new(Timestamp {
        field,
        target,
        from: c.from,
        to: c.to,
    }))
}

impl Timestamp {
    fn fail(&self, message: impl Into<String>) -> TransformError {
        TransformError::Failed {
            kind: KIND,
            field: self.field.as_str().into(),
            message: message.into(),
        }
    }

    /// The input as nanoseconds since the epoch.
    fn read(&self, value: &Value) -> Result<i128, TransformError> {
        if self.from == TimeUnit::Rfc3339 {
            let text = value.as_str().ok_or_else(|| {
                TransformError::wrong_type(KIND, self.field.as_str(), "rfc 3339 text", value)
            })?;
            let t = DateTime::parse_from_rfc3339(text)
                .map_err(|e| self.fail(format!("{text:?} is not rfc 3339: {e}")))?;
            return t
                .timestamp_nanos_opt()
                .map(i128::from)
                .ok_or_else(|| self.fail("time out of range"));
        }
        let unit = self.from.nanos();
        let integer = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        if let Some(i) = integer {
            return Ok(i128::from(i) * unit);
        }
        let float = match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => parse_decimal(s),
            _ => None,
        }
        .ok_or_else(|| {
            TransformError::wrong_type(KIND, self.field.as_str(), "an epoch number", value)
        })?;
        let nanos = float * unit as f64;
        if nanos.abs() > 9.0e27 {
            return Err(self.fail("time out of range"));
        }
        Ok(nanos.round() as i128)
    }

    fn write(&self, nanos: i128) -> Result<Value, TransformError> {
        if self.to == TimeUnit::Rfc3339 {
            let secs = nanos.div_euclid(1_000_000_000);
            let sub = nanos.rem_euclid(1_000_000_000) as u32;
            let secs = i64::try_from(secs).map_err(|_| self.fail("time out of range"))?;
            let t: DateTime<Utc> = DateTime::from_timestamp(secs, sub)
                .ok_or_else(|| self.fail("time out of range"))?;
            return Ok(Value::String(
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ));
        }
        let v = nanos.div_euclid(self.to.nanos());
        i64::try_from(v)
            .map(Value::from)
            .map_err(|_| self.fail("time out of range"))
    }
}

impl Transform for Timestamp {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn apply_object(
        &self,
        object: Map<String, Value>,
        _ctx: &MessageContext<'_>,
    ) -> Result<Applied, TransformError> {
        let mut payload = Value::Object(object);
        let out = match self.field.get(&payload) {
            None | Some(Value::Null) => return Ok(Applied::One(payload)),
            Some(v) => self.write(self.read(v)?)?,
        };
        self.target
            .set(&mut payload, out)
            .map_err(|m| self.fail(m))?;
        Ok(Applied::One(payload))
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::steps::testing::*;
    use serde_json::json;

    fn conv(cfg: &str, v: serde_json::Value) -> serde_json::Value {
        apply(&format!("timestamp: {{field: t, {cfg}}}"), json!({"t": v})).unwrap()["t"].clone()
    }

    #[test]
    fn ms_to_rfc3339_and_back() {
        assert_eq!(
            conv("from: epoch_ms, to: rfc3339", json!(1795290133376i64)),
            json!("2026-11-21T19:42:13.376Z")
        );
        assert_eq!(
            conv("from: epoch_ms, to: rfc3339", json!("1795290133000")),
            json!("2026-11-21T19:42:13Z")
        );
        assert_eq!(
            conv(
                "from: rfc3339, to: epoch_ms",
                json!("2026-11-21T19:42:13.190000+00:00")
            ),
            json!(1795290133190i64)
        );
        assert_eq!(
            conv(
                "from: rfc3339, to: epoch_s",
                json!("2026-11-21T21:42:13.9+02:00")
            ),
            json!(1795290133)
        );
        assert_eq!(conv("from: epoch_s, to: epoch_ms", json!(1.5)), json!(1500));
        assert_eq!(conv("from: epoch_us, to: epoch_ns", json!(7)), json!(7000));
        assert_eq!(
            conv("from: epoch_ms, to: epoch_s", json!(-1)),
            json!(-1),
            "floors"
        );
    }

    #[test]
    fn target_field() {
        let out = apply(
            "timestamp: {field: ts_ms, from: epoch_ms, to: rfc3339, target: ts}",
            json!({"ts_ms": 0}),
        )
        .unwrap();
        assert_eq!(out, json!({"ts_ms": 0, "ts": "1970-01-01T00:00:00Z"}));
    }

    #[test]
    fn missing_null_and_wrong_types() {
        let cfg = "timestamp: {field: t, from: epoch_ms, to: rfc3339}";
        assert_eq!(apply(cfg, json!({"x": 1})).unwrap(), json!({"x": 1}));
        assert_eq!(apply(cfg, json!({"t": null})).unwrap(), json!({"t": null}));
        assert!(apply(cfg, json!({"t": "soon"})).is_err());
        assert!(apply(cfg, json!({"t": [1]})).is_err());
        assert!(
            apply(cfg, json!({"t": 1e300})).is_err(),
            "out of range, no panic"
        );
        let back = "timestamp: {field: t, from: rfc3339, to: epoch_ms}";
        assert!(apply(back, json!({"t": "yesterday"}))
            .unwrap_err()
            .to_string()
            .contains("rfc 3339"));
        assert!(apply(back, json!({"t": 5})).is_err());
    }

    #[test]
    fn invalid_config() {
        assert!(
            config_error("timestamp: {field: t, from: ms, to: rfc3339}").contains("invalid config")
        );
        assert!(config_error("timestamp: {field: t, from: epoch_ms}").contains("to"));
        assert!(
            config_error("timestamp: {field: t, from: epoch_ms, to: epoch_ms}")
                .contains("same unit")
        );
        assert!(
            config_error("timestamp: {field: t, from: epoch_ms, to: rfc3339, zone: x}")
                .contains("unknown field")
        );
    }
}
