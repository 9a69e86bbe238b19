//! [`GrpcConfig`]: how a [`GrpcChannel`](super::GrpcChannel) times, judges and picks.

use std::time::Duration;

use crate::Balance;
use crate::breaker::{BreakerConfig, FailurePolicy};
use crate::events::EventBus;

/// How a [`GrpcChannel`](super::GrpcChannel) calls a service's instances: the per-attempt
/// timeout, the breakers' policy, the picking rule and where events go. The defaults are
/// the library's: 1 s, one failure opens, 30 s before a retest, latency-aware picking.
///
/// ```
/// use std::time::Duration;
/// use discovery_client::grpc::GrpcConfig;
/// use discovery_client::Balance;
///
/// let config = GrpcConfig::default()
///     .timeout(Duration::from_millis(500))
///     .failure_limit(2)
///     .retest_delay(Duration::from_secs(10))
///     .balance(Balance::RoundRobin);
/// assert_eq!(config.attempt_timeout(), Duration::from_millis(500));
/// ```
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// The time an instance has to answer a call's head.
    pub(crate) timeout: Duration,
    /// When a breaker opens and retests.
    pub(crate) breaker: BreakerConfig,
    /// How an instance is chosen.
    pub(crate) balance: Balance,
    /// Where breaker, discovery and "all down" events go, if anywhere.
    pub(crate) events: Option<EventBus>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            breaker: BreakerConfig::default(),
            balance: Balance::default(),
            events: None,
        }
    }
}

impl GrpcConfig {
    /// The time an instance has to answer a call's head (its headers, or a trailers-only
    /// status); a stream's messages after it are not bounded. Default 1 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The per-attempt timeout set.
    pub fn attempt_timeout(&self) -> Duration {
        self.timeout
    }

    /// Opens an instance's breaker after this many failures in a row (default 1).
    pub fn failure_limit(mut self, limit: u32) -> Self {
        self.breaker.policy = FailurePolicy::ConsecutiveFailures(limit.max(1));
        self
    }

    /// How long an open breaker waits before it lets one probe through (default 30 s).
    pub fn retest_delay(mut self, delay: Duration) -> Self {
        self.breaker.retest_delay = delay;
        self
    }

    /// The whole breaker configuration (policy, retest delay, jitter, backoff).
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// How an instance is chosen (default [`Balance::LatencyAware`]).
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// Publishes breaker transitions, discovery changes and "all services are down" to
    /// `events`.
    pub fn events(mut self, events: EventBus) -> Self {
        self.events = Some(events);
        self
    }
}
