//! The HTML pages a browser uses.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, State};
use axum::response::{Html, Redirect, Response};
use serde::Deserialize;
use service_telemetry::TraceContext;
use tokio::time::Instant;

use super::visitor::Visitor;
use super::{add_item, cart_count, line_views, page_trace, ratings_fetch};
use crate::catalog::{Item, Price};
use crate::error::PageError;
use crate::html;
use crate::ratings::{self, RatingView, SourceCounts};
use crate::state::AppState;

/// The "Add to cart" form.
#[derive(Debug, Deserialize)]
pub struct AddToCartForm {
    /// The catalog item to add.
    pub item_id: String,
}

/// `GET /`: fetches every rating concurrently and renders the shop.
pub async fn home(
    State(state): State<AppState>,
    trace: Option<Extension<TraceContext>>,
    visitor: Visitor,
) -> Response {
    let started = Instant::now();
    let items = state.catalog.items();
    let trace = page_trace(trace);
    let ratings = ratings::fetch_all(ratings_fetch(&state, &trace), items).await;
    let counts = SourceCounts::of(&ratings);
    let rows: Vec<(&Item, RatingView)> = items.iter().zip(ratings).collect();
    let page = html::home(&rows, cart_count(&state, &visitor));
    let elapsed_ms = started.elapsed().as_millis();
    tracing::info!(
        path = "/",
        elapsed_ms,
        "page load / in {elapsed_ms} ms (ratings: {counts})"
    );
    visitor.respond(Html(page))
}

/// `GET /cart`: the visitor's cart.
pub async fn cart(State(state): State<AppState>, visitor: Visitor) -> Response {
    let lines = state.carts.lines(&visitor.cart);
    let views = line_views(&state.catalog, &lines);
    tracing::info!(path = "/cart", lines = views.len(), "page load /cart");
    visitor.respond(Html(html::cart(&views)))
}

/// `POST /cart/add`: adds one unit and sends the browser back to the shop.
pub async fn add_to_cart(
    State(state): State<AppState>,
    visitor: Visitor,
    form: Result<Form<AddToCartForm>, FormRejection>,
) -> Response {
    let added = form.map_err(Into::into).and_then(|Form(form)| {
        add_item(&state, &visitor, &form.item_id).map(|q| (form.item_id, q))
    });
    match added {
        Ok((item_id, quantity)) => {
            tracing::info!(item = %item_id, quantity, "added {item_id} to a cart (now {quantity})");
            visitor.respond(Redirect::to("/"))
        }
        Err(error) => visitor.respond(PageError {
            error,
            cart_count: cart_count(&state, &visitor),
        }),
    }
}

/// `POST /cart/checkout`: empties the cart and thanks the visitor.
pub async fn checkout(State(state): State<AppState>, visitor: Visitor) -> Response {
    let bought = state.carts.checkout(&visitor.cart);
    let views = line_views(&state.catalog, &bought);
    let total = Price(html::total_cents(&views));
    tracing::info!(lines = views.len(), total = %total, "checkout: {} line(s), {total}", views.len());
    visitor.respond(Html(html::thank_you(&views)))
}
