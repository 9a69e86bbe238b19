//! [`ServiceClient`]: one cloneable handle per upstream service.
//!
//! What a call does, step by step, is in [`call`]: pick → attempt (timeout, classify,
//! record) → maybe hedge → maybe retry → answer. The rest of this folder is what it uses:
//!
//! - [`attempt`]: one attempt on one instance, and how it is judged;
//! - [`decode`]: how a 2xx body becomes the caller's value while the attempt is judged;
//! - [`endpoints`]: following discovery (the endpoints a call picks from), and
//!   [`InstanceStatus`];
//! - [`hedging`]: the [`Hedging`] policy and the latency estimate behind its default;
//! - [`response`]: what a call answers;
//! - [`builder`]: the settings.
//!
//! [`ServiceClient`] shares its parts with the tower pieces of this crate (the
//! [`Breaker`](crate::breaker::Breaker) and its reporting, the [`Balance`] rules, the
//! classifier, the response cache) but is not a stack of them: it calls its transport
//! directly, which is what lets one call hold two attempts (a hedge) and retry on another
//! instance.

mod attempt;
mod builder;
mod call;
mod decode;
mod endpoints;
mod hedging;
mod request;
mod response;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::Error;
use crate::balance::{Balance, Picker};
use crate::breaker::Breakers;
use crate::budget::RetryBudget;
use crate::cache::{Cached, ResponseCache};
use crate::classify::Classify;
use crate::discovery::InstanceStream;
use crate::events::{Event, EventBus};
use crate::stall::StallMonitor;
use crate::telemetry::ServiceTelemetry;
use crate::transport::{BoxTransport, HttpClient};

pub use builder::ServiceClientBuilder;
pub use endpoints::{InstanceStatus, TLS_SERVER_NAME};
pub use hedging::Hedging;
pub use request::RequestBuilder;
pub use response::Response;

use call::Request;
use decode::Json;
use endpoints::{Endpoint, Known};
pub(crate) use hedging::LatencyEstimate;

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
    /// What discovery has said: the endpoints calls pick from.
    endpoints: watch::Receiver<Known>,
    /// The round-robin cursor.
    picker: Picker,
    /// Whether requests in flight steer the pick.
    balance: Balance,
    /// What attempts are sent through.
    transport: BoxTransport,
    /// How attempts are judged.
    classifier: Arc<dyn Classify>,
    /// Per-attempt timeout (also how long a call waits for discovery's first answer).
    timeout: Duration,
    /// Overall deadline for one call, across attempts.
    deadline: Option<Duration>,
    /// Retries on other instances after a failed attempt.
    max_retries: u32,
    /// Whether non-idempotent requests are retried (and hedged) too.
    retry_non_idempotent: bool,
    /// When an attempt that has not answered gets a hedge on another instance.
    hedging: Hedging,
    /// The service's recent p99 attempt latency, for adaptive hedging.
    latency: LatencyEstimate,
    /// Keeps retries (and hedges) to a fraction of requests.
    budget: RetryBudget,
    /// Bodies of successful GETs, fresh and stale, with the instance that gave each.
    cache: ResponseCache<CachedBody>,
    /// The discovery follower (which owns discovery) and the stall monitor (see
    /// [`StallMonitor`]); aborted when the last clone is dropped.
    tasks: Vec<JoinHandle<()>>,
}

