//! [`ServiceClient`]: one cloneable handle per upstream service.
//!
//! A call goes through these steps, in order:
//!
//! 1. the latest endpoint set from discovery (waiting at most one timeout for discovery's
//!    first answer); discovery is followed through an
//!    [`InstanceStream`](crate::discovery::InstanceStream), and each instance gets a stack of
//!    the crate's tower pieces: [`BreakerService`](crate::breaker::BreakerService) around a
//!    [`Timeout`](crate::timeout::Timeout) around an
//!    [`HttpEndpoint`](crate::transport::HttpEndpoint);
//! 2. round-robin ([`Picker`]) among the instances whose breaker admits it, preferring
//!    instances with fewer requests in flight ([`Balance`]); none: `all services are down`
//!    and [`Error::AllInstancesDown`] at once;
//! 3. one attempt through the instance's stack: logged (`ratings using instance 1: ...`),
//!    bounded by the per-attempt timeout (and the overall deadline, if set), judged by the
//!    classifier, recorded on the breaker, whose transitions are logged (`OPEN breaker on
//!    [...]`, `RETEST ...`, `CLOSE ...`), published as events and counted in the metrics;
//! 4. on a failure, retry on an instance not yet tried (idempotent requests only, unless
//!    allowed), while the retry budget allows; an idempotent attempt that has not answered
//!    after the hedge delay ([`Hedging`], by default twice the service's recent p99 and at
//!    least 50 ms) gets one hedge on another instance, and the first answer that did not
//!    fail is returned (the other attempt runs to its own end, recorded on its breaker);
//! 5. for [`ServiceClient::get_json_cached`], the response cache sits around all of this.

mod builder;
mod endpoints;
mod hedge;
mod hedging;
mod response;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::balance::{Balance, Picker};
use crate::breaker::{BodyCheck, Breakers, NoCheck};
use crate::budget::RetryBudget;
use crate::cache::{Cached, ResponseCache};
use crate::classify::Outcome;
use crate::discovery::InstanceStream;
use crate::events::{Event, EventBus};
use crate::telemetry::ServiceTelemetry;
use crate::timeout::Deadline;
use crate::transport::HttpClient;
use crate::{Error, Source};

pub use builder::ServiceClientBuilder;
pub use endpoints::InstanceStatus;
pub use hedging::Hedging;
pub use response::Response;

use endpoints::{EndpointSet, Slot, Stacks};
use hedge::Hedge;
use hedging::LatencyEstimate;
use response::Answer;

