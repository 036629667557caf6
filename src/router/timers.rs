//! The clock of a route's stateful steps: when the route's task should wake up to let go
//! of what its steps hold (a conflated message at the end of its interval, a closed
//! window) without a new input arriving. The source loop waits on a timer beside its
//! messages ([`Timer`]) and then calls [`Processor::tick`](super::process::Processor::tick); what the
//! tick emits is settled like any output.
//!
//! Due times are routing-clock epoch milliseconds (the steps' time); a tick never runs
//! closer than [`MIN_TICK`] to the previous one, so many keys due at nearly the same time
//! are let go of together rather than one wake-up each.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::process::now_ms;

/// The shortest pause between two ticks of a route.
pub const MIN_TICK: Duration = Duration::from_millis(5);

/// The instant to wake up at for a due time (epoch ms), not before `not_before`.
pub fn deadline(due_ms: Option<i64>, not_before: Instant) -> Option<Instant> {
    let due = due_ms?;
    let wait = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
    Some((Instant::now() + Duration::from_millis(wait)).max(not_before))
}

/// A route task's wake-up: one timer, moved only when the due time changes (not re-made
/// for every message).
pub struct Timer {
    sleep: Pin<Box<Sleep>>,
    armed_ms: Option<i64>,
    last_tick: Instant,
}

impl Default for Timer {
    fn default() -> Self {
        Timer::new()
    }
}

impl Timer {
    pub fn new() -> Timer {
        let now = Instant::now();
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(now)),
            armed_ms: None,
            last_tick: now - MIN_TICK,
        }
    }

    /// Wakes up at `due_ms` (epoch ms), or never with `None`.
    pub fn arm(&mut self, due_ms: Option<i64>) {
        if due_ms == self.armed_ms {
            return;
        }
        self.armed_ms = due_ms;
        if let Some(at) = deadline(due_ms, self.last_tick + MIN_TICK) {
            self.sleep.as_mut().reset(at);
        }
    }

    pub fn is_armed(&self) -> bool {
        self.armed_ms.is_some()
    }

    /// Completes at the armed time (call only while [`Timer::is_armed`]); the timer is
    /// then disarmed until the next [`Timer::arm`].
    pub async fn fired(&mut self) {
        self.sleep.as_mut().await;
        self.armed_ms = None;
        self.last_tick = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deadlines_follow_the_due_time_and_the_pause() {
        let now = Instant::now();
        assert_eq!(deadline(None, now), None);
        let past = deadline(Some(now_ms() - 1_000), now + MIN_TICK).unwrap();
        assert!(past >= now + MIN_TICK);
        let later = deadline(Some(now_ms() + 10_000), now).unwrap();
        assert!(later >= now + Duration::from_millis(9_000));
    }

    #[tokio::test]
    async fn a_timer_fires_at_its_due_time_and_moves_only_when_it_changes() {
        let mut timer = Timer::new();
        assert!(!timer.is_armed());
        let started = Instant::now();
        timer.arm(Some(now_ms() + 30));
        assert!(timer.is_armed());
        timer.fired().await;
        assert!(started.elapsed() >= Duration::from_millis(25));
        assert!(!timer.is_armed());
        // a due time already passed fires no sooner than MIN_TICK after the last tick
        let again = Instant::now();
        timer.arm(Some(now_ms() - 1_000));
        timer.fired().await;
        assert!(again.elapsed() >= MIN_TICK - Duration::from_millis(1));
    }
}
