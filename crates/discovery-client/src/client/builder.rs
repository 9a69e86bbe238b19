//! Building a [`ServiceClient`].

use std::sync::Arc;
use std::time::Duration;

use crate::balance::Balance;
use crate::breaker::{BreakerConfig, FailurePolicy, MAX_WAIT};
use crate::cache::CacheConfig;
use crate::classify::{Classify, DefaultClassifier};
use crate::discovery::Discovery;
use crate::transport::{BoxTransport, HttpClient, ServerNames, TlsConfig, Transport};
use crate::{Error, Hedging, ServiceClient};

/// Settings for a [`ServiceClient`]; made by [`ServiceClient::builder`].
///
/// Defaults follow the original contract: per-attempt timeout 1 s, failure limit 1, retest
/// delay 30 s; plus a fresh-cache TTL of 5 s, a stale fallback kept for an hour, up to 2
/// retries on other instances within a retry budget of 20 % of requests, no overall
/// deadline beyond what the timeouts and retries imply, round-robin that prefers
/// instances with fewer requests in flight, hedging after twice the service's recent p99
/// (at least 50 ms), and hyper's pooled client as the transport (`http://` and `https://`
/// with the system's roots, HTTP/2 when TLS negotiates it).
///
/// ```no_run
/// use std::time::Duration;
/// use discovery_client::{RegistryDiscovery, ServiceClient};
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(RegistryDiscovery::new("http://127.0.0.1:8500"))
///     .timeout(Duration::from_millis(500))
///     .failure_limit(2)
///     .retest_delay(Duration::from_secs(10))
///     .retest_jitter(0.2)
///     .max_retries(1)
///     .deadline(Duration::from_secs(2))
///     .cache_ttl(Duration::from_secs(5))
///     .build()?;
/// # let _ = ratings;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ServiceClientBuilder {
    pub(crate) service: String,
    pub(crate) discovery: Option<Arc<dyn Discovery>>,
    pub(crate) timeout: Duration,
    pub(crate) breaker: BreakerConfig,
    pub(crate) cache: CacheConfig,
    pub(crate) max_retries: u32,
    pub(crate) retry_percent: f32,
    pub(crate) retry_non_idempotent: bool,
    pub(crate) deadline: Option<Duration>,
    pub(crate) hedging: Hedging,
    pub(crate) classifier: Arc<dyn Classify>,
    pub(crate) transport: Option<BoxTransport>,
    /// The names certificates are checked against, when the transport is an [`HttpClient`].
    pub(crate) server_names: Option<ServerNames>,
    /// TLS settings for the default transport.
    pub(crate) tls: TlsConfig,
    /// Whether any TLS or HTTP/2 setting was made (they apply to the default transport only).
    pub(crate) transport_settings: bool,
    /// HTTP/2 without negotiation, for the default transport.
    pub(crate) http2_prior_knowledge: bool,
    /// The first setting that was refused (such as a PEM that does not parse), reported by
    /// `build`.
    pub(crate) refused: Option<String>,
    pub(crate) event_capacity: usize,
    pub(crate) balance: Balance,
    /// The window over which a new or recovered instance's share ramps up, if any.
    pub(crate) slow_start: Option<Duration>,
    /// The longest an instance that pushed back is avoided for.
    pub(crate) max_retry_after: Duration,
}

impl ServiceClientBuilder {
    pub(crate) fn new(service: String) -> Self {
        Self {
            service,
            discovery: None,
            timeout: Duration::from_secs(1),
            breaker: BreakerConfig::default(),
            cache: CacheConfig::default(),
            max_retries: 2,
            retry_percent: 0.2,
            retry_non_idempotent: false,
            deadline: None,
            hedging: Hedging::default(),
            classifier: Arc::new(DefaultClassifier),
            transport: None,
            server_names: None,
            tls: TlsConfig::new(),
            transport_settings: false,
            http2_prior_knowledge: false,
            refused: None,
            event_capacity: 1024,
            balance: Balance::default(),
            slow_start: None,
            max_retry_after: MAX_WAIT,
        }
    }

    /// Where instances come from: [`RegistryDiscovery`](crate::RegistryDiscovery),
    /// [`StaticDiscovery`](crate::StaticDiscovery) or your own [`Discovery`]. Required.
    pub fn discovery(mut self, discovery: impl Discovery) -> Self {
        self.discovery = Some(Arc::new(discovery));
        self
    }

