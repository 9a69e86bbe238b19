//! What an operator sees, through `oneshot`: `/api/status` and `/status` show the ratings
//! client's figures for each instance (breaker, in flight, requests, failures, latency),
//! `/metrics` counts requests, and page loads carry a W3C trace to ratings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use fake_ratings::{Behaviour, ClosedPort, FakeRatings};
use serde_json::{Value, json};
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

/// An instance's p50 and p99 latency, which must be there.
fn latencies(instance: &Value) -> (f64, f64) {
    let ms = |field: &str| {
        instance[field]
            .as_f64()
            .unwrap_or_else(|| panic!("no {field}: {instance}"))
    };
    (ms("latency_p50_ms"), ms("latency_p99_ms"))
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
    for id in ["1", "2"] {
        let fresh = instance(&status, id);
        for (field, zero) in [
            ("in_flight", json!(0)),
            ("requests", json!(0)),
            ("failures", json!(0)),
            ("latency_p50_ms", Value::Null),
            ("latency_p99_ms", Value::Null),
        ] {
            assert_eq!(fresh[field], zero, "{field} before any call: {fresh}");
        }
    }

    // A page load: the closed port fails (its breaker opens), instance 1 answers all four.
    let items = send(&app, get("/api/items", None)).await.json();
    let served: Vec<u64> = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["rating_instance"].as_u64())
        .collect();
    assert_eq!(served, [1, 1, 1, 1], "{items}");

    let status = status_until(&app, "an open breaker with its failure", |s| {
        instance(s, "2")["state"] == "open" && instance(s, "2")["failures"].as_u64() >= Some(1)
    })
    .await;
    let one = instance(&status, "1");
    assert_eq!(one["state"], "closed");
    assert_eq!(one["in_flight"], 0, "{one}");
    assert_eq!(one["requests"], 4, "one attempt per item: {one}");
    assert_eq!(one["failures"], 0);
    let (p50, p99) = latencies(one);
    assert!(p50 > 0.0 && p99 >= p50, "{one}");
    let two = instance(&status, "2");
    assert_eq!(
        two["requests"], two["failures"],
        "it failed every attempt: {two}"
    );
    assert!(
        two["latency_p50_ms"].is_number(),
        "failures are timed: {two}"
    );
    assert_eq!(
        status["ratings"],
        json!({"live": 4, "cache": 0, "stale": 0, "none": 0})
    );
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
            .contains("<td class=\"num requests\">4</td><td class=\"num failures\">0</td>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&format!(
            "<td class=\"num p50\">{:.2}</td><td class=\"num p99\">{:.2}</td>",
            p50, p99
        )),
        "{}",
        page.body
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
    let two = instance(&status, "2");
    let failures = two["failures"].as_u64().unwrap();
    assert!(failures >= 1, "{two}");
    assert_eq!(two["requests"], failures, "every 503 is a failure: {two}");
    // A hedge it got that was overtaken by instance 1's answer has no outcome: at most one
    // count per request it received.
    assert!(failures <= failing.hits() as u64, "{two}");
    latencies(two);
    let one = instance(&status, "1");
    assert_eq!(one["state"], "closed");
    assert_eq!(one["failures"], 0, "{one}");
    assert_eq!(one["requests"], healthy.hits() as u64, "{one}");
    assert!(healthy.hits() >= 4);
    latencies(one);

    // A second page load: instance 2's breaker is open, so instance 1 answers everything.
    send(&app, get("/api/items", None)).await;
    let status = send(&app, get("/api/status", None)).await.json();
    assert_eq!(instance(&status, "2")["requests"], failures);
    assert_eq!(
        instance(&status, "1")["requests"],
        healthy.hits() as u64,
        "{status}"
    );
    assert_eq!(status["ratings"]["live"], 8);
    healthy.stop().await;
    failing.stop().await;
}

#[tokio::test]
async fn status_counts_the_attempts_in_flight_and_times_them() {
    let slow = FakeRatings::start(
        1,
        Behaviour::delay(Duration::from_millis(300), Behaviour::Ratings),
    )
    .await;
    let app = app_for(&[&slow.url]);

    let load = tokio::spawn({
        let app = app.clone();
        async move { send(&app, get("/api/items", None)).await }
    });
    let status = status_until(&app, "attempts in flight", |s| {
        // Indexing, not `instance`: discovery may not have reported the instance yet.
        s["instances"][0]["in_flight"].as_u64() >= Some(1)
    })
    .await;
    assert!(
        instance(&status, "1")["in_flight"].as_u64() <= Some(4),
        "{status}"
    );
    assert_eq!(load.await.unwrap().status, StatusCode::OK);

    let status = send(&app, get("/api/status", None)).await.json();
    let one = instance(&status, "1");
    assert_eq!(one["in_flight"], 0, "{one}");
    assert_eq!((&one["requests"], &one["failures"]), (&json!(4), &json!(0)));
    let (p50, p99) = latencies(one);
    assert!(p50 >= 300.0 && p99 >= p50, "the fake waits 300 ms: {one}");
    slow.stop().await;
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