/// A cached answer (a 2xx), with the instance that gave it.
#[derive(Debug, Clone)]
struct CachedBody {
    response: Response,
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
        let (transport, server_names) = match builder.transport {
            Some(transport) => (transport, builder.server_names),
            None => {
                let mut http = HttpClient::builder()
                    .connect_timeout(builder.timeout)
                    .pool_idle_timeout(Duration::from_secs(30))
                    .tls(builder.tls.clone());
                if builder.http2_prior_knowledge {
                    http = http.http2_prior_knowledge();
                }
                let http = http.build()?;
                let names = http.server_names().clone();
                (BoxTransport::new(http), Some(names))
            }
        };
        let instances = InstanceStream::start(telemetry.clone(), &*discovery)?;
        // Nothing below fails: the monitor's task is aborted with the client's.
        let (stalls, watch_stalls) = StallMonitor::start(&builder.service);
        let breakers = Breakers::with_telemetry(telemetry.clone(), builder.breaker.clone())
            .shared_classifier(Arc::clone(&builder.classifier))
            .max_retry_after(builder.max_retry_after)
            .stall_monitor(stalls);
        let (endpoints_tx, endpoints_rx) = watch::channel(Known::Nothing);
        let follow = endpoints::follow_discovery(instances, breakers, server_names, endpoints_tx);
        Ok(Self {
            inner: Arc::new(Inner {
                cache: ResponseCache::new(&builder.cache).with_counters(telemetry.cache_counters()),
                telemetry,
                events,
                endpoints: endpoints_rx,
                picker: Picker::with_slow_start(builder.slow_start),
                balance: builder.balance,
                transport,
                classifier: builder.classifier,
                timeout: builder.timeout,
                deadline: builder.deadline,
                max_retries: builder.max_retries,
                retry_non_idempotent: builder.retry_non_idempotent,
                hedging: builder.hedging,
                latency: LatencyEstimate::default(),
                budget: RetryBudget::new(Duration::from_secs(10), 10, builder.retry_percent),
                tasks: vec![tokio::spawn(follow), watch_stalls],
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

    /// The instances known right now, with their breaker states and what the client has
    /// seen of their attempts (requests, failures, recent latency).
    pub fn instances(&self) -> Vec<InstanceStatus> {
        match &*self.inner.endpoints.borrow() {
            Known::Endpoints(endpoints) => {
                endpoints::status_of(endpoints, &self.inner.picker, self.inner.balance)
            }
            Known::Nothing | Known::Unavailable(_) => Vec::new(),
        }
    }

    /// Forgets every cached answer, fresh and stale.
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// A GET of `path` (such as `/ratings/widget`, with or without a query), to send with
    /// [`RequestBuilder::send`] or by awaiting it. Served from the response cache when it
    /// can be (see [`RequestBuilder`]).
    ///
    /// ```no_run
    /// # async fn demo(ratings: discovery_client::ServiceClient) -> Result<(), discovery_client::Error> {
    /// let answer = ratings.get("/ratings/widget").await?;
    /// println!("{} {:?}", answer.status(), answer.body());
    /// # Ok(()) }
    /// ```
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// A POST of `path`: sent once (never retried or hedged) unless marked
    /// [`idempotent`](RequestBuilder::idempotent).
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// A PUT of `path`.
    pub fn put(&self, path: &str) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    /// A PATCH of `path`: sent once unless marked [`idempotent`](RequestBuilder::idempotent).
    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    /// A DELETE of `path`.
    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// A request with any method. `path` must start with `/` (else [`send`] is
    /// [`Error::InvalidRequest`]).
    ///
    /// [`send`]: RequestBuilder::send
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        RequestBuilder::new(self, method, path)
    }

    /// GETs `path` and decodes the JSON answer: `self.get(path).no_cache()`, decoded. A 4xx
    /// answer is [`Error::Status`] (and no breaker counts it); a body that is not JSON or is
    /// cut short is an instance failure, retried elsewhere like a 5xx; valid JSON that is
    /// not a `T` is the caller's [`Error::Decode`], returned at once (no breaker counts it).
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
        // `self.get(path).headers(..).no_cache()`, without the builder's copies.
        let request = Request::get(&self.inner, path, headers)?;
        call::call(&self.inner, &request, Json::<T>::new())
            .await?
            .into_value()
    }

    /// Like [`get_json`](Self::get_json), through the response cache (as
    /// [`get`](Self::get) is): served from the fresh cache while it holds the answer, one
    /// upstream call for all concurrent misses of the same path, and the last good answer
    /// (marked [`Source::Stale`](crate::Source::Stale)) when the upstream call fails. The
    /// answer names the instance that gave it.
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
        // `self.get(path).headers(..)` through the cache, without the builder's copies (the
        // key is the path as given; a hit makes no request).
        let make = || Request::get(&self.inner, path, headers);
        let json = Json::<T>::new();
        let (response, value) = request::cached(&self.inner, path, make, json).await?;
        let (source, instance) = (response.source(), Arc::clone(response.instance()));
        // A hit, a concurrent caller's fetch or a stale answer is decoded here.
        let value = value.map_or_else(|| response.json(), Ok)?;
        Ok(Cached {
            value,
            source,
            instance,
        })
    }
}

impl Inner {
    /// The endpoints, if discovery has answered; its error if it failed before it did.
    fn known_endpoints(&self) -> Result<Option<Arc<[Endpoint]>>, Error> {
        match &*self.endpoints.borrow() {
            Known::Endpoints(endpoints) => Ok(Some(Arc::clone(endpoints))),
            Known::Nothing => Ok(None),
            Known::Unavailable(reason) => Err(Error::Discovery(reason.clone())),
        }
    }

    /// Waits (at most one timeout) for discovery's first answer, then returns the endpoints
    /// (none, if it has not answered by then).
    async fn first_endpoints(&self) -> Result<Arc<[Endpoint]>, Error> {
        let mut rx = self.endpoints.clone();
        let answered = |known: &Known| !matches!(known, Known::Nothing);
        match tokio::time::timeout(self.timeout, rx.wait_for(answered)).await {
            Ok(Ok(_)) => Ok(self.known_endpoints()?.unwrap_or_else(|| Arc::from([]))),
            Ok(Err(_)) => Err(Error::Discovery(format!(
                "discovery for {} stopped before finding any instance",
                self.telemetry.service()
            ))),
            Err(_) => Ok(Arc::from([])),
        }
    }
}

#[cfg(test)]
mod tests;
