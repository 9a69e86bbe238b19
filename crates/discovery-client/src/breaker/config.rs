//! Breaker settings.

use std::time::Duration;

use super::FailurePolicy;

/// How a [`Breaker`](super::Breaker) opens and when it retests.
///
/// ```
/// use std::time::Duration;
/// use discovery_client::breaker::{BreakerConfig, FailurePolicy};
///
/// let config = BreakerConfig {
///     policy: FailurePolicy::ConsecutiveFailures(3),
///     retest_delay: Duration::from_secs(10),
///     jitter: 0.2,
///     backoff_multiplier: 2.0,
///     max_retest_delay: Duration::from_secs(120),
/// };
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// What opens the breaker (default: one failure,
    /// [`FailurePolicy::ConsecutiveFailures(1)`](FailurePolicy::ConsecutiveFailures)).
    pub policy: FailurePolicy,
    /// How long an open breaker waits before granting a probe its permit.
    pub retest_delay: Duration,
    /// Spread of the retest delay, as a fraction in `0.0..=1.0`: the delay is drawn uniformly
    /// from `delay * (1 - jitter) ..= delay * (1 + jitter)`, so instances that failed together
    /// are not all retested at the same moment.
    pub jitter: f64,
    /// Each time a probe fails, the next retest delay is multiplied by this (at least 1.0).
    pub backoff_multiplier: f64,
    /// Upper bound for the retest delay once backoff has grown it.
    pub max_retest_delay: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            policy: FailurePolicy::default(),
            retest_delay: Duration::from_secs(30),
            jitter: 0.0,
            backoff_multiplier: 1.0,
            max_retest_delay: Duration::from_secs(300),
        }
    }
}

impl BreakerConfig {
    /// The delay before the `reopen_count`-th consecutive retest (0 for the first opening),
    /// with backoff applied and capped, before jitter.
    pub(crate) fn base_delay(&self, reopen_count: u32) -> Duration {
        let factor = self.backoff_multiplier.powi(reopen_count.min(64) as i32);
        let secs = self.retest_delay.as_secs_f64() * factor;
        let cap = self.max_retest_delay.max(self.retest_delay).as_secs_f64();
        Duration::from_secs_f64(secs.min(cap))
    }

    /// Applies jitter to `delay`, given a uniform sample `unit` in `0.0..1.0`.
    pub(crate) fn jittered(&self, delay: Duration, unit: f64) -> Duration {
        if self.jitter <= 0.0 {
            return delay;
        }
        let spread = (unit * 2.0 - 1.0) * self.jitter;
        Duration::from_secs_f64((delay.as_secs_f64() * (1.0 + spread)).max(0.0))
    }

    /// Checks the settings, naming the first bad one.
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.policy.validate()?;
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "retest jitter must be in 0.0..=1.0, got {}",
                self.jitter
            ));
        }
        if !self.backoff_multiplier.is_finite() || self.backoff_multiplier < 1.0 {
            return Err(format!(
                "retest backoff multiplier must be at least 1.0, got {}",
                self.backoff_multiplier
            ));
        }
        Ok(())
    }
}
