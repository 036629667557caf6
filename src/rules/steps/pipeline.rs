//! Layer 2 (steps): a pipeline is an ordered list of built steps, run on each message in
//! turn; a step may turn one message into several (`explode`), and the next step then runs
//! on each of them.

use serde_json::Value;

use super::registry::build_step;
use super::transform::{Applied, BuildContext, Transform, TransformError};
use crate::rules::context::MessageContext;
use crate::rules::yaml::{Node, Problem};

/// An ordered list of steps, run on each message in turn.
#[derive(Debug, Default)]
pub struct Pipeline {
    steps: Vec<Box<dyn Transform>>,
}

impl Pipeline {
    /// Builds every step of `steps`, recording a problem (at the step's line) for each
    /// step that does not build.
    pub fn build(steps: &[&Node], ctx: &BuildContext<'_>, problems: &mut Vec<Problem>) -> Pipeline {
        let mut built = Vec::with_capacity(steps.len());
        for (i, node) in steps.iter().enumerate() {
            match build_step(node, ctx) {
                Ok(step) => built.push(step),
                Err(e) => problems.push(Problem::new(node.line, format!("step {}: {e}", i + 1))),
            }
        }
        Pipeline { steps: built }
    }

    /// Adds the steps of `other` after this pipeline's.
    pub fn append(&mut self, other: Pipeline) {
        self.steps.extend(other.steps);
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs every step; a single message (the common case) stays off the heap-allocated list.
    pub fn apply(
        &self,
        payload: Value,
        ctx: &MessageContext<'_>,
    ) -> Result<Applied, TransformError> {
        let mut current = Applied::One(payload);
        for step in &self.steps {
            current = match current {
                Applied::One(v) => step.apply(v, ctx)?,
                Applied::Many(messages) => {
                    let mut next = Vec::with_capacity(messages.len());
                    for m in messages {
                        match step.apply(m, ctx)? {
                            Applied::One(v) => next.push(v),
                            Applied::Many(vs) => next.extend(vs),
                        }
                    }
                    Applied::Many(next)
                }
            };
        }
        Ok(current)
    }
}

/// What the pipeline tests read; the route uses [`Pipeline::apply`] and `is_empty` only.
#[cfg(test)]
impl Pipeline {
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Runs every step; the result holds zero or more messages.
    pub fn run(
        &self,
        payload: Value,
        ctx: &MessageContext<'_>,
    ) -> Result<Vec<Value>, TransformError> {
        Ok(match self.apply(payload, ctx)? {
            Applied::One(v) => vec![v],
            Applied::Many(vs) => vs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::headers::Headers;
    use crate::rules::template::CaptureScope;
    use crate::rules::yaml;
    use serde_json::json;

    #[test]
    fn pipeline_runs_steps_in_order_and_fans_out() {
        let node = yaml::parse(
            "- rename: {levels: bids}\n- explode: {field: bids, carry: [symbol]}\n- to_number: [price]\n",
        )
        .unwrap();
        let steps: Vec<&Node> = node.as_seq().unwrap().iter().collect();
        let mut problems = Vec::new();
        let ctx = BuildContext {
            scope: CaptureScope::Unchecked,
        };
        let pipeline = Pipeline::build(&steps, &ctx, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(pipeline.len(), 3);
        let headers = Headers::new();
        let mctx = MessageContext {
            subject: "s",
            captures: &[],
            headers: &headers,
            now_ms: 0,
        };
        let out = pipeline
            .run(
                json!({"symbol": "X", "levels": [{"price": "1.5"}, {"price": "2"}]}),
                &mctx,
            )
            .unwrap();
        assert_eq!(
            out,
            vec![
                json!({"symbol": "X", "price": 1.5}),
                json!({"symbol": "X", "price": 2})
            ]
        );
    }

    #[test]
    fn pipeline_build_reports_each_bad_step_with_its_line() {
        let node = yaml::parse("- rename: {a: b}\n- nope: 1\n- to_number: 5\n").unwrap();
        let steps: Vec<&Node> = node.as_seq().unwrap().iter().collect();
        let mut problems = Vec::new();
        let ctx = BuildContext {
            scope: CaptureScope::Unchecked,
        };
        Pipeline::build(&steps, &ctx, &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].line, 2);
        assert!(problems[0]
            .message
            .starts_with("step 2: unknown transform kind"));
        assert_eq!(problems[1].line, 3);
    }
}
