//! Test helpers for the per-kind tests: build a step from inline YAML (through the
//! registry, as a rule file would), apply it. Only the kinds' `#[cfg(test)]` modules
//! import it.

use serde_json::Value;

use super::registry::build_step;
use super::transform::{Applied, BuildContext, Transform, TransformError};
use crate::rules::context::MessageContext;
use crate::rules::headers::Headers;
use crate::rules::template::CaptureScope;
use crate::rules::yaml;

pub const NOW: i64 = 1_795_290_133_500;

pub fn build(text: &str) -> Result<Box<dyn Transform>, TransformError> {
    let node = yaml::parse(text).map_err(|e| TransformError::StepShape {
        found: e.to_string(),
    })?;
    let names = vec!["exchange".to_string(), "symbol".to_string()];
    build_step(
        &node,
        &BuildContext {
            scope: CaptureScope::Names(&names),
        },
    )
}

pub fn run(step: &dyn Transform, payload: Value) -> Result<Applied, TransformError> {
    let headers = Headers::new();
    let ctx = MessageContext {
        subject: "trade.binance.spot.BTC-USDT",
        captures: &["binance", "BTC-USDT"],
        headers: &headers,
        now_ms: NOW,
    };
    step.apply(payload, &ctx)
}

/// Builds and applies a step that must give exactly one message.
pub fn apply(text: &str, payload: Value) -> Result<Value, TransformError> {
    let step = build(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    match run(step.as_ref(), payload)? {
        Applied::One(v) => Ok(v),
        Applied::Many(vs) => panic!("expected one message, got {vs:?}"),
    }
}

pub fn config_error(text: &str) -> String {
    match build(text) {
        Ok(step) => panic!("{text} built: {step:?}"),
        Err(e) => e.to_string(),
    }
}
