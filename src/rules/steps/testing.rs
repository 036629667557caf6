//! Test helpers for the per-kind tests: build a step from inline YAML (through the
//! registry, as a rule file would), apply it. Only the kinds' `#[cfg(test)]` modules
//! import it.

use serde_json::Value;

use super::registry::{build_step, BuiltStep};
use super::stateful::{Stateful, StepEvents};
use super::transform::{Applied, BuildContext, Transform, TransformError};
use crate::rules::context::MessageContext;
use crate::rules::headers::Headers;
use crate::rules::template::CaptureScope;
use crate::rules::yaml;

pub const NOW: i64 = 1_795_290_133_500;

/// Builds a stateless step.
pub fn build_plain(text: &str) -> Result<Box<dyn Transform>, TransformError> {
    match build(text)? {
        BuiltStep::Plain(step) => Ok(step),
        BuiltStep::Stateful(step) => panic!("{text}: stateful: {step:?}"),
    }
}

pub fn build(text: &str) -> Result<BuiltStep, TransformError> {
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
    let step = match build(text) {
        Ok(BuiltStep::Plain(step)) => step,
        Ok(other) => panic!("{text}: stateful: {other:?}"),
        Err(e) => panic!("{text}: {e}"),
    };
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

/// A stateful step built from inline YAML with its state and a settable clock.
pub struct Harness {
    step: Box<dyn Stateful>,
    state: Box<dyn std::any::Any + Send + Sync>,
    pub events: StepEvents,
}

impl Harness {
    pub fn new(text: &str) -> Harness {
        let step = match build(text) {
            Ok(BuiltStep::Stateful(s)) => s,
            Ok(other) => panic!("{text}: not stateful: {other:?}"),
            Err(e) => panic!("{text}: {e}"),
        };
        let state = step.new_state();
        Harness {
            step,
            state,
            events: StepEvents::default(),
        }
    }

    pub fn try_feed(&mut self, now_ms: i64, payload: Value) -> Result<Vec<Value>, TransformError> {
        let headers = Headers::new();
        let ctx = MessageContext {
            subject: "trade.binance.spot.BTC-USDT",
            captures: &["binance", "BTC-USDT"],
            headers: &headers,
            now_ms,
        };
        let Value::Object(object) = payload else {
            panic!("not an object");
        };
        // inputs numbered by their time, so tests read holding_since in ms
        self.events.input = now_ms as u64;
        Ok(
            match self
                .step
                .apply(object, &ctx, self.state.as_mut(), &mut self.events)?
            {
                Applied::One(v) => vec![v],
                Applied::Many(vs) => vs,
            },
        )
    }

    pub fn feed(&mut self, now_ms: i64, payload: Value) -> Vec<Value> {
        self.try_feed(now_ms, payload)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn tick(&mut self, now_ms: i64) -> Vec<Value> {
        self.step
            .tick(now_ms, self.state.as_mut(), &mut self.events)
            .into_iter()
            .map(|e| e.payload)
            .collect()
    }

    pub fn next_due(&self) -> Option<i64> {
        self.step.next_due(self.state.as_ref())
    }

    pub fn keys(&self) -> usize {
        self.step.keys(self.state.as_ref())
    }

    pub fn holding_since(&self) -> Option<u64> {
        self.step.holding_since(self.state.as_ref())
    }
}
