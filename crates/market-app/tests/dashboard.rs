//! The live dashboard's data, through `oneshot`: `/api/status/history` keeps each instance's
//! samples and the client's events, `/api/status/stream` pushes them as server-sent events
//! the moment they happen, and `/status` carries the dashboard without external assets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use axum::http::{StatusCode, header};
use fake_ratings::{Behaviour, FakeRatings};
use http_body_util::BodyExt;
use market_app::AppState;
use serde_json::Value;
use support::{get, send, state_for};
use tokio::time::Instant;
use tower::ServiceExt;

/// Starts the history's sampling task, as `market_app::run` does.
fn record(state: &AppState) {
    tokio::spawn(
        state
            .history
            .clone()
            .run(state.status_source.clone(), state.shown.clone()),
    );
}

/// Asks `/api/status/history` every 20 ms until `check` accepts it (at most 5 s).
async fn history_until(app: &axum::Router, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = send(app, get("/api/status/history", None)).await;
        assert_eq!(answer.status, StatusCode::OK);
        let history = answer.json();
        if check(&history) {
            return history;
        }
        assert!(Instant::now() < deadline, "no {what} in time: {history}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kinds(history: &Value) -> Vec<(String, Option<String>)> {
    history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["instance"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_history_keeps_samples_and_the_breaker_events() {
    let healthy = FakeRatings::start(1, Behaviour::Ratings).await;
    let failing = FakeRatings::start(2, Behaviour::Status(503)).await;
    let state = state_for(&[&healthy.url, &failing.url]);
    record(&state);
    let app = market_app::app(state);
    send(&app, get("/api/items", None)).await;

    let opened = (String::from("opened"), Some(String::from("2")));
    let history = history_until(&app, "instance 2 opened, and sampled open", |h| {
        kinds(h).contains(&opened)
            && h["instances"][1]["samples"]
                .as_array()
                .and_then(|s| s.last())
                .is_some_and(|s| s["state"] == "open")
    })
    .await;
    assert_eq!(history["service"], "ratings");
    assert_eq!(history["sample_every_ms"], 1000);
    let added: Vec<_> = kinds(&history)
        .into_iter()
        .filter(|(kind, _)| kind == "added")
        .collect();
    assert_eq!(added.len(), 2, "both instances added: {history}");
    let one = &history["instances"][0];
    assert_eq!(one["id"], "1");
    assert!(
        one["samples"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "closed"),
        "{one}"
    );
    assert_eq!(history["ratings"]["live"], 4, "{history}");
    healthy.stop().await;
    failing.stop().await;
}

/// Reads the stream's next server-sent event (at most 5 s): its name and JSON data.
async fn next_event(body: &mut axum::body::Body, buffer: &mut String) -> Option<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(str::to_owned)
            };
            let (Some(event), Some(data)) = (field("event: "), field("data: ")) else {
                continue; // a keep-alive comment
            };
            return Some((event, serde_json::from_str(&data).unwrap()));
        }
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("an event within 5 s")?
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buffer.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
}

#[tokio::test]
async fn the_stream_starts_with_the_history_then_pushes_events_and_ends_at_shutdown() {
    let healthy = FakeRatings::start(1, Behaviour::Ratings).await;
    let failing = FakeRatings::start(2, Behaviour::Status(503)).await;
    let state = state_for(&[&healthy.url, &failing.url]);
    record(&state);
    let history = state.history.clone();
    let app = market_app::app(state);

    let response = app
        .clone()
        .oneshot(get("/api/status/stream", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let mut buffer = String::new();
    let (name, first) = next_event(&mut body, &mut buffer).await.unwrap();
    assert_eq!(name, "history");
    assert_eq!(first["service"], "ratings", "{first}");

    // A page load makes instance 2 fail: its breaker opening is pushed at once, not at the
    // next sample.
    send(&app, get("/api/items", None)).await;
    let started = Instant::now();
    let mut samples = 0;
    let opened = loop {
        let (name, data) = next_event(&mut body, &mut buffer).await.unwrap();
        match name.as_str() {
            "sample" => {
                samples += 1;
                assert_eq!(data["type"], "sample", "{data}");
            }
            "event" if data["kind"] == "opened" => break data,
            "event" => {}
            other => panic!("unexpected event {other}: {data}"),
        }
    };
    assert_eq!(opened["instance"], "2", "{opened}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "pushed as it happened ({samples} samples before it)"
    );

    // Shutdown ends the stream.
    history.close();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while next_event(&mut body, &mut buffer).await.is_some() {}
    })
    .await;
    assert!(end.is_ok(), "the stream ends once the market closes it");
    healthy.stop().await;
    failing.stop().await;
}

#[tokio::test]
async fn the_status_page_carries_the_dashboard_and_works_without_javascript() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let app = support::app_for(&[&fake.url]);
    let page = send(&app, get("/status", None)).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.body;
    // Without JavaScript: the table, refreshed by the browser.
    assert!(
        html.contains("<noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript>"),
        "{html}"
    );
    assert!(html.contains("<table id=\"instances\">"), "{html}");
    // With it: the dashboard (shown once the stream answers) and its inline script.
    assert!(html.contains("<section id=\"dashboard\" hidden>"), "{html}");
    assert!(
        html.contains("new EventSource(\"/api/status/stream\")"),
        "{html}"
    );
    for external in ["src=\"http", "href=\"http", "<link", "src=\"//"] {
        assert!(!html.contains(external), "no external assets ({external})");
    }
    fake.stop().await;
}
