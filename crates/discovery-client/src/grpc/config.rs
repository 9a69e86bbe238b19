//! [`GrpcConfig`]: how a [`GrpcChannel`](super::GrpcChannel) times, judges and picks.

use std::time::Duration;

use crate::breaker::{BreakerConfig, FailurePolicy};
use crate::events::EventBus;
use crate::transport::TlsConfig;
use crate::{Balance, Hedging};

/// How a [`GrpcChannel`](super::GrpcChannel) calls a service's instances: the per-attempt
/// timeout, the breakers' policy, the picking rule and where events go. The defaults are
/// the library's: 1 s, one failure opens, 30 s before a retest, latency-aware picking.
///
/// Calls are sent once unless their method is marked idempotent with
/// [`idempotent`](GrpcConfig::idempotent): those are retried on another instance after an
/// instance failure and hedged when slow, as the [module docs](super) say, at most
/// [`max_retries`](GrpcConfig::max_retries) times (default 2), within the
/// [`retry_budget`](GrpcConfig::retry_budget) (default 20 % of calls, plus 10 a second),
/// hedging by [`hedging`](GrpcConfig::hedging) (default [`Hedging::Adaptive`], at least
/// 50 ms).
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
///     .balance(Balance::RoundRobin)
///     .idempotent("/ratings.v1.Ratings/GetRating");
/// assert_eq!(config.attempt_timeout(), Duration::from_millis(500));
/// assert!(config.is_idempotent("/ratings.v1.Ratings/GetRating"));
/// assert!(!config.is_idempotent("/ratings.v1.Ratings/WatchRatings"));
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
    /// The paths (`/package.Service/Method`) of the methods whose calls may be sent again.
    pub(crate) idempotent: Vec<String>,
    /// Retries (and hedges) allowed after a call's first attempt.
    pub(crate) max_retries: u32,
    /// Retries allowed per call, over the budget's window (0.2: one per five calls).
    pub(crate) retry_budget: f32,
    /// Retries always allowed per second of the budget's window.
    pub(crate) min_retries_per_sec: u32,
    /// When a slow attempt of an idempotent call is hedged.
    pub(crate) hedging: Hedging,
    /// Whom `https://` instances are trusted as (the system's roots by default).
    pub(crate) tls: TlsConfig,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            breaker: BreakerConfig::default(),
            balance: Balance::default(),
            events: None,
            idempotent: Vec::new(),
            max_retries: 2,
            retry_budget: 0.2,
            min_retries_per_sec: 10,
            hedging: Hedging::default(),
            tls: TlsConfig::default(),
        }
    }
}

impl GrpcConfig {
    /// The roots (and client certificate) for `https://` instances, which are called over
    /// TLS with ALPN `h2`; certificates are checked against the address's host, or the
    /// instance's [`TLS_SERVER_NAME`](crate::TLS_SERVER_NAME) metadata. By default the
    /// system's roots. `http://` instances are called over HTTP/2 with prior knowledge.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

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

    /// Marks the method at `path` (`/package.Service/Method`, as in
    /// `/ratings.v1.Ratings/GetRating`) idempotent: sending a call twice does no harm, so
    /// its calls may be retried and hedged. Only unary methods should be marked: a call's
    /// request is buffered to be sent again, and one larger than 64 KiB, or that is a
    /// stream, is sent once.
    pub fn idempotent(mut self, path: impl Into<String>) -> Self {
        self.idempotent.push(path.into());
        self
    }

    /// Whether calls of the method at `path` may be retried and hedged.
    pub fn is_idempotent(&self, path: &str) -> bool {
        self.idempotent.iter().any(|p| p == path)
    }

    /// Retries and hedges allowed after an idempotent call's first attempt (default 2).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Retries (and hedges) allowed as a share of calls (default 0.2), over a 10 s window,
    /// plus [`min_retries_per_sec`](Self::min_retries_per_sec): see
    /// [`RetryBudget`](crate::budget::RetryBudget).
    pub fn retry_budget(mut self, fraction: f32) -> Self {
        self.retry_budget = fraction;
        self
    }

    /// Retries always allowed per second of the budget's 10 s window, whatever the share
    /// of calls (default 10), so that a channel making few calls can still retry.
    pub fn min_retries_per_sec(mut self, retries: u32) -> Self {
        self.min_retries_per_sec = retries;
        self
    }

    /// When a slow attempt of an idempotent call gets a hedge on another instance (default
    /// [`Hedging::Adaptive`] with at least 50 ms; [`Hedging::Off`]: never).
    pub fn hedging(mut self, hedging: Hedging) -> Self {
        self.hedging = hedging;
        self
    }
}
