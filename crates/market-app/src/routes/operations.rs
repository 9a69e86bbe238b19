//! What an operator looks at: the live status of the ratings instances, and the metrics.

use axum::Json;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};

use crate::html;
use crate::state::AppState;
use crate::status::StatusReport;

/// `GET /status`: the ratings instances as an HTML table that refreshes itself every 2 s.
pub async fn status_page(State(state): State<AppState>) -> Response {
    Html(html::status(&state.status_report())).into_response()
}

/// `GET /api/status`: the same data as JSON, for scripts and `make watch`.
pub async fn status(State(state): State<AppState>) -> Json<StatusReport> {
    Json(state.status_report())
}

/// `GET /metrics`: everything recorded in this process, in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    service_telemetry::prometheus::render(&state.metrics)
}
