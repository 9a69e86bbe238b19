//! The HTML shop page through `oneshot`, against fake ratings instances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use axum::http::{StatusCode, header};
use discovery_client::{ServiceClient, StaticDiscovery};
use fake_ratings::{Behaviour, ClosedPort, FakeRatings};
use market_app::AppState;
use market_app::cart::CartStore;
use market_app::catalog::{Catalog, Item};
use support::{app_for, get, send};
use tokio::time::Instant;

const NAMES_AND_PRICES: [(&str, &str); 4] = [
    ("Widget", "$12.99"),
    ("Gadget", "$24.50"),
    ("Gizmo", "$7.25"),
    ("Doohickey", "$3.99"),
];

#[tokio::test]
async fn the_page_shows_four_items_with_prices_and_ratings() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let app = app_for(&[&fake.url]);

    let page = send(&app, get("/", None)).await;

    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    for (name, price) in NAMES_AND_PRICES {
        assert!(
            page.body.contains(&format!("<h3>{name}</h3>")),
            "{name} missing"
        );
        assert!(page.body.contains(price), "{price} missing");
    }
    // widget 4, gadget 3, gizmo 5, doohickey 2 (see fake_ratings::rating_of).
    for (stars, number) in [("★★★★☆", 4), ("★★★☆☆", 3), ("★★★★★", 5), ("★★☆☆☆", 2)]
    {
        assert!(page.body.contains(stars), "{stars} missing");
        assert!(
            page.body
                .contains(&format!("<span class=\"rating-number\">{number}</span>/5")),
            "rating {number} missing"
        );
    }
    assert!(!page.body.contains("no rating yet"));
    assert_eq!(page.body.matches("action=\"/cart/add\"").count(), 4);
    assert_eq!(page.body.matches(">Add to cart</button>").count(), 4);
    for id in ["widget", "gadget", "gizmo", "doohickey"] {
        assert!(
            page.body
                .contains(&format!("name=\"item_id\" value=\"{id}\""))
        );
    }
    assert!(page.body.contains("href=\"/cart\""));
    assert!(page.body.contains("<span id=\"cart-count\">0</span>"));
    assert_eq!(fake.hits(), 4, "one ratings call per item");
}

#[tokio::test]
async fn with_no_reachable_instance_the_page_still_works_and_says_no_rating_yet() {
    let port = ClosedPort::bind();
    let closed = port.url.clone();
    for urls in [vec![closed.as_str()], vec![]] {
        let app = app_for(&urls);
        let started = Instant::now();
        let page = send(&app, get("/", None)).await;
        assert_eq!(page.status, StatusCode::OK, "{urls:?}");
        assert_eq!(page.body.matches("no rating yet").count(), 4, "{urls:?}");
        for (name, price) in NAMES_AND_PRICES {
            assert!(page.body.contains(name) && page.body.contains(price));
        }
        assert!(!page.body.contains("rating-number"));
        // A refused connection fails fast; nothing waits for a timeout.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_ratings_of_a_page_are_fetched_concurrently() {
    let delay = Duration::from_millis(300);
    let fake = FakeRatings::start(1, Behaviour::delay(delay, Behaviour::Ratings)).await;
    let app = app_for(&[&fake.url]);

    let started = Instant::now();
    let page = send(&app, get("/", None)).await;
    let elapsed = started.elapsed();

    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body.matches("rating-number").count(), 4);
    assert_eq!(fake.hits(), 4);
    assert_eq!(fake.max_in_flight(), 4, "all four calls should overlap");
    // In sequence they would take at least 4 × 300 ms.
    assert!(elapsed >= delay, "{elapsed:?}");
    assert!(elapsed < delay * 3, "took {elapsed:?}: not concurrent");
}

#[tokio::test]
async fn catalog_text_is_html_escaped() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let catalog = Catalog::new(vec![Item::new(
        "widget",
        "<script>alert(\"pwned\")</script> & Sons",
        "It's <b>bold</b>",
        100,
    )])
    .unwrap();
    let client = ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new([fake.url.clone()]))
        .build()
        .unwrap();
    let app = market_app::app(AppState::new(catalog, client, CartStore::new(10)));

    let page = send(&app, get("/", None)).await;

    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert!(!page.body.contains("<b>bold"), "{}", page.body);
    assert!(
        page.body
            .contains("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; Sons")
    );
    assert!(page.body.contains("It&#39;s &lt;b&gt;bold&lt;/b&gt;"));
    assert!(page.body.contains("$1.00"));
}

#[tokio::test]
async fn a_new_visitor_gets_a_cart_cookie_once() {
    let app = app_for(&[]);
    let first = send(&app, get("/", None)).await;
    let cookie = first
        .cart_cookie()
        .expect("no cart cookie for a new visitor");
    let set_cookie = first.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));

    let again = send(&app, get("/", Some(&cookie))).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.cart_cookie(), None);
}

#[tokio::test]
async fn unknown_paths_are_404_as_html_or_json() {
    let app = app_for(&[]);
    let page = send(&app, get("/nowhere", None)).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("<!DOCTYPE html>"));
    let api = send(&app, get("/api/nowhere", None)).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(api.json(), serde_json::json!({"error": "no such page"}));
}

#[tokio::test]
async fn health_lists_the_ratings_instances() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let app = app_for(&[&fake.url]);
    // Discovery publishes the static list right after the client starts.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health = send(&app, get("/health", None)).await;
        assert_eq!(health.status, StatusCode::OK);
        let json = health.json();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["ratings"]["service"], "ratings");
        if json["ratings"]["instances"]
            == serde_json::json!([{"id": "1", "address": fake.url, "state": "closed"}])
        {
            break;
        }
        assert!(Instant::now() < deadline, "instances never listed: {json}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
