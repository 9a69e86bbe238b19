//! The cart: add, view, checkout, refusals, through the HTML forms and the JSON API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::Router;
use axum::http::{StatusCode, header};
use serde_json::json;
use support::{app_for, get, post_form, post_json, send};

async fn api_cart(app: &Router, cookie: &str) -> serde_json::Value {
    let answer = send(app, get("/api/cart", Some(cookie))).await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.json()
}

/// Adds `item` through the form as a new visitor and returns their cookie.
async fn new_visitor_adds(app: &Router, item: &str) -> String {
    let answer = send(
        app,
        post_form("/cart/add", &format!("item_id={item}"), None),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    answer.cart_cookie().expect("no cart cookie")
}

#[tokio::test]
async fn add_view_and_checkout_through_the_pages() {
    let app = app_for(&[]);

    // The first add sets the cookie and redirects to the shop.
    let first = send(&app, post_form("/cart/add", "item_id=widget", None)).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert_eq!(first.headers[header::LOCATION], "/");
    let cookie = first.cart_cookie().expect("no cart cookie");

    for item in ["widget", "gizmo"] {
        let answer = send(
            &app,
            post_form("/cart/add", &format!("item_id={item}"), Some(&cookie)),
        )
        .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER);
        assert_eq!(answer.cart_cookie(), None, "the cookie is set only once");
    }

    // The shop's cart link counts units.
    let shop = send(&app, get("/", Some(&cookie))).await;
    assert!(shop.body.contains("<span id=\"cart-count\">3</span>"));

    let cart = send(&app, get("/cart", Some(&cookie))).await;
    assert_eq!(cart.status, StatusCode::OK);
    assert!(cart.body.contains("<td>Widget</td><td class=\"num\">$12.99</td><td class=\"num\">2</td><td class=\"num\">$25.98</td>"), "{}", cart.body);
    assert!(
        cart.body
            .contains("<td>Gizmo</td><td class=\"num\">$7.25</td><td class=\"num\">1</td>"),
        "{}",
        cart.body
    );
    assert!(!cart.body.contains("Gadget"));
    assert!(cart.body.contains("id=\"cart-total\">$33.23<"));
    assert!(cart.body.contains("action=\"/cart/checkout\""));
    assert!(cart.body.contains(">Checkout</button>"));

    assert_eq!(
        api_cart(&app, &cookie).await,
        json!({"items": [{"id": "widget", "quantity": 2}, {"id": "gizmo", "quantity": 1}], "total_cents": 3323})
    );

    let thanks = send(&app, post_form("/cart/checkout", "", Some(&cookie))).await;
    assert_eq!(thanks.status, StatusCode::OK);
    assert!(thanks.body.contains("Thank you"));
    assert!(thanks.body.contains("$33.23"));

    assert_eq!(
        api_cart(&app, &cookie).await,
        json!({"items": [], "total_cents": 0})
    );
    let empty = send(&app, get("/cart", Some(&cookie))).await;
    assert!(empty.body.contains("Your cart is empty."));
    assert!(!empty.body.contains(">Checkout</button>"));
}

#[tokio::test]
async fn visitors_have_separate_carts() {
    let app = app_for(&[]);
    let alice = new_visitor_adds(&app, "widget").await;
    let bob = new_visitor_adds(&app, "gadget").await;
    assert_ne!(alice, bob);

    send(&app, post_form("/cart/checkout", "", Some(&bob))).await;

    assert_eq!(
        api_cart(&app, &alice).await,
        json!({"items": [{"id": "widget", "quantity": 1}], "total_cents": 1299})
    );
    assert_eq!(api_cart(&app, &bob).await["items"], json!([]));
}

#[tokio::test]
async fn an_unknown_item_is_refused_and_the_cart_is_unchanged() {
    let app = app_for(&[]);
    let cookie = new_visitor_adds(&app, "gadget").await;
    let before = api_cart(&app, &cookie).await;

    let page = send(
        &app,
        post_form("/cart/add", "item_id=sprocket", Some(&cookie)),
    )
    .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("unknown item"), "{}", page.body);
    assert!(page.body.contains("<!DOCTYPE html>"));

    let api = send(
        &app,
        post_json(
            "/api/cart/items",
            r#"{"item_id": "sprocket"}"#,
            Some(&cookie),
        ),
    )
    .await;
    assert_eq!(api.status, StatusCode::BAD_REQUEST);
    assert_eq!(api.json(), json!({"error": "unknown item"}));

    // A form without the field, and JSON that is not the expected shape.
    let missing = send(&app, post_form("/cart/add", "item=widget", Some(&cookie))).await;
    assert!(missing.status.is_client_error(), "{}", missing.status);
    for body in ["{", r#"{"item": "widget"}"#, "[]"] {
        let bad = send(&app, post_json("/api/cart/items", body, Some(&cookie))).await;
        assert!(bad.status.is_client_error(), "{body}: {}", bad.status);
        assert!(bad.json()["error"].is_string(), "{body}: {}", bad.body);
    }

    assert_eq!(api_cart(&app, &cookie).await, before);
}

#[tokio::test]
async fn the_json_api_adds_items_and_sets_the_cookie() {
    let app = app_for(&[]);
    let first = send(
        &app,
        post_json("/api/cart/items", r#"{"item_id": "doohickey"}"#, None),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.json(),
        json!({"items": [{"id": "doohickey", "quantity": 1}], "total_cents": 399})
    );
    let cookie = first.cart_cookie().expect("no cart cookie");

    let second = send(
        &app,
        post_json(
            "/api/cart/items",
            r#"{"item_id": "doohickey"}"#,
            Some(&cookie),
        ),
    )
    .await;
    assert_eq!(
        second.json(),
        json!({"items": [{"id": "doohickey", "quantity": 2}], "total_cents": 798})
    );
    assert_eq!(second.cart_cookie(), None);
}

#[tokio::test]
async fn quantity_per_item_is_bounded() {
    let app = app_for(&[]);
    let cookie = new_visitor_adds(&app, "gizmo").await;
    for _ in 1..market_app::cart::MAX_QUANTITY {
        let answer = send(
            &app,
            post_json("/api/cart/items", r#"{"item_id": "gizmo"}"#, Some(&cookie)),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let refused = send(
        &app,
        post_json("/api/cart/items", r#"{"item_id": "gizmo"}"#, Some(&cookie)),
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("at most")
    );
    assert_eq!(
        api_cart(&app, &cookie).await["items"],
        json!([{"id": "gizmo", "quantity": market_app::cart::MAX_QUANTITY}])
    );
}
