//! What an operator looks at: the live status of the ratings instances, and the metrics.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::html;
use crate::state::AppState;
use crate::status::{HistoryReport, StatusReport, Update};

/// `GET /status`: the live dashboard around the ratings instances' table (which, without
/// JavaScript, refreshes itself every 2 s).
pub async fn status_page(State(state): State<AppState>) -> Response {
    Html(html::status(&state.status_report())).into_response()
}

/// `GET /api/status`: the table's data as JSON, for scripts.
pub async fn status(State(state): State<AppState>) -> Json<StatusReport> {
    Json(state.status_report())
}

/// `GET /api/status/history`: the last five minutes of each instance and the last events,
/// for `watch --timeline` and scripts.
pub async fn history(State(state): State<AppState>) -> Json<HistoryReport> {
    Json(state.history_report())
}

/// `GET /api/status/stream`: server-sent events for the dashboard. First `history` (what
/// `/api/status/history` answers), then `sample` every second and `event` the moment the
/// ratings client reports one; `history` again if this stream fell so far behind that it
/// missed updates. Ends when the market shuts down.
pub async fn stream(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    // Subscribed before the history is taken, so no update falls between the two.
    let updates = state.history.subscribe();
    let closing = state.history.closing();
    let first = Some(history_event(&state.history_report()));
    let stream = futures::stream::unfold(
        (state, updates, closing, first),
        |(state, mut updates, mut closing, first)| async move {
            if let Some(first) = first {
                return Some((Ok(first), (state, updates, closing, None)));
            }
            let event = tokio::select! {
                update = updates.recv() => match update {
                    Ok(update) => update_event(&update),
                    Err(RecvError::Lagged(_)) => history_event(&state.history_report()),
                    Err(RecvError::Closed) => return None,
                },
                _ = closing.wait_for(|closing| *closing) => return None,
            };
            Some((Ok(event), (state, updates, closing, None)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The `history` event.
fn history_event(report: &HistoryReport) -> SseEvent {
    json_event("history", report)
}

/// A `sample` or `event` event.
fn update_event(update: &Update) -> SseEvent {
    match update {
        Update::Sample { .. } => json_event("sample", update),
        Update::Event(_) => json_event("event", update),
    }
}

/// An event named `name` whose data is `value` as JSON.
fn json_event(name: &str, value: &impl serde::Serialize) -> SseEvent {
    // Our types always serialize (string keys, finite or null numbers); an empty data line
    // is what a client would see if one did not.
    let data = serde_json::to_string(value).unwrap_or_default();
    SseEvent::default().event(name).data(data)
}

/// `GET /metrics`: everything recorded in this process, in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    service_telemetry::prometheus::render(&state.metrics)
}