    /// Per-attempt timeout, covering connect, send and reading the whole body (default 1 s).
    ///
    /// A timeout is the instance's failure only if the client was running for at least nine
    /// tenths of it: the client watches its own lateness, and a timeout while it was not
    /// scheduled (a container's CPU quota used up) opens no breaker; the call is retried as
    /// usual.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Consecutive failures that open an instance's breaker (default 1): short for
    /// [`failure_policy(FailurePolicy::ConsecutiveFailures(limit))`](Self::failure_policy).
    /// It replaces any policy set before, as `failure_policy` replaces it.
    pub fn failure_limit(self, limit: u32) -> Self {
        self.failure_policy(FailurePolicy::ConsecutiveFailures(limit))
    }

    /// What opens an instance's breaker (default: one failure,
    /// [`FailurePolicy::ConsecutiveFailures(1)`](FailurePolicy::ConsecutiveFailures)). The
    /// last of `failure_policy` and [`failure_limit`](Self::failure_limit) called wins.
    ///
    /// [`FailureRate`](crate::FailureRate) suits an instance that fails some of its calls but
    /// never many in a row: with consecutive failures it is either never kept out or let back
    /// in by every probe and kept out again at its next failure; with a failure rate it is
    /// kept out once its window shows the rate, and its window starts empty each time its
    /// probe closes the breaker.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use discovery_client::{FailureRate, RegistryDiscovery, ServiceClient};
    ///
    /// # async fn demo() -> Result<(), discovery_client::Error> {
    /// let ratings = ServiceClient::builder("ratings")
    ///     .discovery(RegistryDiscovery::new("http://127.0.0.1:8500"))
    ///     // Out when a quarter of the last 10 s of calls failed, once 20 were seen.
    ///     .failure_policy(FailureRate {
    ///         ratio: 0.25,
    ///         min_requests: 20,
    ///         window: Duration::from_secs(10),
    ///     })
    ///     .build()?;
    /// # let _ = ratings;
    /// # Ok(()) }
    /// ```
    pub fn failure_policy(mut self, policy: impl Into<FailurePolicy>) -> Self {
        self.breaker.policy = policy.into();
        self
    }

    /// How long an open breaker waits before granting one probe (default 30 s).
    pub fn retest_delay(mut self, delay: Duration) -> Self {
        self.breaker.retest_delay = delay;
        self
    }

    /// Randomises each retest delay by up to this fraction either way (default 0.0).
    pub fn retest_jitter(mut self, fraction: f64) -> Self {
        self.breaker.jitter = fraction;
        self
    }

