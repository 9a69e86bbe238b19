//! Every route through `app(state).oneshot(request)`, without sockets.

#![allow(clippy::expect_used)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use clap::Parser;
use http_body_util::BodyExt;
use ratings_service::{AppState, Config, app};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The app configured by command-line `args`.
fn app_with(args: &[&str]) -> Router {
    let config = Config::try_parse_from(
        ["ratings-service", "--no-register"]
            .into_iter()
            .chain(args.iter().copied()),
    )
    .expect("flags parse");
    config.validate().expect("config is valid");
    app(AppState::from_config(&config).expect("embedded ratings load"))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts a JSON `{"error": ...}` body and returns the message.
    fn error(&self) -> String {
        let body = self.json();
        body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {body}"))
            .to_owned()
    }
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Answer {
    let request = Request::get(uri).body(Body::empty()).expect("request");
    send(app, request).await
}

async fn put_json(app: &Router, uri: &str, body: &str, token: Option<&str>) -> Answer {
    let mut request = Request::put(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    send(
        app,
        request.body(Body::from(body.to_owned())).expect("request"),
    )
    .await
}

#[tokio::test]
async fn serves_each_market_item_with_the_instance_number() {
    let app = app_with(&["--instance", "3"]);
    for (item, rating) in [("widget", 4), ("gadget", 3), ("gizmo", 5), ("doohickey", 2)] {
        let answer = get(&app, &format!("/ratings/{item}")).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.json(),
            json!({ "item_id": item, "rating": rating, "instance": 3 })
        );
    }
}

#[tokio::test]
async fn unknown_items_are_404_with_a_json_error() {
    let answer = get(&app_with(&[]), "/ratings/flux-capacitor").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.error(), "no rating for item flux-capacitor");
}

#[tokio::test]
async fn bad_item_ids_are_400_with_a_json_error() {
    let app = app_with(&[]);
    let long = format!("/ratings/{}", "x".repeat(65));
    for uri in [
        "/ratings/",
        long.as_str(),
        "/ratings/wid%20get",
        "/ratings/wid!get",
        "/ratings/%C3%A9",
        "/ratings/%FF",
    ] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(!answer.error().is_empty(), "{uri}");
    }
    // 64 characters is still fine (just unknown).
    let answer = get(&app, &format!("/ratings/{}", "x".repeat(64))).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_names_the_instance() {
    let answer = get(&app_with(&["--instance", "7"]), "/health").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json(), json!({ "status": "ok", "instance": 7 }));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = app_with(&[]);
    let answer = get(&app, "/nope").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.error(), "no route for GET /nope");

    let request = Request::builder()
        .method(Method::POST)
        .uri("/ratings/widget")
        .body(Body::empty())
        .expect("request");
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(answer.error().contains("POST"));
}

