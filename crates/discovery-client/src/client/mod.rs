//! [`ServiceClient`]: one cloneable handle per upstream service.
//!
//! A call goes through these steps, in order:
//!
//! 1. the latest endpoint set from discovery (waiting at most one timeout for discovery's
//!    first answer);
//! 2. round-robin among the instances whose breaker admits it; none: `all services are down`
//!    and [`Error::AllInstancesDown`] at once;
//! 3. one attempt, bounded by the per-attempt timeout (and the overall deadline, if set);
//! 4. the classifier judges it; the outcome goes to the instance's breaker, whose transitions
//!    are logged (`OPEN breaker on [...]`, `RETEST ...`, `CLOSE ...`) and published as events;
//! 5. on a failure, retry on an instance not yet tried (idempotent requests only, unless
//!    allowed), while the retry budget allows;
//! 6. for [`ServiceClient::get_json_cached`], the response cache sits around all of this.

mod builder;
mod endpoints;
mod response;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};

use crate::Error;
use crate::balance::{Endpoint, RoundRobin};
use crate::cache::{Cached, ResponseCache};
use crate::classify::{Attempt, Classify, Outcome};
use crate::discovery::{DiscoverySink, InstanceSet};
use crate::events::{Event, EventSender};

pub use builder::ServiceClientBuilder;
pub use endpoints::InstanceStatus;
pub use response::Response;

use endpoints::{EndpointSet, Shared};

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
    shared: Arc<Shared>,
    endpoints: watch::Receiver<EndpointSet>,
    balancer: RoundRobin,
    http: reqwest::Client,
    timeout: Duration,
    deadline: Option<Duration>,
    max_retries: u32,
    retry_non_idempotent: bool,
    budget: TpsBudget,
    classifier: Arc<dyn Classify>,
    cache: ResponseCache,
    /// Discovery and its follower; aborted when the last clone is dropped.
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
        let events = EventSender::new(builder.event_capacity);
        let shared = Arc::new(Shared::new(
            builder.service.clone(),
            events,
            builder.breaker.clone(),
        ));
        let (sets_tx, sets_rx) = watch::channel::<Option<InstanceSet>>(None);
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let (endpoints_tx, endpoints_rx) = watch::channel::<EndpointSet>(None);
        let sink = DiscoverySink {
            sets: sets_tx,
            reports: reports_tx,
        };
        let discovery_task = tokio::spawn(discovery.watch(&builder.service, sink));
        let follow_task = tokio::spawn(endpoints::follow_discovery(
            Arc::clone(&shared),
            sets_rx,
            reports_rx,
            endpoints_tx,
        ));
        let http = match builder.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .connect_timeout(builder.timeout)
                .pool_idle_timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| Error::Config(format!("HTTP client: {e}")))?,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                endpoints: endpoints_rx,
                balancer: RoundRobin::new(),
                http,
                timeout: builder.timeout,
                deadline: builder.deadline,
                max_retries: builder.max_retries,
                retry_non_idempotent: builder.retry_non_idempotent,
                budget: TpsBudget::new(Duration::from_secs(10), 10, builder.retry_percent),
                classifier: builder.classifier,
                cache: ResponseCache::new(&builder.cache),
                tasks: vec![discovery_task, follow_task],
            }),
        })
    }

    /// The service this client calls.
    pub fn service(&self) -> &str {
        &self.inner.shared.service
    }

    /// Subscribes to breaker and discovery [`Event`]s from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.shared.events.subscribe()
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
        self.inner
            .call(method, path, body, &HeaderMap::new(), |_| Ok(()))
            .await
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
        let response = self
            .inner
            .call(Method::GET, path, None, headers, check_json::<T>)
            .await?;
        response.into_json()
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
        let fetch = async {
            let response = self
                .inner
                .call(Method::GET, path, None, headers, check_json::<T>)
                .await?;
            response.success_body()
        };
        let (body, source) = self.inner.cache.get_or_fetch(path, fetch).await?;
        let value = decode_json(&body, "cache")?;
        Ok(Cached { value, source })
    }
}

/// Checks that a 2xx body decodes as `T` (other statuses are judged by their status).
fn check_json<T: DeserializeOwned>(response: &Response) -> Result<(), String> {
    if response.status.is_success() {
        serde_json::from_slice::<T>(&response.body)
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else {
        Ok(())
    }
}

pub(crate) fn decode_json<T: DeserializeOwned>(body: &[u8], address: &str) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Decode {
        address: address.to_string(),
        message: e.to_string(),
    })
}

