//! [`InstanceStats`]: what the library counts of one instance's attempts, for
//! [`InstanceStatus`](crate::InstanceStatus).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// How many of the latest attempts the recent latency is taken over.
pub(crate) const RECENT: usize = 128;

/// One instance's attempts: how many there were, how many failed, and the durations of the
/// latest [`RECENT`], from which [`recent_latency`](InstanceStats::recent_latency) gives the
/// median and the 99th percentile.
///
/// Kept by address together with the instance's breaker, so the figures survive discovery
/// reporting the instance again. No lock: each attempt adds to the counters and writes its
/// duration (in microseconds, at most about 71 minutes) into the next slot of a ring; a
/// reader copies the ring. A reading taken while attempts are being recorded may mix a slot
/// or two of different moments, which only the figures of that moment notice.
#[derive(Debug)]
pub(crate) struct InstanceStats {
    /// Attempts judged: also the next slot of `recent`, modulo its length.
    attempts: AtomicU64,
    /// Attempts judged to be the instance's failure.
    failures: AtomicU64,
    /// Durations of the latest attempts, in microseconds.
    recent: [AtomicU32; RECENT],
}

impl Default for InstanceStats {
    fn default() -> Self {
        Self {
            attempts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            recent: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl InstanceStats {
    /// Counts one judged attempt that took `elapsed`.
    #[inline]
    pub(crate) fn record(&self, failed: bool, elapsed: Duration) {
        let n = self.attempts.fetch_add(1, Ordering::Relaxed);
        let micros = u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX);
        // In range: the remainder of a division by the ring's length.
        self.recent[(n % RECENT as u64) as usize].store(micros, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Attempts judged so far.
    pub(crate) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Attempts that were the instance's failure.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The median and the 99th percentile of the latest attempts' durations (nearest rank),
    /// or `None` before the first attempt.
    pub(crate) fn recent_latency(&self) -> Option<(Duration, Duration)> {
        let n = usize::try_from(self.attempts())
            .unwrap_or(usize::MAX)
            .min(RECENT);
        if n == 0 {
            return None;
        }
        let mut samples: Vec<u32> = self.recent[..n]
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .collect();
        samples.sort_unstable();
        let rank = |q: usize| samples[(n * q).div_ceil(100).clamp(1, n) - 1];
        let micros = |v: u32| Duration::from_micros(u64::from(v));
        Some((micros(rank(50)), micros(rank(99))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_attempts_and_failures_and_takes_percentiles_by_rank() {
        let stats = InstanceStats::default();
        assert_eq!(stats.recent_latency(), None);
        for ms in 1..=100 {
            stats.record(ms % 10 == 0, Duration::from_millis(ms));
        }
        assert_eq!((stats.attempts(), stats.failures()), (100, 10));
        let (p50, p99) = stats.recent_latency().expect("samples");
        assert_eq!(p50, Duration::from_millis(50));
        assert_eq!(p99, Duration::from_millis(99));
    }

    #[test]
    fn only_the_latest_attempts_count_toward_the_latency() {
        let stats = InstanceStats::default();
        for _ in 0..RECENT {
            stats.record(false, Duration::from_secs(1));
        }
        for _ in 0..RECENT {
            stats.record(false, Duration::from_millis(2));
        }
        assert_eq!(
            stats.recent_latency(),
            Some((Duration::from_millis(2), Duration::from_millis(2)))
        );
        assert_eq!(stats.attempts(), 2 * RECENT as u64);
        // Two slow attempts among the latest 128 (more than 1 %): the p99 sees them, the
        // median does not.
        stats.record(false, Duration::from_secs(3));
        stats.record(false, Duration::from_secs(3));
        let (p50, p99) = stats.recent_latency().expect("samples");
        assert_eq!(p50, Duration::from_millis(2));
        assert_eq!(p99, Duration::from_secs(3));
    }
}