#[tokio::test]
async fn admin_routes_do_not_exist_without_the_flag() {
    let app = app_with(&["--admin-token", "t"]);
    assert_eq!(
        get(&app, "/admin/faults").await.status,
        StatusCode::NOT_FOUND
    );
    let answer = put_json(&app, "/admin/faults", r#"{"error_rate": 1.0}"#, Some("t")).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(!answer.error().is_empty());
    // And nothing changed.
    assert_eq!(get(&app, "/ratings/widget").await.status, StatusCode::OK);
}

#[tokio::test]
async fn admin_shows_applies_and_validates_faults() {
    let app = app_with(&["--admin", "--latency", "250ms"]);
    let answer = get(&app, "/admin/faults").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        json!({ "latency_ms": 250, "error_rate": 0.0, "garbage_rate": 0.0, "throttle_rate": 0.0 })
    );

    let answer = put_json(
        &app,
        "/admin/faults",
        r#"{"latency_ms": 0, "error_rate": 1.0}"#,
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let applied =
        json!({ "latency_ms": 0, "error_rate": 1.0, "garbage_rate": 0.0, "throttle_rate": 0.0 });
    assert_eq!(answer.json(), applied);
    let answer = get(&app, "/ratings/widget").await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);

    for bad in [
        r#"{"error_rate": 1.5}"#,
        r#"{"garbage_rate": -0.5}"#,
        r#"{"throttle_rate": 1.01}"#,
        r#"{"throttle_rate": "half"}"#,
        r#"{"latency_ms": 60001}"#,
        r#"{"latency_ms": 5, "error_rate": 2}"#,
        r#"{"latency_ms": -1}"#,
        r#"{"error_rate": "high"}"#,
        r#"{"surprise": true}"#,
        "not json",
    ] {
        let answer = put_json(&app, "/admin/faults", bad, None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!answer.error().is_empty(), "{bad}");
        assert_eq!(
            get(&app, "/admin/faults").await.json(),
            applied,
            "{bad} changed faults"
        );
    }

    let answer = put_json(&app, "/admin/faults", "{}", None).await;
    assert_eq!(answer.json(), applied, "an empty update changes nothing");
    let answer = put_json(&app, "/admin/faults", r#"{"error_rate": 0}"#, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(get(&app, "/ratings/widget").await.status, StatusCode::OK);
}

#[tokio::test]
async fn admin_token_is_required_when_set() {
    let app = app_with(&["--admin", "--admin-token", "s3cret"]);
    let answer = get(&app, "/admin/faults").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer
            .headers
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    assert!(!answer.error().is_empty());

    let body = r#"{"error_rate": 1.0}"#;
    for wrong in ["wrong", "s3cre", "s3crett", ""] {
        let answer = put_json(&app, "/admin/faults", body, Some(wrong)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
    }
    assert_eq!(get(&app, "/ratings/widget").await.status, StatusCode::OK);

    let answer = put_json(&app, "/admin/faults", body, Some("s3cret")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        get(&app, "/ratings/widget").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn error_rate_one_always_answers_500_json() {
    let app = app_with(&["--error-rate", "1.0", "--instance", "2"]);
    for _ in 0..20 {
        let answer = get(&app, "/ratings/widget").await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(answer.error().contains("instance 2"));
    }
    // Health is not subject to faults.
    assert_eq!(get(&app, "/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn throttle_rate_one_answers_429_with_retry_after_and_is_set_by_admin() {
    let app = app_with(&["--throttle-rate", "1", "--instance", "3", "--admin"]);
    for _ in 0..20 {
        let answer = get(&app, "/ratings/widget").await;
        assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            answer
                .headers
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"2"[..])
        );
        assert!(answer.error().contains("instance 3"), "{}", answer.error());
    }
    // Health is not subject to faults.
    assert_eq!(get(&app, "/health").await.status, StatusCode::OK);

    let answer = put_json(&app, "/admin/faults", r#"{"throttle_rate": 0}"#, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["throttle_rate"], json!(0.0));
    assert_eq!(get(&app, "/ratings/widget").await.status, StatusCode::OK);
    let answer = put_json(&app, "/admin/faults", r#"{"throttle_rate": 1.5}"#, None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&app, "/ratings/widget").await.status, StatusCode::OK);
}

#[tokio::test]
async fn garbage_rate_one_answers_200_with_a_body_that_is_not_json() {
    let app = app_with(&["--garbage-rate", "1"]);
    for _ in 0..20 {
        let answer = get(&app, "/ratings/widget").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(
            serde_json::from_slice::<Value>(&answer.body).is_err(),
            "garbage parsed as JSON: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn latency_is_added_before_answering() {
    let app = app_with(&["--latency", "1500ms", "--admin"]);
    let started = tokio::time::Instant::now();
    let answer = get(&app, "/ratings/widget").await;
    assert_eq!(answer.status, StatusCode::OK);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_millis(1600),
        "{waited:?}"
    );

    // Changed at run time, it applies to the next request.
    put_json(&app, "/admin/faults", r#"{"latency_ms": 20000}"#, None).await;
    let started = tokio::time::Instant::now();
    get(&app, "/ratings/gizmo").await;
    assert!(started.elapsed() >= Duration::from_secs(20));

    // Health does not wait.
    let started = tokio::time::Instant::now();
    get(&app, "/health").await;
    assert_eq!(started.elapsed(), Duration::ZERO);
}
