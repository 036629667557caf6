//! Layer 2 (steps): a pipeline is an ordered list of built steps, run on each message in
//! turn; a step may turn one message into several (`explode`) or none (a filter, a
//! stateful step holding it), and the next step then runs on each of them. Stateful steps
//! get their state from a [`PipelineState`] the caller owns; what they let go of at a tick
//! runs through the steps after them.

use serde_json::Value;

use super::registry::{build_step, BuiltStep};
use super::stateful::{Emitted, PipelineState, Stateful, StepEvents};
use super::transform::{Applied, BuildContext, Transform, TransformError};
use crate::rules::context::MessageContext;
use crate::rules::lazy::LazyObject;
use crate::rules::yaml::{Node, Problem};

#[derive(Debug)]
enum Step {
    Plain(Box<dyn Transform>),
    /// With its index in the [`PipelineState`].
    Stateful(Box<dyn Stateful>, usize),
}

/// An ordered list of steps, run on each message in turn.
#[derive(Debug, Default)]
pub struct Pipeline {
    steps: Vec<Step>,
    stateful: usize,
    /// How many steps from the first work on a lazily read object ([`Pipeline::apply_lazy`]).
    lazy: usize,
}

impl Pipeline {
    /// Builds every step of `steps`, recording a problem (at the step's line) for each
    /// step that does not build.
    pub fn build(steps: &[&Node], ctx: &BuildContext<'_>, problems: &mut Vec<Problem>) -> Pipeline {
        let mut pipeline = Pipeline::default();
        for (i, node) in steps.iter().enumerate() {
            match build_step(node, ctx) {
                Ok(step) => pipeline.push(step),
                Err(e) => problems.push(Problem::new(node.line, format!("step {}: {e}", i + 1))),
            }
        }
        pipeline
    }

    fn push(&mut self, step: BuiltStep) {
        if matches!(&step, BuiltStep::Plain(t) if t.is_lazy()) && self.lazy == self.steps.len() {
            self.lazy += 1;
        }
        match step {
            BuiltStep::Plain(t) => self.steps.push(Step::Plain(t)),
            BuiltStep::Stateful(t) => {
                self.steps.push(Step::Stateful(t, self.stateful));
                self.stateful += 1;
            }
        }
    }

