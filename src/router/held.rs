//! JetStream inputs of a route whose state holds their effect (an open window, a conflated
//! message not sent yet): such an input is acknowledged only once what it contributed to
//! is published, so at-least-once holds for what the route publishes.
//!
//! After every message and every tick the route's state says since when it holds inputs
//! ([`Processor::holding_since`](super::process::Processor::holding_since), the number
//! of the earliest input still held; inputs are numbered as the state runs them). A message routed while something is held is
//! parked here instead of acknowledged (conservatively: it may be part of what is held).
//! Parked messages routed before the earliest held input are released — acknowledged
//! once the outputs of the step that let go of them (the candle that closed, the conflated
//! message sent) and of every step before it are confirmed: the release rides on that
//! step's future and is carried out by the source loop when the future's result comes out
//! of the ordered window, that is after every earlier future finished. When those outputs
//! could not be published the released messages are nak'ed, so they are delivered again. Parked messages get progress acks (`+WPI`) so their `ack_wait` does
//! not run out while they wait, and count against the consumer's `max_ack_pending`: set
//! it above the messages of one window. At a stop the parked messages are nak'ed: the
//! state goes with the task, and the next consumer of the durable rebuilds it from them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream::{AckKind, Message};
use tokio::sync::watch;
use tracing::warn;

use super::process::{self, Pending, Settled, TaskDeps};

/// A message whose ack waits for the state to let go of its effect.
pub struct Parked {
    /// Its input number in the route's state.
    pub routed_at: u64,
    pub seq: u64,
    pub msg: Message,
}

/// What a finished future tells the source loop.
#[derive(Default)]
pub struct Finished {
    /// Stream sequences acknowledged (or let go of) now.
    pub handled: Vec<u64>,
    /// A message to park.
    pub park: Option<Parked>,
    /// Parked messages to let go of now that this future and every earlier one are done:
    /// acked when `published`, nak'ed otherwise.
    pub release: Vec<Parked>,
    pub published: bool,
}

impl Finished {
    pub fn one(seq: u64) -> Finished {
        Finished {
            handled: vec![seq],
            ..Default::default()
        }
    }
}

/// The parked messages of one route task, oldest first.
pub struct Held {
    parked: VecDeque<Parked>,
    progress_every: Duration,
    last_progress: Instant,
}

impl Held {
    /// Progress acks every third of `ack_wait` (at least every second).
    pub fn new(ack_wait: Duration) -> Held {
        Held {
            parked: VecDeque::new(),
            progress_every: (ack_wait / 3).max(Duration::from_secs(1)),
            last_progress: Instant::now(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }

    pub fn park(&mut self, parked: Parked) {
        self.parked.push_back(parked);
    }

    /// Takes the parked messages routed before `since` (all of them when nothing is held).
    pub fn releasable(&mut self, since: Option<u64>) -> Vec<Parked> {
        let mut out = Vec::new();
        while self
            .parked
            .front()
            .is_some_and(|p| since.is_none_or(|s| p.routed_at < s))
        {
            if let Some(p) = self.parked.pop_front() {
                out.push(p);
            }
        }
        out
    }

    /// When the parked messages next need a progress ack.
    pub fn progress_due(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.last_progress + self.progress_every)
    }

    /// Extends every parked message's ack deadline.
    pub async fn progress(&mut self) {
        for p in &self.parked {
            let _ = p.msg.ack_with(AckKind::Progress).await;
        }
        self.last_progress = Instant::now();
    }

    /// Offers every parked message again (at a stop); they stay outstanding in the
    /// position, so a successor resumes from them.
    pub async fn nak_all(&mut self) -> usize {
        let n = self.parked.len();
        for p in self.parked.drain(..) {
            let _ = p.msg.ack_with(AckKind::Nak(None)).await;
        }
        n
    }
}

/// Acks (or, when `ok` is false, naks) released messages; their sequences.
pub async fn let_go(released: Vec<Parked>, ok: bool, route: &str) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(released.len());
    for p in released {
        let result = if ok {
            p.msg.ack().await
        } else {
            p.msg.ack_with(AckKind::Nak(None)).await
        };
        if let Err(e) = result {
            warn!(route = %route, error = %e, "cannot acknowledge a held input; it will be redelivered");
        }
        seqs.push(p.seq);
    }
    seqs
}

/// Settles a message's outputs and then parks it (`park`), or finishes it like any
/// JetStream input; `release` goes back to the loop with whether the outputs went out.
#[allow(clippy::too_many_arguments)]
pub async fn finish_holding(
    deps: TaskDeps,
    mut pending: Pending,
    msg: Message,
    routed_at: u64,
    park: bool,
    release: Vec<Parked>,
    max_deliver: i64,
    mut stop: watch::Receiver<bool>,
) -> Finished {
    if !park {
        let (seq, published) =
            super::jetstream::finish(deps, pending, msg, max_deliver, stop).await;
        return Finished {
            handled: vec![seq],
            park: None,
            release,
            published,
        };
    }
    let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
    let progress = || async {
        let _ = msg.ack_with(AckKind::Progress).await;
    };
    let settled = process::settle(&deps, &mut pending, None, &mut stop, progress).await;
    if settled != Settled::Done {
        // its effect stays in the state; offered again it may count twice (a dedupe step
        // before the window takes the repeat out)
        let _ = msg.ack_with(AckKind::Nak(None)).await;
        return Finished {
            handled: vec![seq],
            park: None,
            release,
            published: false,
        };
    }
    Finished {
        handled: Vec::new(),
        park: Some(Parked {
            routed_at,
            seq,
            msg,
        }),
        release,
        published: true,
    }
}

/// Settles what a tick emitted; `release` goes back to the loop with whether it all went
/// out.
pub async fn finish_tick(
    deps: TaskDeps,
    pendings: Vec<Pending>,
    release: Vec<Parked>,
    mut stop: watch::Receiver<bool>,
) -> Finished {
    let mut published = true;
    for mut pending in pendings {
        let settled = process::settle(&deps, &mut pending, None, &mut stop, || async {}).await;
        published &= settled == Settled::Done;
    }
    Finished {
        handled: Vec::new(),
        park: None,
        release,
        published,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_due_a_third_of_ack_wait_on() {
        let held = Held::new(Duration::from_secs(30));
        let due = held.progress_due();
        let now = tokio::time::Instant::now();
        assert!(due > now + Duration::from_secs(9) && due <= now + Duration::from_secs(10));
        assert!(held.is_empty());
        assert_eq!(
            Held::new(Duration::from_millis(300)).progress_every,
            Duration::from_secs(1)
        );
    }
}
