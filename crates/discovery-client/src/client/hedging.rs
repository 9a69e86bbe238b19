//! [`Hedging`]: when a [`ServiceClient`](super::ServiceClient) sends a hedge, and the running
//! latency estimate behind the adaptive default.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// When an idempotent attempt that has not answered gets a hedge: one more attempt on
/// another instance, the first answer that did not fail winning (see
/// [`ServiceClientBuilder::hedging`](super::ServiceClientBuilder::hedging)).
///
/// ```
/// use std::time::Duration;
/// use discovery_client::Hedging;
///
/// // The default: hedge after twice the service's recent p99, and never before 50 ms.
/// assert_eq!(
///     Hedging::default(),
///     Hedging::Adaptive { min_delay: Duration::from_millis(50) }
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hedging {
    /// Never hedge: an attempt that does not answer is waited for until its timeout.
    Off,
    /// Hedge an attempt that has not answered after this fixed delay.
    After(Duration),
    /// Hedge an attempt that has not answered after twice the service's recent p99 attempt
    /// latency, and never before `min_delay`. The p99 is estimated from the attempts that
    /// answered (a streaming quantile estimate: one atomic word, written by about 2 % of
    /// calls); timeouts and other failures do not count, so a paused instance does not
    /// teach the client to wait longer. The estimate rises within tens of calls when the
    /// service slows down and falls over thousands when it speeds up, so a service whose
    /// normal answers are slow is not hedged on every call. The default, with
    /// `min_delay` 50 ms.
    Adaptive {
        /// The shortest delay, whatever the estimate says: below it, ordinary jitter
        /// (a scheduler hiccup, a collection pause) would be hedged.
        min_delay: Duration,
    },
}

impl Default for Hedging {
    fn default() -> Self {
        Hedging::Adaptive {
            min_delay: Duration::from_millis(50),
        }
    }
}

impl Hedging {
    /// The delay to use for a call now, given the service's latency estimate; `None`: do
    /// not hedge.
    pub(crate) fn delay(self, latency: &LatencyEstimate) -> Option<Duration> {
        match self {
            Hedging::Off => None,
            Hedging::After(delay) => Some(delay),
            Hedging::Adaptive { min_delay } => Some(min_delay.max(latency.get().saturating_mul(2))),
        }
    }

    /// Whether the latency estimate is used (and so worth keeping up to date).
    pub(crate) fn is_adaptive(self) -> bool {
        matches!(self, Hedging::Adaptive { .. })
    }

    /// Checks the setting: a zero delay would hedge every call.
    pub(crate) fn validate(self) -> Result<(), String> {
        match self {
            Hedging::After(delay) | Hedging::Adaptive { min_delay: delay } if delay.is_zero() => {
                Err("hedge delay must be greater than zero".into())
            }
            _ => Ok(()),
        }
    }
}

/// One step of the estimate, as a fraction of it: 1/8, 12.5 %.
const STEP_SHIFT: u32 = 3;
/// One sample in this many below the estimate lowers it: the estimate settles where
/// 1 % of samples lie above it (p99).
const DOWN_ONE_IN: u32 = 100;

/// A running estimate of the p99 of attempt latency, in microseconds, kept in one atomic
/// word without a lock: the "frugal" streaming quantile estimate (Ma, Muthukrishnan and
/// Sandler, 2014) with multiplicative steps. A sample above the estimate raises it by one
/// step; a sample below lowers it by one step with probability 1/100; it settles where
/// those balance, with 1 % of samples above. A step never crosses the sample, and the first
/// sample is taken as it is. Concurrent updates may overwrite each other, which loses a step
/// and nothing else.
#[derive(Debug, Default)]
pub(crate) struct LatencyEstimate {
    micros: AtomicU64,
}

impl LatencyEstimate {
    /// The estimate now (zero before the first sample).
    pub(crate) fn get(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }

    /// Takes one answered attempt's latency into account.
    pub(crate) fn record(&self, latency: Duration) {
        self.record_with(latency, || rand::random_ratio(1, DOWN_ONE_IN));
    }

