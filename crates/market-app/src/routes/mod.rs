//! The router and its handlers.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the shop page: items, prices, ratings, "Add to cart" buttons |
//! | `GET /cart` | the visitor's cart with quantities, total and a Checkout button |
//! | `POST /cart/add` (form `item_id=...`) | adds one unit, then `303 See Other` to `/` |
//! | `POST /cart/checkout` | empties the cart and thanks the visitor |
//! | `GET /api/items` | the shop page's data as JSON, with each rating's source |
//! | `GET /api/cart` | `{"items": [{"id", "quantity"}], "total_cents": N}` |
//! | `POST /api/cart/items` (JSON `{"item_id": "..."}`) | adds one unit, answers the cart |
//! | `GET /health` | liveness, with the ratings instances and their breaker states |
//! | `GET /status` | the live dashboard: per ratings instance sparklines, a breaker timeline and the last events, pushed by `/api/status/stream`; without JavaScript, the table of breaker state, in flight, requests, failures, latency (refreshes every 2 s) |
//! | `GET /api/status` | the table as JSON ([`crate::status::StatusReport`]) |
//! | `GET /api/status/history` | the last five minutes and events as JSON ([`crate::status::HistoryReport`]) |
//! | `GET /api/status/stream` | server-sent events: `history` (the above), then `sample` each second and `event` as they happen ([`crate::status::Update`]) |
//! | `GET /metrics` | Prometheus text: per-route requests and durations, and the ratings client's metrics |
//!
//! HTML routes live in [`pages`], JSON routes in [`api`], what operators look at in
//! [`operations`]; [`visitor`] keeps track of whose cart a request is about.
//!
//! Every route runs under [`service_telemetry::observe`] in its starting mode: each request
//! continues the caller's W3C trace or starts one, its log lines carry the trace id, and it
//! is counted in `/metrics`.

pub mod api;
pub mod operations;
pub mod pages;
pub mod visitor;

use axum::extract::{DefaultBodyLimit, Extension};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use service_telemetry::{Observer, TraceContext};

use crate::cart::CartLine;
use crate::catalog::Catalog;
use crate::error::{AppError, PageError};
use crate::html::LineView;
use crate::ratings::Fetch;
use crate::state::AppState;

/// Largest request body accepted; the biggest legitimate one is a short form or JSON object.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The market's router, ready to serve (or to `oneshot` in tests).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/cart", get(pages::cart))
        .route("/cart/add", post(pages::add_to_cart))
        .route("/cart/checkout", post(pages::checkout))
        .route("/api/items", get(api::items))
        .route("/api/cart", get(api::cart))
        .route("/api/cart/items", post(api::add_to_cart))
        .route("/health", get(api::health))
        .route("/status", get(operations::status_page))
        .route("/api/status", get(operations::status))
        .route("/api/status/history", get(operations::history))
        .route("/api/status/stream", get(operations::stream))
        .route("/metrics", get(operations::metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            Observer::starting(),
            service_telemetry::observe,
        ))
        .with_state(state)
}

/// The page load's trace, which the observing middleware put in the request (a new one if
/// the router was built without it).
fn page_trace(trace: Option<Extension<TraceContext>>) -> TraceContext {
    trace.map_or_else(TraceContext::new_root, |Extension(trace)| trace)
}

/// What a page load's ratings calls need.
fn ratings_fetch<'a>(state: &'a AppState, trace: &'a TraceContext) -> Fetch<'a> {
    Fetch {
        client: &state.ratings,
        grpc: state.ratings_grpc.as_ref(),
        trace,
        shown: &state.shown,
    }
}

/// 404, as JSON under `/api/`, as a page elsewhere.
async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        AppError::NotFound.into_response()
    } else {
        PageError {
            error: AppError::NotFound,
            cart_count: 0,
        }
        .into_response()
    }
}

/// Adds one unit of `item_id` to the visitor's cart, if it is a catalog item.
fn add_item(state: &AppState, visitor: &visitor::Visitor, item_id: &str) -> Result<u32, AppError> {
    if state.catalog.get(item_id).is_none() {
        return Err(AppError::UnknownItem);
    }
    Ok(state.carts.add(&visitor.cart, item_id)?)
}

/// A cart's lines with their catalog items, in catalog order.
fn line_views<'a>(catalog: &'a Catalog, lines: &[CartLine]) -> Vec<LineView<'a>> {
    catalog
        .items()
        .iter()
        .filter_map(|item| {
            lines
                .iter()
                .find(|line| line.item_id == item.id)
                .map(|line| LineView {
                    item,
                    quantity: line.quantity,
                })
        })
        .collect()
}

/// Units in the visitor's cart.
fn cart_count(state: &AppState, visitor: &visitor::Visitor) -> u32 {
    state
        .carts
        .lines(&visitor.cart)
        .iter()
        .map(|line| line.quantity)
        .fold(0, u32::saturating_add)
}
