//! What a closed breaker counts to decide when to open, for each [`FailurePolicy`].

use std::time::Duration;

use tokio::time::Instant;

use super::{FailurePolicy, FailureRate};

/// The buckets of a failure-rate window.
const BUCKETS: usize = 10;

/// The count a closed breaker keeps: made fresh each time the breaker closes.
#[derive(Debug)]
pub(super) enum Tally {
    /// Failures in a row, against the limit.
    Consecutive { failures: u32, limit: u32 },
    /// Outcomes over a sliding window (boxed: a closed breaker under the default policy
    /// stays small), against the rate.
    Rate {
        rate: FailureRate,
        window: Box<Window>,
    },
}

impl Tally {
    /// An empty count for `policy`, its window starting at `now`.
    pub(super) fn new(policy: &FailurePolicy, now: Instant) -> Self {
        match *policy {
            FailurePolicy::ConsecutiveFailures(limit) => Tally::Consecutive { failures: 0, limit },
            FailurePolicy::FailureRate(rate) => Tally::Rate {
                rate,
                window: Box::new(Window::new(rate.window, now)),
            },
        }
    }

    /// Whether recording a success would change nothing: no failure counted in a row. The
    /// breaker then lets successes through without its lock.
    pub(super) fn is_quiet(&self) -> bool {
        matches!(self, Tally::Consecutive { failures: 0, .. })
    }

    /// Counts one outcome at `now`; whether the breaker must open.
    pub(super) fn record(&mut self, failed: bool, now: Instant) -> bool {
        match self {
            Tally::Consecutive { failures, limit } => {
                *failures = if failed {
                    failures.saturating_add(1)
                } else {
                    0
                };
                *failures >= *limit
            }
            Tally::Rate { rate, window } => {
                let (total, failures) = window.record(failed, now);
                rate.trips(total, failures)
            }
        }
    }
}

/// A sliding window of outcomes: a ring of [`BUCKETS`] buckets of a tenth of the window
/// each, numbered from when the window started. The count is cheap (ten additions) and
/// the memory fixed, at the price of outcomes leaving the window one bucket at a time.
#[derive(Debug)]
pub(super) struct Window {
    /// When bucket 0 began.
    origin: Instant,
    /// How long each bucket lasts, in nanoseconds (at least 1).
    bucket_nanos: u128,
    buckets: [Bucket; BUCKETS],
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The bucket's number since the window's origin: the ring's slot holds the latest.
    number: u64,
    successes: u32,
    failures: u32,
}

impl Window {
    fn new(window: Duration, now: Instant) -> Self {
        Self {
            origin: now,
            bucket_nanos: (window.as_nanos() / BUCKETS as u128).max(1),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    /// Counts one outcome at `now`; the outcomes and failures the window then holds.
    fn record(&mut self, failed: bool, now: Instant) -> (u32, u32) {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        let current = u64::try_from(elapsed / self.bucket_nanos).unwrap_or(u64::MAX);
        let bucket = &mut self.buckets[(current % BUCKETS as u64) as usize];
        if bucket.number != current {
            *bucket = Bucket {
                number: current,
                ..Bucket::default()
            };
        }
        if failed {
            bucket.failures = bucket.failures.saturating_add(1);
        } else {
            bucket.successes = bucket.successes.saturating_add(1);
        }
        // A bucket counts while it is one of the last BUCKETS (one recorded a moment
        // later by another thread, numbered after `current`, counts too).
        self.buckets
            .iter()
            .filter(|b| current.saturating_sub(b.number) < BUCKETS as u64)
            .fold((0u32, 0u32), |(total, failures), b| {
                (
                    total.saturating_add(b.successes).saturating_add(b.failures),
                    failures.saturating_add(b.failures),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: FailureRate = FailureRate {
        ratio: 0.5,
        min_requests: 4,
        window: Duration::from_secs(10),
    };

    #[test]
    fn outcomes_leave_the_window_a_bucket_at_a_time() {
        let start = Instant::now();
        let mut window = Window::new(RATE.window, start);
        assert_eq!(window.record(true, start), (1, 1));
        let ms = |n| Duration::from_millis(n);
        assert_eq!(window.record(false, start + ms(999)), (2, 1));
        assert_eq!(window.record(false, start + ms(1_000)), (3, 1));
        // Bucket 0 (0..1 s) counts until 10 s, bucket 1 until 11 s.
        assert_eq!(window.record(false, start + ms(9_999)), (4, 1));
        assert_eq!(window.record(false, start + ms(10_000)), (3, 0));
        assert_eq!(window.record(false, start + ms(11_000)), (3, 0));
        // Long after: only the new outcome.
        assert_eq!(window.record(true, start + ms(60_000)), (1, 1));
    }

    #[test]
    fn a_tiny_window_still_has_buckets() {
        let start = Instant::now();
        let mut window = Window::new(Duration::from_nanos(3), start);
        assert_eq!(window.record(true, start), (1, 1));
        assert_eq!(window.record(true, start + Duration::from_secs(1)), (1, 1));
    }

    #[test]
    fn consecutive_resets_on_a_success() {
        let now = Instant::now();
        let mut tally = Tally::new(&FailurePolicy::ConsecutiveFailures(2), now);
        assert!(tally.is_quiet());
        assert!(!tally.record(true, now));
        assert!(!tally.is_quiet());
        assert!(!tally.record(false, now));
        assert!(tally.is_quiet());
        assert!(!tally.record(true, now));
        assert!(tally.record(true, now));
    }

    #[test]
    fn a_rate_tally_is_never_quiet() {
        let tally = Tally::new(&FailurePolicy::FailureRate(RATE), Instant::now());
        assert!(!tally.is_quiet(), "every success must be counted");
    }
}
