//! `GET /metrics`: the registry's metrics in the Prometheus text format.

use axum::extract::State;
use axum::response::Response;

use super::AppState;
use crate::store_metrics;

/// `GET /metrics`: per-route request counts and durations, instance counts per service,
/// lease expiries and waiting blocking queries (see [`crate::store_metrics`]). A read: it
/// needs the token when reads are protected.
pub async fn metrics(State(state): State<AppState>) -> Response {
    store_metrics::refresh(state.store().as_ref(), state.blocking_queries());
    service_telemetry::prometheus::render(&service_telemetry::prometheus::install())
}
