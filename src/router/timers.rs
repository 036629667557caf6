//! The clock of a route's stateful steps: when the route's task should wake up to let go
//! of what its steps hold (a conflated message at the end of its interval, a closed
//! window) without a new input arriving. The source loop waits on [`wait`] beside its
//! messages and then calls [`Processor::tick`](super::process::Processor::tick); what the
//! tick emits is settled like any output.
//!
//! Due times are routing-clock epoch milliseconds (the steps' time); a tick never runs
//! closer than [`MIN_TICK`] to the previous one, so many keys due at nearly the same time
//! are let go of together rather than one wake-up each.

use std::time::Duration;

use tokio::time::Instant;

use super::process::now_ms;

/// The shortest pause between two ticks of a route.
pub const MIN_TICK: Duration = Duration::from_millis(5);

/// The instant to wake up at for a due time (epoch ms), not before `not_before`.
pub fn deadline(due_ms: Option<i64>, not_before: Instant) -> Option<Instant> {
    let due = due_ms?;
    let wait = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
    Some((Instant::now() + Duration::from_millis(wait)).max(not_before))
}

/// Waits until `deadline`; without one, forever (the branch never fires).
pub async fn wait(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
        // a due time is waited for
        let soon = deadline(Some(now_ms() + 20), Instant::now());
        let started = Instant::now();
        wait(soon).await;
        assert!(started.elapsed() >= Duration::from_millis(15));
    }
}
