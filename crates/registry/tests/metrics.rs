//! `/metrics` on a real socket: per-route request counts, instance counts per service,
//! lease expiries, and the token guard when reads are protected.

// Tests panic on unexpected errors; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use registry::Config;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Starts `registry::run` on a free port; the sender stops it.
async fn start(config: Config) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(registry::run(listener, config, async {
        let _ = stopped.await;
    }));
    (url, stop)
}

async fn metrics(http: &reqwest::Client, url: &str) -> String {
    let answer = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    answer.text().await.unwrap()
}

/// The value of a series, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

async fn register(http: &reqwest::Client, url: &str, service: &str, id: &str, ttl: u64) -> String {
    let answer = http
        .put(format!("{url}/v1/services/{service}/instances/{id}"))
        .json(&json!({ "address": format!("http://127.0.0.1:90{id:0>2}"), "ttl_secs": ttl }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json::<Value>().await.unwrap()["lease"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn metrics_show_instances_expiries_and_requests() {
    let (url, stop) = start(Config::default()).await;
    let http = reqwest::Client::new();
    let service = "metrics-expiry";
    let instances = format!("registry_instances{{service=\"{service}\"}}");
    let expiries = format!("registry_lease_expiries_total{{service=\"{service}\"}}");
    let registrations = r#"http_requests_total{method="PUT",route="/v1/services/{service}/instances/{id}",status="200"}"#;

    let before = metrics(&http, &url).await;
    register(&http, &url, service, "1", 1).await;
    let lease = register(&http, &url, service, "2", 60).await;
    let text = metrics(&http, &url).await;
    assert_eq!(sample(&text, &instances), 2.0, "{text}");
    assert!(sample(&text, "registry_services") >= 1.0, "{text}");
    assert!(
        sample(&text, registrations) >= sample(&before, registrations) + 2.0,
        "{text}"
    );
    assert_eq!(sample(&text, &expiries), 0.0, "{text}");

    // Instance 1 sends no heartbeat: its 1 s lease runs out and the sweeper removes it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics(&http, &url).await;
        if sample(&text, &instances) == 1.0 {
            assert_eq!(sample(&text, &expiries), 1.0, "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no expiry within 5 s: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The last instance leaves: its service's gauge goes back to 0 rather than vanishing.
    let answer = http
        .delete(format!("{url}/v1/services/{service}/instances/2"))
        .header("X-Lease", &lease)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let text = metrics(&http, &url).await;
    assert_eq!(sample(&text, &instances), 0.0, "{text}");
    assert_eq!(
        sample(&text, &expiries),
        1.0,
        "a deregistration is not an expiry"
    );
    assert!(text.contains("\nregistry_blocking_queries 0\n"), "{text}");
    let _ = stop.send(());
}

#[tokio::test]
async fn protected_reads_protect_metrics_too() {
    let config = Config {
        token: Some("s3cret".parse().unwrap()),
        protect_reads: true,
        ..Config::default()
    };
    let (url, stop) = start(config).await;
    let http = reqwest::Client::new();
    let refused = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let allowed = http
        .get(format!("{url}/metrics"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert!(
        allowed
            .text()
            .await
            .unwrap()
            .contains("http_requests_total")
    );
    let _ = stop.send(());
}
