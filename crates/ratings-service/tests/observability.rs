//! `/metrics` through `app(state).oneshot(request)`. (Trace ids in the log are checked in
//! `trace_logs.rs`, a test binary of its own, because it captures the log.)

#![allow(clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use clap::Parser;
use http_body_util::BodyExt;
use ratings_service::{AppState, Config, app};
use tower::ServiceExt;

fn app_with(args: &[&str]) -> Router {
    let config = Config::try_parse_from(
        ["ratings-service", "--no-register"]
            .into_iter()
            .chain(args.iter().copied()),
    )
    .expect("flags parse");
    app(AppState::from_config(&config).expect("embedded ratings load"))
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String) {
    let request = Request::get(uri);
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).expect("utf-8"))
}

/// The value of a Prometheus series, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().expect("a number"))
}

#[tokio::test]
async fn metrics_count_requests_per_route() {
    let app = app_with(&["--instance", "4"]);
    let served = r#"http_requests_total{method="GET",route="/ratings/{item_id}",status="200"}"#;
    let unknown = r#"http_requests_total{method="GET",route="/ratings/{item_id}",status="404"}"#;
    let (_, before) = get(&app, "/metrics").await;
    for item in ["widget", "gadget", "no-such-item"] {
        get(&app, &format!("/ratings/{item}")).await;
    }
    let (status, after) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        sample(&after, served) >= sample(&before, served) + 2.0,
        "{after}"
    );
    assert!(
        sample(&after, unknown) >= sample(&before, unknown) + 1.0,
        "{after}"
    );
    assert!(
        after.contains(
            r#"http_request_duration_seconds_bucket{method="GET",route="/ratings/{item_id}",le="0.005"}"#
        ),
        "{after}"
    );
}

#[tokio::test]
async fn the_metrics_answer_is_prometheus_text() {
    let response = app_with(&[])
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
}
