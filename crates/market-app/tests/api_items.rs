//! `GET /api/items`: ratings and where they came from (`live`, `cache`, `stale`, `none`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::http::StatusCode;
use fake_ratings::{Behaviour, FakeRatings, rating_of};
use market_app::AppState;
use market_app::cart::CartStore;
use market_app::catalog::Catalog;
use serde_json::{Value, json};
use support::{app_for, client, get, send};

async fn items(app: &axum::Router) -> Vec<Value> {
    let answer = send(app, get("/api/items", None)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.json()["items"]
        .as_array()
        .expect("no items array")
        .clone()
}

fn sources(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|i| i["rating_source"].as_str().unwrap())
        .collect()
}

/// Each item's `rating_instance`.
fn instances(items: &[Value]) -> BTreeMap<String, Value> {
    items
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["rating_instance"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn items_carry_ids_names_prices_and_live_ratings() {
    // Its answers say "instance": 7; the market names the instance as the client does, and
    // a static list numbers its first address 1.
    let fake = FakeRatings::start(7, Behaviour::Ratings).await;
    let app = app_for(&[&fake.url]);

    let items = items(&app).await;

    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["widget", "gadget", "gizmo", "doohickey"]);
    assert_eq!(items[0]["name"], "Widget");
    assert_eq!(items[0]["price_cents"], 1299);
    assert_eq!(items[3]["price_cents"], 399);
    for item in &items {
        let id = item["id"].as_str().unwrap();
        assert_eq!(item["rating"], json!(rating_of(id).unwrap()), "{id}");
        assert_eq!(item["rating_source"], "live", "{id}");
        assert_eq!(item["rating_instance"], 1, "{id}");
    }
}

#[tokio::test]
async fn when_ratings_fails_the_last_good_ratings_are_served_stale() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let app = app_for(&[&fake.url]);
    assert_eq!(sources(&items(&app).await), ["live"; 4]);

    fake.set(Behaviour::Status(503));
    let stale = items(&app).await;

    assert_eq!(sources(&stale), ["stale"; 4]);
    for item in &stale {
        let id = item["id"].as_str().unwrap();
        assert_eq!(item["rating"], json!(rating_of(id).unwrap()), "{id}");
        assert_eq!(item["rating_instance"], 1);
    }
    // The HTML page shows them too, and nothing errors.
    let page = send(&app, get("/", None)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body.matches("rating-number").count(), 4);
    assert!(!page.body.contains("no rating yet"));
}

#[tokio::test]
async fn when_every_instance_is_stopped_ratings_are_served_stale() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let app = app_for(&[&fake.url]);
    assert_eq!(sources(&items(&app).await), ["live"; 4]);

    fake.stop().await;

    assert_eq!(sources(&items(&app).await), ["stale"; 4]);
}

#[tokio::test]
async fn ratings_never_fetched_are_none() {
    let fake = FakeRatings::start(1, Behaviour::Status(503)).await;
    let app = app_for(&[&fake.url]);

    let items = items(&app).await;

    assert_eq!(sources(&items), ["none"; 4]);
    for item in &items {
        assert_eq!(item["rating"], Value::Null);
        assert_eq!(item["rating_instance"], Value::Null);
    }
}

#[tokio::test]
async fn an_item_ratings_does_not_know_is_none_and_trips_nothing() {
    let known = ["widget", "gadget", "gizmo"].map(String::from).to_vec();
    let fake = FakeRatings::start(1, Behaviour::RatingsOf(known)).await;
    let app = app_for(&[&fake.url]);

    for _ in 0..2 {
        // A 404 is the caller's problem: the breaker stays closed, so the second round
        // is live again rather than stale.
        assert_eq!(
            sources(&items(&app).await),
            ["live", "live", "live", "none"]
        );
    }
    assert_eq!(fake.hits(), 8);
}

#[tokio::test]
async fn with_a_cache_ttl_repeated_loads_are_served_from_the_cache() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let state = AppState::new(
        Catalog::standard(),
        client(&[&fake.url], Duration::from_secs(60)),
        CartStore::new(10),
    );
    let app = market_app::app(state);

    assert_eq!(sources(&items(&app).await), ["live"; 4]);
    assert_eq!(sources(&items(&app).await), ["cache"; 4]);
    assert_eq!(fake.hits(), 4, "cached answers must not call ratings");
}

#[tokio::test]
async fn cached_and_stale_ratings_name_the_instance_that_gave_them() {
    // Numbered unlike their places in the list (1 and 2), so that an instance named from
    // the answers' own "instance" field would show.
    let one = FakeRatings::start(21, Behaviour::Ratings).await;
    let two = FakeRatings::start(22, Behaviour::Ratings).await;
    let cached = market_app::app(AppState::new(
        Catalog::standard(),
        client(&[&one.url, &two.url], Duration::from_secs(60)),
        CartStore::new(10),
    ));
    let uncached = app_for(&[&one.url, &two.url]);
    let live_cached = items(&cached).await;
    let live_uncached = items(&uncached).await;
    assert_eq!(sources(&live_cached), ["live"; 4]);
    assert_eq!(sources(&live_uncached), ["live"; 4]);
    for item in live_cached.iter().chain(&live_uncached) {
        assert!(
            item["rating_instance"] == 1 || item["rating_instance"] == 2,
            "{item}"
        );
    }

    // From the fresh cache: each rating names the instance that gave it live.
    let from_cache = items(&cached).await;
    assert_eq!(sources(&from_cache), ["cache"; 4]);
    assert_eq!(instances(&from_cache), instances(&live_cached));

    // Every instance failing: each stale rating names the instance that gave it live.
    one.set(Behaviour::Status(503));
    two.set(Behaviour::Status(503));
    let stale = items(&uncached).await;
    assert_eq!(sources(&stale), ["stale"; 4]);
    assert_eq!(instances(&stale), instances(&live_uncached));
}

#[tokio::test]
async fn calls_are_spread_round_robin_over_the_instances() {
    let one = FakeRatings::start(1, Behaviour::Ratings).await;
    let two = FakeRatings::start(2, Behaviour::Ratings).await;
    let app = app_for(&[&one.url, &two.url]);

    let mut instances = BTreeSet::new();
    for _ in 0..3 {
        for item in items(&app).await {
            assert_eq!(item["rating_source"], "live");
            instances.insert(item["rating_instance"].as_u64().unwrap());
        }
    }

    assert_eq!(instances, BTreeSet::from([1, 2]));
    assert_eq!(one.hits() + two.hits(), 12);
    assert!(
        one.hits() >= 4 && two.hits() >= 4,
        "{} / {}",
        one.hits(),
        two.hits()
    );
}
