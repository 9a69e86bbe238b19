//! The JSON API: the shop's data for scripts and tests.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize, Serializer};
use service_telemetry::TraceContext;
use tokio::time::Instant;

use super::visitor::Visitor;
use super::{add_item, line_views, page_trace, ratings_fetch};
use crate::error::AppError;
use crate::html;
use crate::ratings::{self, RatingSource, SourceCounts};
use crate::state::AppState;

/// `GET /api/items` answer.
#[derive(Debug, Serialize)]
pub struct ItemsBody<'a> {
    /// Every item, in display order.
    pub items: Vec<ItemJson<'a>>,
}

/// One item with its rating.
#[derive(Debug, Serialize)]
pub struct ItemJson<'a> {
    /// Item id.
    pub id: &'a str,
    /// Display name.
    pub name: &'a str,
    /// One-line description.
    pub description: &'a str,
    /// Price in cents.
    pub price_cents: u64,
    /// Stars, or `null` for no rating.
    pub rating: Option<u8>,
    /// `live`, `cache`, `stale` or `none`.
    pub rating_source: RatingSource,
    /// The id of the ratings instance that gave the rating (for `cache` and `stale`, the one
    /// that gave it when it was fetched), `null` for none: a number when the id is one (the
    /// ratings demo's are `1`, `2`, ...), otherwise a string.
    #[serde(serialize_with = "instance_id")]
    pub rating_instance: Option<&'a str>,
}

/// `GET /api/cart` answer.
#[derive(Debug, Serialize)]
pub struct CartBody {
    /// The cart's lines, in catalog order.
    pub items: Vec<CartItemJson>,
    /// Sum of price times quantity.
    pub total_cents: u64,
}

/// One cart line.
#[derive(Debug, Serialize)]
pub struct CartItemJson {
    /// Item id.
    pub id: String,
    /// Units in the cart.
    pub quantity: u32,
}

/// `POST /api/cart/items` body.
#[derive(Debug, Deserialize)]
pub struct AddItemBody {
    /// The catalog item to add.
    pub item_id: String,
}

/// `GET /api/items`: every item with its rating, fetched concurrently.
pub async fn items(
    State(state): State<AppState>,
    trace: Option<Extension<TraceContext>>,
) -> Response {
    let started = Instant::now();
    let catalog = &state.catalog;
    let trace = page_trace(trace);
    let ratings = ratings::fetch_all(ratings_fetch(&state, &trace), catalog.items()).await;
    let items = catalog
        .items()
        .iter()
        .zip(&ratings)
        .map(|(item, rating)| ItemJson {
            id: &item.id,
            name: &item.name,
            description: &item.description,
            price_cents: item.price_cents,
            rating: rating.rating,
            rating_source: rating.source,
            rating_instance: rating.instance.as_deref(),
        })
        .collect();
    let elapsed_ms = started.elapsed().as_millis();
    let counts = SourceCounts::of(&ratings);
    tracing::info!(
        path = "/api/items",
        elapsed_ms,
        "page load /api/items in {elapsed_ms} ms (ratings: {counts})"
    );
    Json(ItemsBody { items }).into_response()
}

/// `id` as a JSON number when it is a number written plainly (`"7"`, not `"07"`), otherwise
/// as a string.
fn instance_id<S: Serializer>(id: &Option<&str>, serializer: S) -> Result<S::Ok, S::Error> {
    match *id {
        None => serializer.serialize_none(),
        Some(id) => match id.parse::<u64>() {
            Ok(number) if number.to_string() == id => serializer.serialize_u64(number),
            _ => serializer.serialize_str(id),
        },
    }
}

fn cart_body(state: &AppState, visitor: &Visitor) -> CartBody {
    let lines = state.carts.lines(&visitor.cart);
    let views = line_views(&state.catalog, &lines);
    CartBody {
        total_cents: html::total_cents(&views),
        items: views
            .iter()
            .map(|line| CartItemJson {
                id: line.item.id.clone(),
                quantity: line.quantity,
            })
            .collect(),
    }
}

/// `GET /api/cart`: the visitor's cart.
pub async fn cart(State(state): State<AppState>, visitor: Visitor) -> Response {
    visitor.respond(Json(cart_body(&state, &visitor)))
}

/// `POST /api/cart/items`: adds one unit and answers the cart.
pub async fn add_to_cart(
    State(state): State<AppState>,
    visitor: Visitor,
    body: Result<Json<AddItemBody>, JsonRejection>,
) -> Response {
    let added = body
        .map_err(AppError::from)
        .and_then(|Json(body)| add_item(&state, &visitor, &body.item_id));
    match added {
        Ok(_) => visitor.respond(Json(cart_body(&state, &visitor))),
        Err(error) => visitor.respond(error),
    }
}

/// `GET /health`: `{"status": "ok", "ratings": {"service", "instances": [...]}}`.
pub async fn health(State(state): State<AppState>) -> Response {
    let source = &state.status_source;
    let instances: Vec<serde_json::Value> = source
        .instances()
        .into_iter()
        .map(|i| serde_json::json!({ "id": i.id, "address": i.address, "state": i.state.as_str() }))
        .collect();
    Json(serde_json::json!({
        "status": "ok",
        "ratings": { "service": source.service(), "instances": instances },
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn rating_instance(id: Option<&str>) -> Value {
        let item = ItemJson {
            id: "widget",
            name: "Widget",
            description: "",
            price_cents: 1,
            rating: Some(4),
            rating_source: RatingSource::Live,
            rating_instance: id,
        };
        serde_json::to_value(item).unwrap()["rating_instance"].clone()
    }

    #[test]
    fn instance_ids_are_numbers_when_they_are_written_as_numbers() {
        assert_eq!(rating_instance(Some("1")), json!(1));
        assert_eq!(
            rating_instance(Some("18446744073709551615")),
            json!(u64::MAX)
        );
        assert_eq!(rating_instance(Some("07")), json!("07"));
        assert_eq!(rating_instance(Some("ratings-a")), json!("ratings-a"));
        assert_eq!(rating_instance(Some("-1")), json!("-1"));
        assert_eq!(rating_instance(None), Value::Null);
    }
}
