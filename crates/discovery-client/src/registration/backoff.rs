//! Capped exponential backoff with subtractive jitter, for retrying an unreachable registry.

use std::time::Duration;

/// Delays that double from `min` up to `max`, each shortened by up to `jitter` (a
/// fraction) so that many instances reconnecting after a registry restart spread out.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// The first delay, and the one after a [`reset`](Self::reset).
    min: Duration,
    /// The ceiling: an outage of any length is retried at least this often.
    max: Duration,
    /// Fraction in `0.0..=1.0` by which a delay may be shortened at random.
    jitter: f64,
    /// The delay the next call to [`next_delay`](Self::next_delay) is based on.
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `min`, capped at `max`.
    pub(crate) fn new(min: Duration, max: Duration, jitter: f64) -> Self {
        let max = max.max(min);
        Self {
            min,
            max,
            jitter: jitter.clamp(0.0, 1.0),
            current: min,
        }
    }

    /// The delay before the next attempt; doubles the following one, up to `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = base.saturating_mul(2).min(self.max);
        if self.jitter > 0.0 {
            base.mul_f64(1.0 - self.jitter * rand::random::<f64>())
        } else {
            base
        }
    }

    /// Starts again from `min` (after a success).
    pub(crate) fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(100 * MS, 1000 * MS, 0.0);
        let delays: Vec<_> = (0..6).map(|_| backoff.next_delay()).collect();
        assert_eq!(
            delays,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), 100 * MS);
    }

    #[test]
    fn jitter_only_shortens() {
        let mut backoff = Backoff::new(100 * MS, 100 * MS, 0.5);
        for _ in 0..100 {
            let delay = backoff.next_delay();
            assert!(delay >= 50 * MS && delay <= 100 * MS, "{delay:?}");
        }
    }
}