impl Inner {
    /// Waits (at most one timeout) for discovery's first answer, then returns the endpoints.
    async fn current_endpoints(&self) -> Result<Arc<[Endpoint]>, Error> {
        if let Some(set) = &*self.endpoints.borrow() {
            return Ok(Arc::clone(set));
        }
        let mut rx = self.endpoints.clone();
        let first = tokio::time::timeout(self.timeout, rx.wait_for(Option::is_some)).await;
        match first {
            Ok(Ok(set)) => Ok(set.clone().unwrap_or_else(|| Arc::from(Vec::new()))),
            Ok(Err(_)) => Err(Error::Discovery(format!(
                "discovery for {} stopped before finding any instance",
                self.shared.service
            ))),
            Err(_) => Ok(Arc::from(Vec::new())),
        }
    }

    fn all_down(&self) -> Error {
        let service = &self.shared.service;
        tracing::warn!(service = %service, "{service}: all services are down");
        self.shared.events.send(Event::AllInstancesDown {
            service: service.clone(),
        });
        Error::AllInstancesDown {
            service: service.clone(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &HeaderMap,
        check: impl Fn(&Response) -> Result<(), String>,
    ) -> Result<Response, Error> {
        if !path.starts_with('/') {
            return Err(Error::InvalidRequest(format!(
                "path {path:?} must start with '/'"
            )));
        }
        let started = Instant::now();
        let deadline = self.deadline.map(|d| started + d);
        let retryable = method.is_idempotent() || self.retry_non_idempotent;
        self.budget.deposit();
        let endpoints = self.current_endpoints().await?;
        let mut tried: Vec<&str> = Vec::new();
        let mut last_error = None;
        for attempt in 0..=self.max_retries {
            if attempt > 0 && (!retryable || !self.budget.withdraw()) {
                break;
            }
            let picked = self.balancer.pick(
                &endpoints,
                Instant::now(),
                |e| tried.contains(&e.instance.address.as_str()),
                |e, t| self.shared.report(e, t),
            );
            let Some((endpoint, permit)) = picked else {
                break;
            };
            let service = &self.shared.service;
            let (id, address) = (&endpoint.instance.id, &endpoint.instance.address);
            tracing::info!(service = %service, instance = %id, address = %address,
                "{service} using instance {id}: {address}");
            let attempt_timeout = match deadline {
                Some(d) => self
                    .timeout
                    .min(d.saturating_duration_since(Instant::now())),
                None => self.timeout,
            };
            let result = self
                .attempt(
                    endpoint,
                    method.clone(),
                    path,
                    body.clone(),
                    headers,
                    attempt_timeout,
                )
                .await
                .and_then(|response| match check(&response) {
                    Ok(()) => Ok(response),
                    Err(message) => Err(Error::Decode {
                        address: address.clone(),
                        message,
                    }),
                });
            let outcome = match &result {
                Ok(r) => self.classifier.classify(Attempt::Answered {
                    status: r.status,
                    body: &r.body,
                }),
                Err(e) => self.classifier.classify(Attempt::Errored(e)),
            };
            let now = Instant::now();
            match outcome {
                Outcome::Success | Outcome::CallerError => {
                    if let Some(t) = permit.record_success(now) {
                        self.shared.report(endpoint, t);
                    }
                    return result;
                }
                Outcome::Failure => {
                    if let Some(t) = permit.record_failure(now) {
                        self.shared.report(endpoint, t);
                    }
                    let error = match result {
                        Ok(r) => Error::Status {
                            address: address.clone(),
                            status: r.status.as_u16(),
                        },
                        Err(e) => e,
                    };
                    tracing::debug!(service = %service, instance = %id, address = %address, error = %error,
                        "{service} attempt on instance {id} failed: {error}");
                    last_error = Some(error);
                    tried.push(address.as_str());
                }
            }
            if let (Some(d), Some(total)) = (deadline, self.deadline) {
                if Instant::now() >= d {
                    return Err(Error::DeadlineExceeded {
                        service: service.clone(),
                        deadline: total,
                    });
                }
            }
        }
        match last_error {
            Some(error) => Err(error),
            None => Err(self.all_down()),
        }
    }

    async fn attempt(
        &self,
        endpoint: &Endpoint,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &HeaderMap,
        timeout: Duration,
    ) -> Result<Response, Error> {
        let address = &endpoint.instance.address;
        let url = format!("{}{}", address.trim_end_matches('/'), path);
        let mut request = self.http.request(method, url).headers(headers.clone());
        if let Some(body) = body {
            request = request.body(body);
        }
        let exchange = async {
            let answer = request.send().await.map_err(|e| http_error(address, &e))?;
            let status = answer.status();
            let headers = answer.headers().clone();
            let body = answer.bytes().await.map_err(|e| http_error(address, &e))?;
            Ok(Response {
                status,
                headers,
                body,
                instance: endpoint.instance.clone(),
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                address: address.clone(),
                timeout,
            }),
        }
    }
}

/// The error with its causes, which is where reqwest says what really happened.
fn http_error(address: &str, error: &reqwest::Error) -> Error {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::Http {
        address: address.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests;