    /// Multiplies the retest delay by `multiplier` after each failed probe, up to `max`
    /// (default: no backoff).
    pub fn retest_backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.breaker.backoff_multiplier = multiplier;
        self.breaker.max_retest_delay = max;
        self
    }

    /// How long a successful GET answer is served from the cache (default 5 s; zero turns
    /// the fresh cache off but keeps the stale fallback).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache.ttl = ttl;
        self
    }

    /// How long the last good answer is kept as a fallback for when upstream fails
    /// (default 1 h).
    pub fn stale_ttl(mut self, ttl: Duration) -> Self {
        self.cache.stale_ttl = ttl;
        self
    }

    /// Most entries kept in each cache (default 10 000).
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.cache.max_entries = entries;
        self
    }

    /// Retries on other instances after a failed attempt (default 2; 0 disables retries).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Retries allowed as a fraction of requests, over a 10 s window, on top of a floor of
    /// 10 retries per second (default 0.2): a sick service is not hammered.
    pub fn retry_budget(mut self, fraction: f32) -> Self {
        self.retry_percent = fraction;
        self
    }

    /// Also retry non-idempotent requests such as POST (default: off).
    pub fn retry_non_idempotent(mut self, yes: bool) -> Self {
        self.retry_non_idempotent = yes;
        self
    }

    /// An overall deadline for one call, across all its attempts (default: none).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Hedged requests (default: [`Hedging::Adaptive`], after twice the service's recent
    /// p99 attempt latency and never before 50 ms): when an attempt of an idempotent request
    /// (or any request, with [`retry_non_idempotent`](Self::retry_non_idempotent)) has not
    /// answered after the hedge delay, one more attempt goes to another instance and the
    /// first answer that did not fail is returned. [`Hedging::Off`] turns it off.
    ///
    /// It helps when an instance stops answering without failing (paused, stuck, partitioned
    /// without a reset): instead of waiting the whole per-attempt timeout, callers wait about
    /// the delay plus a healthy instance's answer time. The delay should be well above the
    /// usual answer time (several times the p99), so that healthy calls are almost never
    /// hedged: the adaptive default keeps it there by following the service's latency.
    ///
    /// Cost: at most one hedge per call, and only while the retry budget has room (a hedge
    /// is taken from it like a retry, and counts against [`max_retries`](Self::max_retries)),
    /// so a sick service gets at most the budget's share of extra requests. No hedge is sent
    /// when the overall [`deadline`](Self::deadline) would pass first.
    ///
    /// The attempt that loses the race is not cancelled: it runs to its own end (bounded by
    /// its per-attempt timeout) in a task of its own, keeps counting as in flight on its
    /// instance, and its outcome is recorded on the instance's breaker, so a paused
    /// instance's breaker still opens. That attempt is judged without the caller's body check
    /// (for [`get_json`](ServiceClient::get_json), whether the body decodes), since the caller
    /// has its answer already. Dropping the call drops both attempts, as without hedging.
    pub fn hedging(mut self, hedging: Hedging) -> Self {
        self.hedging = hedging;
        self
    }

    /// Hedge after this fixed delay instead of the adaptive default: short for
    /// [`hedging(Hedging::After(delay))`](Self::hedging).
    pub fn hedge_after(self, delay: Duration) -> Self {
        self.hedging(Hedging::After(delay))
    }

    /// The longest an instance that pushed back is left alone, whatever its `Retry-After`
    /// says (default 60 s).
    ///
    /// An instance that answers 429 Too Many Requests, or 503 with a `Retry-After`, is busy,
    /// not sick ([`Outcome::Overloaded`](crate::classify::Outcome::Overloaded)): no breaker
    /// counts it, calls pass it over for the time it asked (1 s for a 429 that does not
    /// say), and the call is tried on another instance like after a failure (if the request
    /// is retried at all, within the retry budget and `max_retries`). When every instance
    /// the call could use has pushed back, the call is [`Error::Overloaded`], carrying how
    /// long until one may be called again. Zero: instances are never avoided (a push-back
    /// still trips no breaker, and the call still goes elsewhere).
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// How attempts are judged (default [`DefaultClassifier`]).
    pub fn classifier(mut self, classifier: impl Classify) -> Self {
        self.classifier = Arc::new(classifier);
        self
    }

    /// How to choose among the instances whose breaker grants a permit (default
    /// [`Balance::LatencyAware`]: round-robin turns weighted by how fast each instance
    /// answers, then the fewer requests in flight of two; [`Balance::PowerOfTwoChoices`]
    /// without the weights; [`Balance::LeastPending`] always takes the fewest in flight;
    /// [`Balance::RoundRobin`] ignores both).
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// Slow start (default off, as in Envoy): an instance that appears, or whose breaker
    /// closes, gets a share of calls that ramps up linearly over `window`, from a tenth of a
    /// full share to all of it, so a cold or just-recovered instance is not handed a full
    /// share at once. Instances that appear together ramp together (shares are against the
    /// largest), so a client starting up is not slowed. Needs [`Balance::LatencyAware`]
    /// (the default); `build` refuses it with another rule.
    ///
    /// ```
    /// use std::time::Duration;
    /// use discovery_client::{ServiceClient, StaticDiscovery};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), discovery_client::Error> {
    /// let ratings = ServiceClient::builder("ratings")
    ///     .discovery(StaticDiscovery::new(["http://127.0.0.1:8001"]))
    ///     .slow_start(Duration::from_secs(30))
    ///     .build()?;
    /// # let _ = ratings; Ok(()) }
    /// ```
    pub fn slow_start(mut self, window: Duration) -> Self {
        self.slow_start = Some(window);
        self
    }

    /// Sends every attempt through `transport`: any cloneable tower service that takes an
    /// `http::Request<Bytes>` with an absolute URI (the instance's address joined with the
    /// call's path) and answers an `http::Response<B>` for any `http_body::Body` (a
    /// [`Transport`]; see [`transport`](crate::transport)). Its errors are the instance's
    /// failures. The default
    /// is an [`HttpClient`](crate::transport::HttpClient) built for this client (connect
    /// timeout = the per-attempt timeout, idle connections closed after 30 s); pass one of
    /// your own to share its connection pool among clients, or a scripted one to test.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use discovery_client::{ServiceClient, StaticDiscovery};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), discovery_client::Error> {
    /// // Every instance answers the same, without a network.
    /// let canned = tower::service_fn(|request: http::Request<Bytes>| async move {
    ///     let body = format!(r#"{{"asked": "{}"}}"#, request.uri());
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(body))
    /// });
    /// let client = ServiceClient::builder("ratings")
    ///     .discovery(StaticDiscovery::new(["http://10.0.0.1:80"]))
    ///     .transport(canned)
    ///     .build()?;
    /// let answer: serde_json::Value = client.get_json("/ratings/widget").await?;
    /// assert_eq!(answer["asked"], "http://10.0.0.1:80/ratings/widget");
    /// # Ok(()) }
    /// ```
    pub fn transport<T: Transport>(mut self, transport: T) -> Self {
        // An HttpClient also learns the instances' `tls_server_name`s.
        let http = (&transport as &dyn std::any::Any).downcast_ref::<HttpClient>();
        self.server_names = http.map(|http| http.server_names().clone());
        self.transport = Some(BoxTransport::new(transport));
        self
    }

    /// What `https://` instances are trusted by and shown (default [`TlsConfig::new`]: the
    /// system's roots, no client certificate). For the default transport; with
    /// [`transport`](Self::transport), give the settings to your
    /// [`HttpClient`](crate::transport::HttpClient) instead.
    ///
    /// Certificates are checked against the address's host, or, for an instance whose
    /// metadata has `tls_server_name` (useful when its address is an IP), that name.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self.transport_settings = true;
        self
    }

    /// Also trusts the CA certificates in `pem` for `https://` instances. A PEM that does
    /// not parse is reported by [`build`](Self::build).
    pub fn add_root_certificate(self, pem: impl AsRef<[u8]>) -> Self {
        let tls = self.tls.clone().add_root_certificate(pem);
        self.tls_setting(tls)
    }

    /// Trusts only the CA certificates in `pem` (not the system's) for `https://` instances.
    pub fn tls_roots_only(self, pem: impl AsRef<[u8]>) -> Self {
        let tls = self.tls.clone().roots_only(pem);
        self.tls_setting(tls)
    }

    /// Presents this client certificate chain and key (PEM) to instances that ask (mTLS).
    pub fn identity(self, cert_chain_pem: impl AsRef<[u8]>, key_pem: impl AsRef<[u8]>) -> Self {
        let tls = self.tls.clone().identity(cert_chain_pem, key_pem);
        self.tls_setting(tls)
    }

    /// Speaks HTTP/2 to every instance without negotiating it (h2c on `http://`). Over
    /// `https://`, HTTP/2 is negotiated by ALPN without this.
    pub fn http2_prior_knowledge(mut self) -> Self {
        self.http2_prior_knowledge = true;
        self.transport_settings = true;
        self
    }

    fn tls_setting(mut self, tls: Result<TlsConfig, Error>) -> Self {
        match tls {
            Ok(tls) => self.tls = tls,
            Err(error) => {
                let message = match error {
                    Error::Config(message) => message,
                    other => other.to_string(),
                };
                self.refused.get_or_insert(message);
            }
        }
        self.transport_settings = true;
        self
    }

    /// Checks the settings and starts discovery. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first invalid setting: no discovery source, an empty or
    /// malformed service name, a zero timeout, hedge delay, failure limit or slow-start
    /// window, slow start with a [`Balance`] other than the default, a failure rate whose
    /// ratio is outside `(0.0, 1.0]`, whose `min_requests` is 0 or whose window is zero, a
    /// retry budget outside `0.0..=1000.0`, or no tokio runtime.
    pub fn build(self) -> Result<ServiceClient, Error> {
        self.validate().map_err(Error::Config)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "ServiceClient::build must be called inside a tokio runtime".into(),
            ));
        }
        ServiceClient::start(self)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(refused) = &self.refused {
            return Err(refused.clone());
        }
        if self.transport.is_some() && self.transport_settings {
            return Err("TLS and HTTP/2 settings apply to the default transport: \
                 give them to your HttpClient (HttpClient::builder().tls(..))"
                .into());
        }
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if self.service.is_empty()
            || self.service.len() > 128
            || !self.service.chars().all(valid_char)
        {
            return Err(format!(
                "service name {:?} must be 1 to 128 characters of [A-Za-z0-9._-]",
                self.service
            ));
        }
        if self.discovery.is_none() {
            return Err("no discovery source: call .discovery(..)".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be greater than zero".into());
        }
        if !(0.0..=1000.0).contains(&self.retry_percent) {
            return Err(format!(
                "retry budget must be in 0.0..=1000.0, got {}",
                self.retry_percent
            ));
        }
        self.hedging.validate()?;
        if let Some(window) = self.slow_start {
            if window.is_zero() {
                return Err("slow start window must be greater than zero".into());
            }
            if self.balance != Balance::LatencyAware {
                return Err(format!(
                    "slow start needs Balance::LatencyAware, not Balance::{:?}",
                    self.balance
                ));
            }
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return Err("deadline must be greater than zero".into());
        }
        self.breaker.validate()
    }
}
