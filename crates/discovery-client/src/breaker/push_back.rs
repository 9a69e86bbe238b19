//! [`PushBack`]: until when an instance that pushed back is left alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long an instance is avoided for when it pushed back without saying how long (a 429
/// without `Retry-After`).
pub(crate) const UNSAID_WAIT: Duration = Duration::from_secs(1);

/// The longest an instance is avoided for by default, whatever its `Retry-After` says.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

/// Until when an instance that pushed back (a 429, or a 503 with `Retry-After`: see
/// [`Outcome::Overloaded`](crate::classify::Outcome::Overloaded)) is avoided. Kept by
/// address with the instance's breaker, so it outlives a discovery refresh.
///
/// One atomic word, nanoseconds from `base` (0: never avoided), so a call's pick reads it
/// with one load per candidate and no lock.
#[derive(Debug)]
pub(crate) struct PushBack {
    /// The instant `until` counts from.
    base: Instant,
    /// Nanoseconds from `base` until which the instance is avoided; 0 if it never was.
    until: AtomicU64,
    /// The longest the instance is avoided for, whatever it asked.
    max: Duration,
}

impl PushBack {
    /// An instance not avoided, which will be avoided at most `max` at a time.
    pub(crate) fn new(max: Duration) -> Self {
        Self {
            base: Instant::now(),
            until: AtomicU64::new(0),
            max,
        }
    }

    /// Avoids the instance from `now` for what it `asked` (its `Retry-After`), at most the
    /// maximum, or [`UNSAID_WAIT`] if it did not say; a longer avoidance already set stands.
    /// Returns the wait.
    pub(crate) fn push_back(&self, now: Instant, asked: Option<Duration>) -> Duration {
        let wait = asked.unwrap_or(UNSAID_WAIT).min(self.max);
        if !wait.is_zero() {
            let until = (now + wait).saturating_duration_since(self.base).as_nanos();
            let until = u64::try_from(until).unwrap_or(u64::MAX);
            self.until.fetch_max(until, Ordering::Relaxed);
        }
        wait
    }

    /// How much longer the instance is avoided at `now`; `None` if it is not.
    #[inline]
    pub(crate) fn remaining(&self, now: Instant) -> Option<Duration> {
        let until = self.until.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        let left = (self.base + Duration::from_nanos(until)).saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn avoided_for_what_was_asked_capped_or_a_second_if_unsaid() {
        let push_back = PushBack::new(Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(push_back.remaining(now), None);
        let asked = push_back.push_back(now, Some(Duration::from_secs(2)));
        assert_eq!(asked, Duration::from_secs(2));
        assert_eq!(push_back.remaining(now), Some(Duration::from_secs(2)));
        let later = now + Duration::from_millis(1500);
        assert_eq!(push_back.remaining(later), Some(Duration::from_millis(500)));
        assert_eq!(push_back.remaining(now + Duration::from_secs(2)), None);
        // A shorter ask does not cut a longer avoidance short.
        push_back.push_back(now, Some(Duration::from_secs(1)));
        assert_eq!(push_back.remaining(now), Some(Duration::from_secs(2)));
        let capped = push_back.push_back(now, Some(Duration::from_secs(3600)));
        assert_eq!(capped, Duration::from_secs(10));
        assert_eq!(push_back.remaining(now), Some(Duration::from_secs(10)));
        let fresh = PushBack::new(MAX_WAIT);
        assert_eq!(fresh.push_back(now, None), UNSAID_WAIT);
        assert_eq!(fresh.remaining(now), Some(UNSAID_WAIT));
        let zero = PushBack::new(MAX_WAIT);
        assert_eq!(zero.push_back(now, Some(Duration::ZERO)), Duration::ZERO);
        assert_eq!(zero.remaining(now), None, "it asked for no wait");
    }
}
