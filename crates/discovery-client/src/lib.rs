//! A resilient client for calling other services over HTTP.
//!
//! Give it a service name and a discovery source; it finds the instances, balances calls
//! round-robin across them (preferring instances with fewer requests in flight), bounds each
//! attempt with a timeout, trips a per-instance circuit breaker when an instance keeps
//! failing (and retests it with a single probe later), retries on another instance within a
//! budget, hedges an attempt that is slow to answer (after twice the service's recent p99)
//! on another instance, and caches answers, with a stale fallback for when every instance
//! is down. Requests go through a transport you can replace (hyper's pooled client by
//! default), which is also how every rule above the wire is tested on paused time.
//!
//! # Quickstart
//!
//! ```no_run
//! use std::time::Duration;
//! use discovery_client::{RegistryDiscovery, ServiceClient, Source};
//!
//! #[derive(Debug, serde::Deserialize)]
//! struct Rating {
//!     item_id: String,
//!     rating: u8,
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), discovery_client::Error> {
//!     let ratings = ServiceClient::builder("ratings")
//!         .discovery(RegistryDiscovery::new("http://127.0.0.1:8500"))
//!         .timeout(Duration::from_secs(1))
//!         .failure_limit(1)
//!         .retest_delay(Duration::from_secs(30))
//!         .cache_ttl(Duration::from_secs(5))
//!         .build()?;
//!
//!     let r: Rating = ratings.get_json("/ratings/widget").await?;
//!     println!("{} has {} stars", r.item_id, r.rating);
//!
//!     let cached = ratings.get_json_cached::<Rating>("/ratings/widget").await?;
//!     if cached.source == Source::Stale {
//!         println!("ratings is down; showing instance {}'s last rating", cached.instance.id);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Any request
//!
//! [`ServiceClient::get`], [`post`](ServiceClient::post), [`put`](ServiceClient::put),
//! [`patch`](ServiceClient::patch), [`delete`](ServiceClient::delete) and
//! [`request`](ServiceClient::request) give a [`RequestBuilder`] in reqwest's shape:
//! headers, a bearer token, a query, a JSON or raw body, and this request's own timeout,
//! deadline, retries, idempotency and cache use. A POST or PATCH is sent once unless marked
//! idempotent. The answer is a [`Response`] whose body has been read whole.
//!
//! ```no_run
//! # async fn demo(ratings: discovery_client::ServiceClient) -> Result<(), discovery_client::Error> {
//! use std::time::Duration;
//!
//! let answer = ratings
//!     .put("/ratings/widget")
//!     .bearer_auth("s3cret")
//!     .json(&serde_json::json!({"rating": 5}))
//!     .timeout(Duration::from_millis(300))
//!     .send()
//!     .await?
//!     .error_for_status()?;
//! println!("{} from instance {}", answer.status(), answer.instance().id);
//! # Ok(()) }
//! ```
//!
//! # TLS and HTTP/2
//!
//! `https://` instance addresses work from any discovery source. The roots are the
//! system's unless set ([`add_root_certificate`](ServiceClientBuilder::add_root_certificate),
//! [`tls_roots_only`](ServiceClientBuilder::tls_roots_only)); a client certificate is
//! presented with [`identity`](ServiceClientBuilder::identity). Certificates are checked
//! against the address's host, or against the instance's [`TLS_SERVER_NAME`] metadata when
//! the address is an IP. A failed handshake is [`Error::Tls`], that instance's failure: its
//! breaker opens and the others serve. HTTP/2 is negotiated by ALPN over TLS (or spoken by
//! prior knowledge with [`http2_prior_knowledge`](ServiceClientBuilder::http2_prior_knowledge));
//! concurrent calls to one instance then share one connection. rustls runs with the `ring`
//! provider, chosen here, whatever rustls features other crates enable.
//!
//! ```no_run
//! # fn demo(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<(), discovery_client::Error> {
//! use discovery_client::{ServiceClient, StaticDiscovery};
//!
//! let ratings = ServiceClient::builder("ratings")
//!     .discovery(StaticDiscovery::new(["https://ratings-1.internal:8443", "https://ratings-2.internal:8443"]))
//!     .tls_roots_only(ca_pem)
//!     .identity(cert_pem, key_pem)
//!     .build()?;
//! # let _ = ratings; Ok(()) }
//! ```
//!
//! # Modules
//!
//! - [`ServiceClient`] and its builder: one call reads top to bottom in `client/call.rs`
//!   (pick → attempt → maybe hedge → maybe retry → answer).
//! - [`discovery`]: where instances come from (the registry's blocking query, DNS A/AAAA
//!   and SRV records, a static list, etcd), and [`InstanceStream`](discovery::InstanceStream), any source as a tower
//!   `Discover`.
//! - [`balance`]: the picking rules ([`Balance`]) and [`Balancer`](balance::Balancer), the
//!   tower balancer that applies them.
//! - [`breaker`]: the per-instance circuit breaker (Closed, Open, Retest) and its middleware.
//! - [`budget`]: the lock-free retry budget (retries as a share of recent requests).
//! - [`timeout`]: the per-attempt timeout that names the instance, as tower middleware.
//! - [`transport`]: how a request reaches an instance: the transport seam, hyper's pooled
//!   client (over rustls for `https://`) as the default, its [`TlsConfig`](transport::TlsConfig),
//!   and the tower leaf for one instance.
//! - [`classify`]: deciding whether an attempt failed (5xx, timeouts, transport and TLS
//!   errors and malformed bodies do; 4xx and bodies of the caller's wrong type do not; 429,
//!   or 503 with `Retry-After`, is back-pressure, which no breaker counts).
//! - [`cache`]: the moka response cache with coalescing and stale fallback.
//! - [`events`]: typed events for breaker transitions and discovery changes.
//! - [`registration`]: the other side: how a service registers itself and heartbeats.
//!
//! # Tower middleware
//!
//! Each concern is also a tower `Layer`/`Service`, for composing with your own middleware
//! in an axum or tonic application. [`ServiceClient`] shares their parts (breakers, picking
//! rules, classifier, cache) and adds what needs a whole call: retries on another instance
//! within a budget, hedging and an overall deadline.
//!
//! | piece | what it does |
//! |---|---|
//! | [`InstanceStream`](discovery::InstanceStream) | any [`Discovery`] as a `Discover` stream of `Change::Insert(address, instance)` / `Change::Remove(address)`; [`endpoints`](discovery::InstanceStream::endpoints) makes a service per instance |
//! | [`Balancer`](balance::Balancer) | sends each call to an endpoint whose breaker grants a permit, by the [`Balance`] rule; waits for discovery's first answer (at most 1 s); none: [`Error::AllInstancesDown`] at once |
//! | [`Breakers`](breaker::Breakers) / [`BreakerLayer`](breaker::BreakerLayer) | per-instance breaker kept by address; rejects in `call` with [`Error::CircuitOpen`], never fails `poll_ready` |
//! | [`TimeoutLayer`](timeout::TimeoutLayer) | per-attempt timeout: [`Error::Timeout`] with the address |
//! | [`HttpEndpoint`](transport::HttpEndpoint) | one instance over HTTP (hyper's pooled client, [`HttpClient`](transport::HttpClient)), whole bodies |
//! | [`CacheLayer`](cache::CacheLayer) | GETs from the moka cache: TTL, coalesced misses, stale fallback |
//! | [`EventBus`](events::EventBus) | the typed [`Event`]s every piece publishes to |
//!
//! A leaf service of your own (in place of `HttpEndpoint`) reports a transport failure with
//! [`Error::http`] (or any error with an `std::io::Error` in its chain), so that the breaker
//! counts it; see [`Error::from_leaf`].
//!
//! ```no_run
//! use std::time::Duration;
//! use bytes::Bytes;
//! use discovery_client::balance::Balancer;
//! use discovery_client::breaker::{BreakerConfig, Breakers};
//! use discovery_client::cache::{CacheConfig, CacheLayer};
//! use discovery_client::discovery::InstanceStream;
//! use discovery_client::events::EventBus;
//! use discovery_client::timeout::TimeoutLayer;
//! use discovery_client::transport::HttpEndpoint;
//! use discovery_client::{RegistryDiscovery, Source};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let events = EventBus::new(256);
//! let breakers = Breakers::new("ratings", BreakerConfig::default()).events(events.clone());
//! let endpoints = InstanceStream::new("ratings", RegistryDiscovery::new("http://127.0.0.1:8500"))?
//!     .events(events.clone())
//!     .endpoints(move |instance| {
//!         ServiceBuilder::new()
//!             .layer(breakers.layer(instance)) // outermost per instance: the balancer asks it
//!             .layer(TimeoutLayer::new(&instance.address, Duration::from_secs(1)))
//!             .service(HttpEndpoint::new(&instance.address))
//!     });
//! let balancer = Balancer::new("ratings", endpoints).events(events.clone());
//! // The cache calls a clone of its inner service per miss; tower's `Buffer` (feature
//! // "buffer") makes the balancer cloneable:
//! // let mut ratings = ServiceBuilder::new()
//! //     .layer(CacheLayer::new("ratings", CacheConfig::default()))
//! //     .buffer(64)
//! //     .service(balancer);
//! let mut ratings = balancer;
//! let request = http::Request::get("/ratings/widget").body(Bytes::new())?;
//! let answer = ratings.ready().await?.call(request).await?;
//! println!("{} {:?}", answer.status(), answer.extensions().get::<Source>());
//! # let _ = (CacheLayer::new("ratings", CacheConfig::default()), events.subscribe());
//! # Ok(()) }
//! ```
//!
//! `examples/tower_stack.rs` (`cargo run -p examples --example tower-stack`) runs a full
//! stack, cache and `Buffer` included, against ratings instances it starts itself.
//!
//! # Logs
//!
//! The library never prints; it emits `tracing` events with `service`, `instance`, `address`
//! and `state` fields and these messages: `ratings using instance 1: http://127.0.0.1:8001`,
//! `OPEN breaker on [ratings at http://127.0.0.1:8001]`, `RETEST breaker on [...]`,
//! `CLOSE breaker on [...]`, `ratings instance 1 has not answered in 50ms: hedging on
//! instance 2`, and `ratings: all services are down`.
//!
//! # Metrics
//!
//! Recorded through the [`metrics`](https://docs.rs/metrics) facade; install an exporter
//! (such as `metrics-exporter-prometheus`) in your binary, **before** building clients or
//! stacks (handles are registered once per service and instance, so recording costs an
//! atomic add). The `instance` label is the instance's address, such as
//! `http://127.0.0.1:8001`, the key its breaker is kept by.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `discovery_client_requests_total` | counter | `service`, `instance`, `outcome` | attempts on one instance; `outcome` is `success`, `caller_error` (4xx, a body of the caller's wrong type), `failure` (5xx, timeout, transport error, malformed body), `rejected` (turned away by an open breaker) or `overloaded` (the instance pushed back: 429, or 503 with `Retry-After`) |
//! | `discovery_client_request_duration_seconds` | histogram | `service`, `instance` | time from sending an attempt to its classified outcome |
//! | `discovery_client_breaker_state` | gauge | `service`, `instance` | 0 closed, 1 retest, 2 open |
//! | `discovery_client_breaker_transitions_total` | counter | `service`, `instance`, `to` | breaker transitions; `to` is `open`, `retest` or `closed` |
//! | `discovery_client_cache_total` | counter | `service`, `result` | cached GETs: `hit` (fresh cache, or a concurrent caller's fetch), `miss` (went upstream), `stale` (upstream failed, last good answer served) |
//! | `discovery_client_all_down_total` | counter | `service` | calls that found no instance whose breaker grants a permit |
//! | `discovery_client_retries_total` | counter | `service` | [`ServiceClient`] attempts sent on another instance after an attempt of the same call failed or pushed back |
//! | `discovery_client_hedges_total` | counter | `service`, `result` | [`ServiceClient`] hedges (see [`Hedging`]); `result` is `won` (the hedge gave the call's answer) or `lost` |
//! | `discovery_client_overloaded_total` | counter | `service` | [`ServiceClient`] calls that ended [`Error::Overloaded`]: every instance they could use pushed back |

#![warn(missing_docs)]

pub mod balance;
pub mod breaker;
pub mod budget;
pub mod cache;
pub mod classify;
mod client;
pub mod discovery;
mod error;
pub mod events;
#[cfg(feature = "grpc")]
pub mod grpc;
mod instance;
pub mod registration;
mod stall;
mod telemetry;
#[cfg(test)]
mod test_metrics;
pub mod timeout;
pub mod transport;

pub use balance::Balance;
pub use breaker::{FailurePolicy, FailureRate};
/// The `bytes` crate, whose [`Bytes`](bytes::Bytes) are the bodies in this crate's API.
pub use bytes;
pub use cache::{Cached, Source};
pub use client::{
    Hedging, InstanceStatus, RequestBuilder, Response, ServiceClient, ServiceClientBuilder,
    TLS_SERVER_NAME,
};
#[cfg(feature = "etcd")]
pub use discovery::etcd::EtcdDiscovery;
pub use discovery::{Discovery, DnsDiscovery, RegistryDiscovery, StaticDiscovery};
pub use error::{Error, STATUS_BODY_LIMIT};
pub use events::Event;
/// The `http` crate, whose types ([`Method`](http::Method), [`HeaderMap`](http::HeaderMap),
/// [`StatusCode`](http::StatusCode)) are in this crate's API.
pub use http;
pub use instance::Instance;
