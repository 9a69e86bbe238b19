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
//!
//! HTML routes live in [`pages`], JSON routes in [`api`]; [`visitor`] keeps track of whose
//! cart a request is about.

pub mod api;
pub mod pages;
pub mod visitor;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::cart::CartLine;
use crate::catalog::Catalog;
use crate::error::{AppError, PageError};
use crate::html::LineView;
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
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
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