    /// [`record`](Self::record) with the coin that decides a step down.
    fn record_with(&self, latency: Duration, step_down: impl FnOnce() -> bool) {
        let sample = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let estimate = self.micros.load(Ordering::Relaxed);
        let step = (estimate >> STEP_SHIFT).max(1);
        let next = if estimate == 0 {
            // The first sample is the first estimate.
            sample.max(1)
        } else if sample > estimate {
            estimate.saturating_add(step).min(sample)
        } else if sample < estimate && step_down() {
            estimate.saturating_sub(step).max(sample)
        } else {
            return;
        };
        self.micros.store(next, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn feed(estimate: &LatencyEstimate, rng: &mut StdRng, samples: impl Iterator<Item = u64>) {
        for micros in samples {
            let coin = rng.random_ratio(1, DOWN_ONE_IN);
            estimate.record_with(Duration::from_micros(micros), || coin);
        }
    }

    #[test]
    fn settles_near_the_p99() {
        let mut rng = StdRng::seed_from_u64(7);
        let estimate = LatencyEstimate::default();
        // Uniform 1..=1000 µs: the p99 is 990 µs.
        let samples: Vec<u64> = (0..50_000).map(|_| rng.random_range(1..=1000)).collect();
        feed(&estimate, &mut rng, samples.into_iter());
        let p99 = estimate.get().as_micros();
        assert!((850..=1000).contains(&p99), "estimate {p99} µs");
    }

    #[test]
    fn follows_a_slowdown_within_tens_of_samples_and_a_speedup_slowly() {
        let mut rng = StdRng::seed_from_u64(11);
        let estimate = LatencyEstimate::default();
        feed(&estimate, &mut rng, std::iter::repeat_n(1_000, 2_000));
        assert_eq!(
            estimate.get(),
            Duration::from_millis(1),
            "never above the samples"
        );
        // The service slows to 50 ms: 12.5 % steps get there in about 34 samples.
        feed(&estimate, &mut rng, std::iter::repeat_n(50_000, 40));
        assert_eq!(estimate.get(), Duration::from_millis(50));
        // Back to 1 ms: 100 samples lower it by about one step, not to 1 ms.
        feed(&estimate, &mut rng, std::iter::repeat_n(1_000, 100));
        assert!(
            estimate.get() > Duration::from_millis(30),
            "{:?}",
            estimate.get()
        );
        // Thousands do.
        feed(&estimate, &mut rng, std::iter::repeat_n(1_000, 10_000));
        assert_eq!(estimate.get(), Duration::from_millis(1));
    }

    #[test]
    fn adaptive_delay_is_twice_the_estimate_but_never_below_the_minimum() {
        let estimate = LatencyEstimate::default();
        let adaptive = Hedging::Adaptive {
            min_delay: Duration::from_millis(50),
        };
        assert_eq!(adaptive.delay(&estimate), Some(Duration::from_millis(50)));
        // The first sample is the estimate.
        estimate.record_with(Duration::from_millis(20), || false);
        assert_eq!(adaptive.delay(&estimate), Some(Duration::from_millis(50)));
        estimate.micros.store(40_000, Ordering::Relaxed);
        assert_eq!(adaptive.delay(&estimate), Some(Duration::from_millis(80)));
        assert_eq!(Hedging::Off.delay(&estimate), None);
        assert_eq!(
            Hedging::After(Duration::from_millis(5)).delay(&estimate),
            Some(Duration::from_millis(5))
        );
    }

    #[test]
    fn zero_delays_are_refused() {
        assert!(Hedging::After(Duration::ZERO).validate().is_err());
        let zero = Hedging::Adaptive {
            min_delay: Duration::ZERO,
        };
        assert_eq!(
            zero.validate(),
            Err("hedge delay must be greater than zero".to_string())
        );
        assert_eq!(Hedging::Off.validate(), Ok(()));
        assert_eq!(Hedging::default().validate(), Ok(()));
    }
}
