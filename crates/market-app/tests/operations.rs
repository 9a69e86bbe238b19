//! What an operator sees, through `oneshot`: `/api/status` and `/status` follow the ratings
//! instances' breakers, `/metrics` counts requests, and page loads carry a W3C trace to
//! ratings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use fake_ratings::{Behaviour, ClosedPort, FakeRatings};
use service_telemetry::TraceContext;
use support::{app_for, get, send};
use tokio::time::Instant;

/// Asks `/api/status` every 10 ms until `check` accepts it (at most 5 s).
async fn status_until(
    app: &Router,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = send(app, get("/api/status", None)).await;
        assert_eq!(answer.status, StatusCode::OK);
        let status = answer.json();
        if check(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "no {what} in time: {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn instance<'a>(status: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no instance {id} in {status}"))
}

#[tokio::test]
async fn status_shows_each_instance_and_follows_its_breaker() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let closed = ClosedPort::bind();
    let dead = closed.url.clone();
    let app = app_for(&[&fake.url, &dead]);

    // Both instances are known and closed before any call.
    let status = status_until(&app, "two instances", |s| {
        s["instances"].as_array().is_some_and(|i| i.len() == 2)
    })
    .await;
    assert_eq!(status["service"], "ratings");
    assert_eq!(instance(&status, "1")["state"], "closed");
    assert_eq!(instance(&status, "2")["state"], "closed");
    assert_eq!(instance(&status, "1")["requests"], 0);
    assert_eq!(
        instance(&status, "1")["latency_p50_ms"],
        serde_json::Value::Null
    );

    // A page load: the closed port fails (its breaker opens), instance 1 answers all four.
    let items = send(&app, get("/api/items", None)).await.json();
    let served: Vec<u64> = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["rating_instance"].as_u64())
        .collect();
    assert_eq!(served, [1, 1, 1, 1], "{items}");

    let status = status_until(&app, "an open breaker with its error", |s| {
        instance(s, "2")["state"] == "open" && instance(s, "2")["errors"].as_u64() >= Some(1)
    })
    .await;
    let one = instance(&status, "1");
    assert_eq!(one["state"], "closed");
    assert_eq!(one["requests"], 4);
    assert_eq!(one["errors"], 0);
    assert_eq!(one["latency_samples"], 4);
    assert!(one["latency_p50_ms"].as_f64().unwrap() > 0.0, "{one}");
    assert!(one["latency_mean_ms"].as_f64().unwrap() > 0.0, "{one}");
    let two = instance(&status, "2");
    assert_eq!(
        two["requests"], two["errors"],
        "it failed every call: {two}"
    );
    assert_eq!(two["latency_samples"], 0);
    assert_eq!(status["ratings"]["live"], 4);
    assert_eq!(status["instances"][1]["address"], dead.as_str());

    // The HTML page shows the same, and reloads itself.
    let page = send(&app, get("/status", None)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.body
            .contains("<meta http-equiv=\"refresh\" content=\"2\">")
    );
    assert!(
        page.body
            .contains("<tr class=\"instance\" id=\"instance-2\" data-state=\"open\">"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<tr class=\"instance\" id=\"instance-1\" data-state=\"closed\">")
    );
    assert!(
        page.body
            .contains("<td class=\"num requests\">4</td><td class=\"num errors\">0</td>")
    );
    fake.stop().await;
}

#[tokio::test]
async fn an_injected_failure_opens_a_breaker_on_the_status_page() {
    let healthy = FakeRatings::start(1, Behaviour::Ratings).await;
    let failing = FakeRatings::start(2, Behaviour::Status(503)).await;
    let app = app_for(&[&healthy.url, &failing.url]);

    let items = send(&app, get("/api/items", None)).await.json();
    assert!(
        items["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["rating_instance"] == 1)
    );
    let status = status_until(&app, "instance 2 open", |s| {
        instance(s, "2")["state"] == "open"
    })
    .await;
    assert!(instance(&status, "2")["errors"].as_u64().unwrap() >= 1);
    assert_eq!(instance(&status, "1")["state"], "closed");
    healthy.stop().await;
    failing.stop().await;
}

/// The value of `name{labels}` in Prometheus text, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let app = app_for(&[&fake.url]);
    let items = r#"http_requests_total{method="GET",route="/api/items",status="200"}"#;
    let missing = r#"http_requests_total{method="GET",route="unmatched",status="404"}"#;
    let duration = r#"http_request_duration_seconds_count{method="GET",route="/api/items"}"#;

    let before = send(&app, get("/metrics", None)).await;
    assert_eq!(before.status, StatusCode::OK);
    assert!(
        before.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    for _ in 0..3 {
        send(&app, get("/api/items", None)).await;
    }
    send(&app, get("/no/such/page", None)).await;
    let after = send(&app, get("/metrics", None)).await.body;

    // The recorder is process-wide and tests run in parallel: counts only move up.
    assert!(
        sample(&after, items) >= sample(&before.body, items) + 3.0,
        "{after}"
    );
    assert!(
        sample(&after, missing) >= sample(&before.body, missing) + 1.0,
        "{after}"
    );
    assert!(
        sample(&after, duration) >= sample(&before.body, duration) + 3.0,
        "{after}"
    );
    assert!(
        after.contains("# TYPE http_request_duration_seconds histogram"),
        "{after}"
    );
    assert!(after.contains("# HELP http_requests_total"), "{after}");
    assert!(
        !after.contains("/no/such/page"),
        "raw paths are never labels"
    );
    fake.stop().await;
}

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn a_page_load_continues_the_callers_trace_on_every_ratings_call() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let app = app_for(&[&fake.url]);
    for path in ["/", "/api/items"] {
        let request = Request::get(path)
            .header("traceparent", PARENT)
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app, request).await.status, StatusCode::OK);
    }

    let sent = fake.traceparents();
    assert_eq!(sent.len(), 8, "four calls per page load: {sent:?}");
    let contexts: Vec<TraceContext> = sent.iter().map(|t| t.parse().unwrap()).collect();
    for context in &contexts {
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.sampled());
    }
    let spans: HashSet<String> = contexts.iter().map(|c| c.span_id().to_string()).collect();
    assert_eq!(spans.len(), 8, "a new span id for each call: {sent:?}");
    fake.stop().await;
}

#[tokio::test]
async fn untraced_or_malformed_page_loads_start_one_trace_each() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let app = app_for(&[&fake.url]);
    send(&app, get("/api/items", None)).await;
    let malformed = Request::get("/api/items")
        .header("traceparent", "00-not-a-trace-01")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, malformed).await.status, StatusCode::OK);

    let contexts: Vec<TraceContext> = fake
        .traceparents()
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(contexts.len(), 8);
    let first: HashSet<_> = contexts[..4].iter().map(|c| c.trace_id()).collect();
    let second: HashSet<_> = contexts[4..].iter().map(|c| c.trace_id()).collect();
    assert_eq!(first.len(), 1, "one trace per page load");
    assert_eq!(second.len(), 1);
    assert_ne!(first, second, "each page load is its own trace");
    fake.stop().await;
}
