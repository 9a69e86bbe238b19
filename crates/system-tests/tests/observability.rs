//! Following the system from the outside, with the real programs: one trace id across the
//! market's and a ratings instance's logs, `/metrics` on all three programs, and the
//! market's `/api/status` when an instance is paused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::time::Duration;

use system_tests::*;

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

/// Waits (at most 5 s) until `proc` has logged `n` lines containing every one of `needles`,
/// and returns them.
async fn lines_with(proc: &Proc, needles: &[&str], n: usize) -> Vec<String> {
    let what = format!("{n} line(s) of {} with {needles:?}", proc.name);
    eventually(Duration::from_secs(5), &what, || async move {
        let found: Vec<String> = proc
            .lines()
            .into_iter()
            .filter(|line| needles.iter().all(|needle| line.contains(needle)))
            .collect();
        (found.len() >= n).then_some(found)
    })
    .await
}

/// The 32-hex-digit trace id in a `trace_id=...` log field.
fn trace_id_in(line: &str) -> String {
    let at = line.find("trace_id=").expect("a trace_id field") + "trace_id=".len();
    let id: String = line[at..].chars().take(32).collect();
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{line}"
    );
    id
}

#[tokio::test]
async fn a_page_loads_trace_id_appears_in_the_market_and_ratings_logs() {
    let registry = registry(&[]).await;
    let r1 = ratings(1, &registry, &[]).await;
    wait_for_instances(&registry, "ratings", &["1"]).await;
    let market = market(&registry, &[]).await;

    // A caller's trace is continued: the market's page-load line and each of the four
    // ratings calls, in the ratings instance's own log, carry the caller's trace id.
    let page = http()
        .get(&market.url)
        .header("traceparent", TRACEPARENT)
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status(), 200);
    let trace = format!("trace_id={TRACE_ID}");
    lines_with(&market, &[&trace, "page load / in"], 1).await;
    let served = lines_with(&r1, &[&trace, "served rating for"], 4).await;
    assert_eq!(served.len(), 4, "one line per item: {served:?}");

    // Without a caller's trace, the market starts one per page load and ratings logs it.
    let page = http()
        .get(format!("{}/api/items", market.url))
        .send()
        .await
        .expect("GET /api/items");
    assert_eq!(page.status(), 200);
    let line = lines_with(&market, &["page load /api/items in"], 1).await[0].clone();
    let started = trace_id_in(&line);
    assert_ne!(started, TRACE_ID);
    lines_with(
        &r1,
        &[&format!("trace_id={started}"), "served rating for"],
        4,
    )
    .await;

    // The registry logs a traced request's trace id too.
    let answer = http()
        .put(format!("{}/v1/services/traced/instances/1", registry.url))
        .header("traceparent", TRACEPARENT)
        .json(&serde_json::json!({ "address": "http://127.0.0.1:9" }))
        .send()
        .await
        .expect("PUT");
    assert_eq!(answer.status(), 200);
    lines_with(&registry, &[&trace, "instance registered"], 1).await;
}

/// The value of a Prometheus series, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

/// The sum of a metric's samples whose labels include every one of `labels` (such as
/// `service="ratings"`), whatever the other labels and their order.
fn labelled_sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(metric)?.strip_prefix('{')?;
            let (set, value) = rest.split_once("} ")?;
            let found = labels
                .iter()
                .all(|label| set.split(',').any(|l| l == *label));
            found.then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

async fn metrics_of(proc: &Proc) -> String {
    let answer = http()
        .get(format!("{}/metrics", proc.url))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(answer.status(), 200, "{}", proc.name);
    answer.text().await.expect("metrics text")
}