/// A resilient client for one named service. Cheap to clone; clones share instances,
/// breakers, the balancer cursor and the cache.
///
/// ```no_run
/// use std::time::Duration;
/// use discovery_client::{RegistryDiscovery, ServiceClient};
///
/// #[derive(serde::Deserialize)]
/// struct Rating { item_id: String, rating: u8 }
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(RegistryDiscovery::new("http://127.0.0.1:8500"))
///     .timeout(Duration::from_secs(1))
///     .failure_limit(1)
///     .retest_delay(Duration::from_secs(30))
///     .build()?;
/// let r: Rating = ratings.get_json("/ratings/widget").await?;
/// println!("{} has {} stars", r.item_id, r.rating);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ServiceClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Service name, event bus and service-wide metrics.
    telemetry: ServiceTelemetry,
    /// Where typed events go; [`ServiceClient::subscribe`] reads it.
    events: EventBus,
    /// The endpoints discovery knows, with their stacks.
    endpoints: watch::Receiver<EndpointSet>,
    /// The round-robin cursor.
    picker: Picker,
    /// Whether requests in flight steer the pick.
    balance: Balance,
    /// Per-attempt timeout (also how long a call waits for discovery's first answer).
    timeout: Duration,
    /// Overall deadline for one call, across attempts.
    deadline: Option<Duration>,
    /// Retries on other instances after a failed attempt.
    max_retries: u32,
    /// Whether non-idempotent requests are retried too.
    retry_non_idempotent: bool,
    /// When an idempotent attempt that has not answered gets a hedge on another instance.
    hedging: Hedging,
    /// The service's recent p99 attempt latency, for adaptive hedging.
    latency: LatencyEstimate,
    /// Keeps retries (and hedges) to a fraction of requests.
    budget: RetryBudget,
    /// Bodies of successful GETs, fresh and stale.
    cache: ResponseCache,
    /// The discovery follower (which owns discovery); aborted when the last clone is dropped.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ServiceClient {
    /// Starts configuring a client for the service with this name.
    pub fn builder(service: impl Into<String>) -> ServiceClientBuilder {
        ServiceClientBuilder::new(service.into())
    }

    fn start(builder: ServiceClientBuilder) -> Result<Self, Error> {
        let discovery = builder
            .discovery
            .clone()
            .ok_or_else(|| Error::Config("no discovery source".into()))?;
        let events = EventBus::new(builder.event_capacity);
        let telemetry = ServiceTelemetry::new(&builder.service, Some(events.clone()));
        let http = match builder.http {
            Some(http) => http,
            None => HttpClient::builder()
                .connect_timeout(builder.timeout)
                .pool_idle_timeout(Duration::from_secs(30))
                .build(),
        };
        let stacks = Stacks {
            breakers: Breakers::with_telemetry(telemetry.clone(), builder.breaker.clone())
                .shared_classifier(builder.classifier),
            http,
            timeout: builder.timeout,
        };
        let instances = InstanceStream::start(telemetry.clone(), &*discovery)?;
        let (endpoints_tx, endpoints_rx) = watch::channel::<EndpointSet>(None);
        let follow_task =
            tokio::spawn(endpoints::follow_discovery(instances, stacks, endpoints_tx));
        Ok(Self {
            inner: Arc::new(Inner {
                cache: ResponseCache::new(&builder.cache).with_counters(telemetry.cache_counters()),
                telemetry,
                events,
                endpoints: endpoints_rx,
                picker: Picker::new(),
                balance: builder.balance,
                timeout: builder.timeout,
                deadline: builder.deadline,
                max_retries: builder.max_retries,
                retry_non_idempotent: builder.retry_non_idempotent,
                hedging: builder.hedging,
                latency: LatencyEstimate::default(),
                budget: RetryBudget::new(Duration::from_secs(10), 10, builder.retry_percent),
                tasks: vec![follow_task],
            }),
        })
    }

    /// The service this client calls.
    pub fn service(&self) -> &str {
        self.inner.telemetry.service()
    }

    /// Subscribes to breaker and discovery [`Event`]s from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The instances known right now with their breaker states.
    pub fn instances(&self) -> Vec<InstanceStatus> {
        match &*self.inner.endpoints.borrow() {
            Some(endpoints) => endpoints::status_of(endpoints),
            None => Vec::new(),
        }
    }

    /// Forgets every cached answer, fresh and stale.
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// GETs `path` (such as `/ratings/widget`) from an instance and returns the answer,
    /// whatever its status, once an attempt did not fail (4xx answers are returned as they
    /// are; 5xx answers are retried elsewhere and, if every try fails, returned as
    /// [`Error::Status`]).
    pub async fn get(&self, path: &str) -> Result<Response, Error> {
        self.send(Method::GET, path, None).await
    }

    /// Sends a request with this method and optional body. Non-idempotent methods are not
    /// retried unless the builder allowed it.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response, Error> {
        let answer = self
            .inner
            .call(method, path, body, &HeaderMap::new(), None::<NoCheck>)
            .await?;
        Ok(answer.into_response())
    }

    /// GETs `path` and decodes the JSON answer. A 4xx answer is [`Error::Status`] (and no
    /// breaker counts it); a body that does not decode is an instance failure, retried
    /// elsewhere like a 5xx. The cache is not used.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.get_json_with(path, &HeaderMap::new()).await
    }

    /// [`get_json`](Self::get_json) with extra headers sent on every attempt (for example a
    /// W3C `traceparent`).
    pub async fn get_json_with<T: DeserializeOwned>(
        &self,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<T, Error> {
        // The breaker's body check decodes each 2xx answer; the value is kept, so the body
        // is decoded once.
        let mut decoded = None;
        let answer = self.inner.get_decoding(path, headers, &mut decoded).await?;
        // The check ran on every 2xx answer, the one returned last.
        match decoded {
            Some(value) if answer.response.status().is_success() => Ok(value),
            _ => answer.into_json(),
        }
    }

    /// Like [`get_json`](Self::get_json), through the response cache: served from the fresh
    /// cache while it holds the answer, one upstream call for all concurrent misses of the
    /// same path, and the last good answer (marked [`Source::Stale`](crate::Source::Stale))
    /// when the upstream call fails.
    pub async fn get_json_cached<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Cached<T>, Error> {
        self.get_json_cached_with(path, &HeaderMap::new()).await
    }

    /// [`get_json_cached`](Self::get_json_cached) with extra headers sent on every upstream
    /// attempt (for example a W3C `traceparent`). Headers are not part of the cache key.
    pub async fn get_json_cached_with<T: DeserializeOwned>(
        &self,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Cached<T>, Error> {
        // On a miss fetched by this call, the body check's value is the answer's (the check
        // ran on every 2xx answer, the one returned last): the body is decoded once. A hit,
        // a concurrent caller's fetch or a stale answer is decoded from the cached body.
        let mut decoded = None;
        let fetch = async {
            let answer = self.inner.get_decoding(path, headers, &mut decoded).await?;
            answer.success_body()
        };
        let (body, source) = self.inner.cache.get_or_fetch(path, fetch).await?;
        let value = match decoded {
            Some(value) if source == Source::Live => value,
            _ => decode_json(&body, "cache")?,
        };
        Ok(Cached { value, source })
    }
}

/// A body check (the breaker applies it to 2xx answers only) that decodes the body as `T`
/// and keeps the value in `slot`, so that the caller need not decode it again.
fn decode_into<T: DeserializeOwned>(
    slot: &mut Option<T>,
) -> impl FnMut(&[u8]) -> Result<(), String> + '_ {
    move |body| match serde_json::from_slice::<T>(body) {
        Ok(value) => {
            *slot = Some(value);
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) fn decode_json<T: DeserializeOwned>(body: &[u8], address: &str) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Decode {
        address: address.to_string(),
        message: e.to_string(),
    })
}

