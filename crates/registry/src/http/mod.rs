//! The HTTP API: shared state, the router, handlers, extractors, auth and errors.
//!
//! | call | handler |
//! |---|---|
//! | `PUT /v1/services/{service}/instances/{id}` | register (a live id: only with its `X-Lease`, else 409); `{"lease", "ttl_secs"}` |
//! | `PUT /v1/services/{service}/instances/{id}/heartbeat` | renew (`X-Lease`); `{"ttl_secs"}` |
//! | `DELETE /v1/services/{service}/instances/{id}` | deregister (`X-Lease`); 204 |
//! | `GET /v1/services` | `{"services": [...]}` |
//! | `GET /v1/services/{service}?index=N&wait=30s&epoch=E` | `{"index", "instances"}` and `X-Registry-Epoch`, blocking with `index` (not across epochs) |
//! | `GET /v1/prometheus/targets` | every instance in Prometheus' HTTP service-discovery format ([`prometheus_sd`]) |
//! | `GET /health` | `{"status": "ok"}` |
//! | `GET /metrics` | Prometheus text ([`crate::store_metrics`] and per-route requests) |
//!
//! Errors are always `{"error": "..."}` ([`ApiError`]); a 409 for an id held under a live
//! lease adds `"retry_after_secs"` (and `Retry-After`). Every route runs under
//! [`service_telemetry::observe`]: counted per route in `/metrics`, and a request with a
//! valid W3C `traceparent` logs inside a `request{trace_id=...}` span.

mod auth;
pub mod error;
mod extract;
mod metrics;
mod per_client;
pub mod prometheus_sd;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, put};
use service_telemetry::Observer;
use tokio::sync::Semaphore;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use extract::LEASE_HEADER;
pub use routes::{EPOCH_HEADER, INDEX_HEADER};

use self::per_client::PerClientLimit;
use crate::config::{BearerToken, Config};
use crate::shutdown::Shutdown;
use crate::store::{MemoryStore, Store};
use crate::validate::TtlPolicy;

/// Largest request body accepted, in bytes; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Everything handlers share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Shared so clones are one pointer copy.
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The registry's data: the memory store, or another [`Store`] such as etcd.
    store: Arc<dyn Store>,
    /// TTL default and bounds for registrations.
    ttl_policy: TtlPolicy,
    /// Cap on a blocking query's wait, and its wait when it names none.
    max_wait: Duration,
    /// Required bearer token, if any.
    token: Option<BearerToken>,
    /// Whether reads need the token too.
    protect_reads: bool,
    /// One permit per blocking query in progress; bounds parked requests.
    blocking_permits: Semaphore,
    /// The permits `blocking_permits` started with.
    max_blocking_queries: usize,
    /// Parked blocking queries per peer IP, so one client cannot take every permit.
    per_client: PerClientLimit,
    /// Fired when the server shuts down: blocking queries return at once.
    shutdown: Shutdown,
}

impl AppState {
    /// State for `config`, with an empty in-memory store.
    pub fn new(config: &Config) -> Self {
        Self::with_store(config, Arc::new(MemoryStore::new(config.store_limits())))
    }

    /// State for `config`, serving `store` (see [`crate::store::open`]).
    pub fn with_store(config: &Config, store: Arc<dyn Store>) -> Self {
        let max_blocking_queries = config.max_blocking_queries.min(Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Shared {
                store,
                ttl_policy: config.ttl_policy(),
                max_wait: config.max_wait,
                token: config.token.clone(),
                protect_reads: config.protect_reads,
                blocking_permits: Semaphore::new(max_blocking_queries),
                max_blocking_queries,
                per_client: PerClientLimit::new(config.max_blocking_queries_per_client),
                shutdown: Shutdown::new(),
            }),
        }
    }

    /// The store behind the API.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The shutdown signal; firing it makes blocking queries return at once.
    pub fn shutdown(&self) -> &Shutdown {
        &self.inner.shutdown
    }

    /// How many blocking queries are waiting right now.
    pub fn blocking_queries(&self) -> usize {
        self.inner.max_blocking_queries - self.inner.blocking_permits.available_permits()
    }

    fn ttl_policy(&self) -> &TtlPolicy {
        &self.inner.ttl_policy
    }

    fn max_wait(&self) -> Duration {
        self.inner.max_wait
    }

    fn token(&self) -> Option<&str> {
        self.inner.token.as_ref().map(BearerToken::as_str)
    }

    fn protect_reads(&self) -> bool {
        self.inner.protect_reads
    }

    fn blocking_permits(&self) -> &Semaphore {
        &self.inner.blocking_permits
    }

    fn per_client(&self) -> &PerClientLimit {
        &self.inner.per_client
    }
}

/// The registry's router. Serve it with [`crate::run`], or call it directly in tests
/// (`app(state).oneshot(request)`).
pub fn app(state: AppState) -> Router {
    // Installed before anything is served, so the first requests are counted too.
    service_telemetry::prometheus::install();
    let api = Router::new()
        .route("/v1/services", get(routes::list_services))
        .route("/v1/services/{service}", get(routes::get_service))
        .route(
            "/v1/services/{service}/instances/{id}",
            put(routes::register).delete(routes::deregister),
        )
        .route(
            "/v1/services/{service}/instances/{id}/heartbeat",
            put(routes::heartbeat),
        )
        .route("/v1/prometheus/targets", get(prometheus_sd::targets))
        .route("/metrics", get(metrics::metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/health", get(routes::health))
        .merge(api)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn_with_state(
            Observer::continuing(),
            service_telemetry::observe,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests;