    /// Adds the steps of `other` after this pipeline's.
    pub fn append(&mut self, other: Pipeline) {
        for step in other.steps {
            self.push(match step {
                Step::Plain(t) => BuiltStep::Plain(t),
                Step::Stateful(t, _) => BuiltStep::Stateful(t),
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// True when some step keeps state.
    pub fn is_stateful(&self) -> bool {
        self.stateful > 0
    }

    /// True when a step can hold an input's effect past the input (a window, a throttle
    /// that emits the latest message).
    pub fn holds_inputs(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::Stateful(t, _) if t.holds_inputs()))
    }

    /// The kinds of the stateful steps, in order.
    pub fn stateful_kinds(&self) -> Vec<&'static str> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Stateful(t, _) => Some(t.kind()),
                Step::Plain(_) => None,
            })
            .collect()
    }

    /// Empty state for every stateful step.
    pub fn new_state(&self) -> PipelineState {
        PipelineState {
            steps: self
                .steps
                .iter()
                .filter_map(|s| match s {
                    Step::Stateful(t, _) => {
                        Some((t.kind().to_string(), t.config().clone(), t.new_state()))
                    }
                    Step::Plain(_) => None,
                })
                .collect(),
        }
    }

    /// How many steps from the first [`Pipeline::apply_lazy`] runs.
    pub fn lazy_steps(&self) -> usize {
        self.lazy
    }

    /// True when every step has a lazy form.
    pub fn is_all_lazy(&self) -> bool {
        self.lazy == self.steps.len()
    }

    /// Runs the first [`Pipeline::lazy_steps`] steps on a lazily read object; the caller
    /// runs the rest, from that index, on the object as a `Value`.
    pub fn apply_lazy(
        &self,
        object: &mut LazyObject<'_>,
        ctx: &MessageContext<'_>,
    ) -> Result<(), TransformError> {
        for step in &self.steps[..self.lazy] {
            if let Step::Plain(t) = step {
                t.apply_lazy(object, ctx)?;
            }
        }
        Ok(())
    }

    /// Runs the steps from `first` on with no state kept between calls (a dry run:
    /// stateful steps start empty each time).
    pub fn apply(
        &self,
        first: usize,
        payload: Value,
        ctx: &MessageContext<'_>,
    ) -> Result<Applied, TransformError> {
        if self.stateful == 0 {
            return self.run_from(
                first,
                Applied::One(payload),
                ctx,
                None,
                &mut StepEvents::default(),
            );
        }
        let mut state = self.new_state();
        self.run_from(
            first,
            Applied::One(payload),
            ctx,
            Some(&mut state),
            &mut StepEvents::default(),
        )
    }

    /// Runs the steps from `first` on, stateful ones with `state`; what they did is added
    /// to `events`.
    pub fn apply_with(
        &self,
        first: usize,
        payload: Value,
        ctx: &MessageContext<'_>,
        state: &mut PipelineState,
        events: &mut StepEvents,
    ) -> Result<Applied, TransformError> {
        self.run_from(first, Applied::One(payload), ctx, Some(state), events)
    }

    /// Runs the steps from `first` on (a message a stateful step let go of at a tick).
    pub fn resume(
        &self,
        first: usize,
        payload: Value,
        ctx: &MessageContext<'_>,
        state: &mut PipelineState,
        events: &mut StepEvents,
    ) -> Result<Applied, TransformError> {
        self.run_from(first, Applied::One(payload), ctx, Some(state), events)
    }

    fn run_from(
        &self,
        first: usize,
        mut current: Applied,
        ctx: &MessageContext<'_>,
        mut state: Option<&mut PipelineState>,
        events: &mut StepEvents,
    ) -> Result<Applied, TransformError> {
        for step in self.steps.iter().skip(first) {
            let mut one = |v: Value| -> Result<Applied, TransformError> {
                match step {
                    Step::Plain(t) => t.apply(v, ctx),
                    Step::Stateful(t, i) => {
                        let Value::Object(object) = v else {
                            return Err(TransformError::NotObject { kind: t.kind() });
                        };
                        let slot = state
                            .as_deref_mut()
                            .and_then(|s| s.steps.get_mut(*i))
                            .ok_or_else(|| TransformError::Failed {
                                kind: t.kind(),
                                field: String::new(),
                                message: "internal: no state for the step".into(),
                            })?;
                        t.apply(object, ctx, slot.2.as_mut(), events)
                    }
                }
            };
            current = match current {
                Applied::One(v) => one(v)?,
                Applied::Many(messages) => {
                    let mut next = Vec::with_capacity(messages.len());
                    for m in messages {
                        match one(m)? {
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

    /// Lets every stateful step go of what is due at `now_ms`: each message with the index
    /// of the step to resume at ([`Pipeline::resume`]).
    pub fn tick(
        &self,
        now_ms: i64,
        state: &mut PipelineState,
        events: &mut StepEvents,
    ) -> Vec<(usize, Emitted)> {
        let mut out = Vec::new();
        for (position, step) in self.steps.iter().enumerate() {
            if let Step::Stateful(t, i) = step {
                if let Some(slot) = state.steps.get_mut(*i) {
                    for e in t.tick(now_ms, slot.2.as_mut(), events) {
                        out.push((position + 1, e));
                    }
                }
            }
        }
        out
    }

    /// When the next tick has something to do.
    pub fn next_due(&self, state: &PipelineState) -> Option<i64> {
        self.stateful_with(state, |t, s| t.next_due(s)).min()
    }

    /// Keys held by every stateful step.
    pub fn keys(&self, state: &PipelineState) -> usize {
        self.stateful_with(state, |t, s| Some(t.keys(s))).sum()
    }

    /// The number of the earliest input whose effect a step still holds.
    pub fn holding_since(&self, state: &PipelineState) -> Option<u64> {
        self.stateful_with(state, |t, s| t.holding_since(s)).min()
    }

    fn stateful_with<'a, T: 'a>(
        &'a self,
        state: &'a PipelineState,
        f: impl Fn(&dyn Stateful, &dyn std::any::Any) -> Option<T> + 'a,
    ) -> impl Iterator<Item = T> + 'a {
        self.steps.iter().filter_map(move |step| match step {
            Step::Stateful(t, i) => state
                .steps
                .get(*i)
                .and_then(|slot| f(t.as_ref(), slot.2.as_ref())),
            Step::Plain(_) => None,
        })
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
        Ok(match self.apply(0, payload, ctx)? {
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