#[tokio::test]
async fn every_program_serves_metrics() {
    let registry = registry(&[]).await;
    let r1 = ratings(1, &registry, &[]).await;
    wait_for_instances(&registry, "ratings", &["1"]).await;
    let market = market(&registry, &[]).await;
    for _ in 0..2 {
        market_items(&market).await;
    }

    let text = metrics_of(&market).await;
    let items = r#"http_requests_total{method="GET",route="/api/items",status="200"}"#;
    assert_eq!(sample(&text, items), 2.0, "{text}");

    // The library's own metrics, as the market exports them: one success per ratings call,
    // every one to instance 1, whose breaker is closed.
    let instance = format!(r#"instance="{}""#, r1.url);
    let library = |metric: &str, labels: &[&str]| labelled_sum(&text, metric, labels);
    assert_eq!(
        library(
            "discovery_client_requests_total",
            &[r#"service="ratings""#, &instance, r#"outcome="success""#]
        ),
        8.0,
        "two page loads, four items, each a call through the library: {text}"
    );
    assert_eq!(
        library(
            "discovery_client_requests_total",
            &[r#"service="ratings""#, r#"outcome="failure""#]
        ),
        0.0,
        "{text}"
    );
    assert_eq!(
        library("discovery_client_breaker_state", &[&instance]),
        0.0,
        "closed: {text}"
    );
    assert!(
        text.contains("# TYPE discovery_client_request_duration_seconds histogram"),
        "{text}"
    );

    let text = metrics_of(&r1).await;
    let served = r#"http_requests_total{method="GET",route="/ratings/{item_id}",status="200"}"#;
    assert_eq!(
        sample(&text, served),
        8.0,
        "two page loads, four items: {text}"
    );
    assert!(
        text.contains("# TYPE http_request_duration_seconds histogram"),
        "{text}"
    );

    let text = metrics_of(&registry).await;
    assert_eq!(
        sample(&text, r#"registry_instances{service="ratings"}"#),
        1.0,
        "{text}"
    );
    assert_eq!(sample(&text, "registry_services"), 1.0, "{text}");
    let registered = r#"http_requests_total{method="PUT",route="/v1/services/{service}/instances/{id}",status="200"}"#;
    assert!(sample(&text, registered) >= 1.0, "{text}");
}

#[tokio::test]
async fn the_status_shows_a_paused_instances_breaker_open() {
    let registry = registry(&[]).await;
    let (mut r1, _r2) = two_ratings(&registry, &[]).await;
    let market = market(&registry, &["--timeout", "300ms", "--retest-delay", "30s"]).await;
    market_items(&market).await;
    let status_url = &format!("{}/api/status", market.url);
    let status = get_json(status_url).await;
    let states: Vec<&str> = status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["closed", "closed"], "{status}");

    // Ctrl-Z instance 1: its next call times out, its breaker opens, and the status says so.
    r1.pause();
    let items = market_items(&market).await;
    assert!(items.iter().all(|i| i.1.is_some()), "{items:?}");
    let status = eventually(
        Duration::from_secs(5),
        "instance 1 open, with its failure",
        || async move {
            let status = get_json(status_url).await;
            let paused = &status["instances"][0];
            (paused["state"] == "open" && paused["failures"].as_u64() >= Some(1)).then_some(status)
        },
    )
    .await;
    let (paused, running) = (&status["instances"][0], &status["instances"][1]);
    assert_eq!(paused["id"], "1");
    assert!(
        paused["requests"].as_u64() >= paused["failures"].as_u64(),
        "{status}"
    );
    // Its timed-out attempts took the whole timeout (300 ms).
    assert!(
        paused["latency_p99_ms"].as_f64().unwrap() >= 290.0,
        "{status}"
    );
    assert_eq!(running["state"], "closed", "{status}");
    assert!(running["requests"].as_u64().unwrap() >= 4, "{status}");
    assert_eq!(running["failures"], 0, "{status}");
    assert_eq!(running["in_flight"], 0, "{status}");
    assert!(
        running["latency_p50_ms"].as_f64().unwrap() > 0.0,
        "{status}"
    );

    let page = http()
        .get(format!("{}/status", market.url))
        .send()
        .await
        .expect("GET /status")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("id=\"instance-1\" data-state=\"open\""),
        "{page}"
    );
    r1.resume();
}