impl Inner {
    /// GETs `path`, decoding each 2xx answer as `T` in the breaker's body check and keeping
    /// the last value in `decoded`.
    async fn get_decoding<T: DeserializeOwned>(
        &self,
        path: &str,
        headers: &HeaderMap,
        decoded: &mut Option<T>,
    ) -> Result<Answer, Error> {
        let check = decode_into(decoded);
        self.call(Method::GET, path, None, headers, Some(check))
            .await
    }

    /// The endpoints, if discovery has answered.
    fn known_endpoints(&self) -> Option<Arc<[Slot]>> {
        self.endpoints.borrow().as_ref().map(Arc::clone)
    }

    /// Waits (at most one timeout) for discovery's first answer, then returns the endpoints.
    async fn first_endpoints(&self) -> Result<Arc<[Slot]>, Error> {
        let mut rx = self.endpoints.clone();
        let first = tokio::time::timeout(self.timeout, rx.wait_for(Option::is_some)).await;
        match first {
            Ok(Ok(set)) => Ok(set.clone().unwrap_or_else(|| Arc::from(Vec::new()))),
            Ok(Err(_)) => Err(Error::Discovery(format!(
                "discovery for {} stopped before finding any instance",
                self.telemetry.service()
            ))),
            Err(_) => Ok(Arc::from(Vec::new())),
        }
    }

