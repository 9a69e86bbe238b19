//! When a closed breaker opens: the failure policies.

use std::time::Duration;

/// What opens a closed [`Breaker`](super::Breaker). Retesting, the single probe and closing
/// work the same under every policy.
///
/// - [`ConsecutiveFailures(n)`](FailurePolicy::ConsecutiveFailures) (the default, with
///   `n = 1`): `n` failures in a row; a success resets the count. Quick to react to an
///   instance that is down, but an instance that fails some of its calls and never `n` in a
///   row is never kept out (with `n = 1` it is kept out after each failure and let back by
///   the next probe, over and over).
/// - [`FailureRate`]: the share of failures among the outcomes of a sliding time window.
///   An instance failing a third of its calls is kept out once the window has seen enough
///   of them, and the window starts empty each time the breaker closes.
///
/// ```
/// use std::time::Duration;
/// use discovery_client::breaker::{BreakerConfig, FailurePolicy, FailureRate};
///
/// // Open when at least half of the last 10 s of calls failed, once 20 were seen.
/// let config = BreakerConfig {
///     policy: FailurePolicy::FailureRate(FailureRate {
///         ratio: 0.5,
///         min_requests: 20,
///         window: Duration::from_secs(10),
///     }),
///     ..BreakerConfig::default()
/// };
/// assert_eq!(BreakerConfig::default().policy, FailurePolicy::ConsecutiveFailures(1));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FailurePolicy {
    /// Opens after this many failures in a row (at least 1); a success resets the count.
    ConsecutiveFailures(u32),
    /// Opens when the share of failures over a sliding window reaches a ratio.
    FailureRate(FailureRate),
}

impl Default for FailurePolicy {
    /// One failure opens the breaker.
    fn default() -> Self {
        FailurePolicy::ConsecutiveFailures(1)
    }
}

impl From<FailureRate> for FailurePolicy {
    fn from(rate: FailureRate) -> Self {
        FailurePolicy::FailureRate(rate)
    }
}

/// Open a closed breaker when, among the outcomes recorded over the last `window`, there
/// are at least `min_requests` and the failures are at least `ratio` of them.
///
/// The window is a ring of ten buckets, each a tenth of `window` long: an outcome counts
/// from when it is recorded until its bucket leaves the ring, which is between nine tenths
/// of `window` and `window` later. The rule is checked at every outcome recorded, a success
/// included (the `min_requests`-th outcome can open the breaker whatever it was). Outcomes
/// recorded as neither (an attempt dropped unrecorded) do not count.
///
/// ```
/// use std::time::Duration;
/// use discovery_client::breaker::FailureRate;
///
/// let rate = FailureRate { ratio: 0.25, min_requests: 10, window: Duration::from_secs(10) };
/// # let _ = rate;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureRate {
    /// The share of failures that opens the breaker, in `(0.0, 1.0]`.
    pub ratio: f64,
    /// Outcomes the window must hold before the ratio is judged (at least 1), so that one
    /// failure among the first few calls does not open it.
    pub min_requests: u32,
    /// How far back outcomes count (greater than zero).
    pub window: Duration,
}

impl FailureRate {
    /// Whether `failures` out of `total` outcomes open the breaker.
    pub(crate) fn trips(&self, total: u32, failures: u32) -> bool {
        // `failures / total` and `ratio` are both the nearest f64 to their real value, so an
        // exact ratio (3 of 10 against 0.3) compares equal.
        total >= self.min_requests && f64::from(failures) / f64::from(total) >= self.ratio
    }
}

impl FailurePolicy {
    /// Checks the settings, naming the first bad one.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            FailurePolicy::ConsecutiveFailures(0) => {
                Err("failure_limit (consecutive failures) must be at least 1".into())
            }
            FailurePolicy::ConsecutiveFailures(_) => Ok(()),
            FailurePolicy::FailureRate(rate) => {
                if !(rate.ratio > 0.0 && rate.ratio <= 1.0) {
                    return Err(format!(
                        "failure rate ratio must be in (0.0, 1.0], got {}",
                        rate.ratio
                    ));
                }
                if rate.min_requests == 0 {
                    return Err("failure rate min_requests must be at least 1".into());
                }
                if rate.window.is_zero() {
                    return Err("failure rate window must be greater than zero".into());
                }
                Ok(())
            }
        }
    }
}