    /// The request for one attempt, bounded by the overall deadline when there is one.
    fn request(
        &self,
        method: &Method,
        path: &str,
        body: &Option<Bytes>,
        headers: &HeaderMap,
        deadline: Option<Instant>,
    ) -> Result<http::Request<Bytes>, Error> {
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(path)
            .body(body.clone().unwrap_or_default())
            .map_err(|e| Error::InvalidRequest(format!("path {path:?}: {e}")))?;
        if !headers.is_empty() {
            *request.headers_mut() = headers.clone();
        }
        if let Some(deadline) = deadline {
            request.extensions_mut().insert(Deadline(deadline));
        }
        Ok(request)
    }

    /// Sends the request (attempts and retries, see the [module docs](self)); the answer
    /// that did not fail, with the instance that gave it.
    async fn call<C: BodyCheck>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &HeaderMap,
        check: Option<C>,
    ) -> Result<Answer, Error> {
        if !path.starts_with('/') {
            return Err(Error::InvalidRequest(format!(
                "path {path:?} must start with '/'"
            )));
        }
        let started = Instant::now();
        let deadline = self.deadline.map(|d| started + d);
        let retryable = method.is_idempotent() || self.retry_non_idempotent;
        self.budget.deposit_at(started);
        // The first attempt starts when the call did, unless discovery had to be waited for.
        let (endpoints, mut now) = match self.known_endpoints() {
            Some(endpoints) => (endpoints, started),
            None => (self.first_endpoints().await?, Instant::now()),
        };
        // The body check, shared by the attempts of a hedged call (one is polled at a time).
        let has_check = check.is_some();
        let check = Mutex::new(check);
        let checker = |body: &[u8]| {
            // A check that panicked poisons nothing worth keeping: use the value anyway.
            let mut check = check.lock().unwrap_or_else(PoisonError::into_inner);
            match check.as_mut() {
                Some(check) => check(body),
                None => Ok(()),
            }
        };
        let checker = has_check.then_some(checker);
        let hedge_after = retryable
            .then(|| self.hedging.delay(&self.latency))
            .flatten();
        // Each attempt's request, built once its instance is picked (borrows only: `Copy`).
        let request = || self.request(&method, path, &body, headers, deadline);
        // Indexes into `endpoints` already tried (or under way) in this call.
        let mut tried: Vec<usize> = Vec::new();
        let mut last_error = None;
        // Attempts started, the first included; a hedge counts as one.
        let mut attempts = 0u32;
        while attempts <= self.max_retries {
            if attempts > 0 {
                now = Instant::now();
                if !retryable || !self.budget.withdraw_at(now) {
                    break;
                }
            }
            let Some(first) = self
                .start_attempt(&endpoints, &tried, request, checker, now)
                .await?
            else {
                break;
            };
            if attempts > 0 {
                self.telemetry.retried();
            }
            attempts += 1;
            tried.push(first.index);
            let finished = match hedge_after {
                None => first.finish().await,
                Some(delay) => {
                    let hedge = Hedge {
                        endpoints: &endpoints,
                        request,
                        checker,
                        delay,
                        deadline,
                    };
                    self.hedged(first, hedge, &mut tried, &mut attempts).await?
                }
            };
            match finished.outcome {
                Outcome::Success | Outcome::CallerError => {
                    if self.hedging.is_adaptive() {
                        self.latency.record(finished.started.elapsed());
                    }
                    return finished.result.map(|response| Answer {
                        response,
                        endpoints,
                        index: finished.index,
                    });
                }
                Outcome::Failure => {
                    last_error = Some(self.failed(&endpoints[finished.index], finished.result));
                }
            }
            if let (Some(d), Some(total)) = (deadline, self.deadline) {
                if Instant::now() >= d {
                    return Err(Error::DeadlineExceeded {
                        service: self.telemetry.service().to_string(),
                        deadline: total,
                    });
                }
            }
        }
        match last_error {
            Some(error) => Err(error),
            None => Err(self.telemetry.all_down()),
        }
    }
}

#[cfg(test)]
mod hedge_tests;
#[cfg(test)]
mod tests;
