//! `/metrics` on a real socket: per-route request counts, instance counts per service,
//! lease expiries, and the token guard when reads are protected.

// Tests panic on unexpected errors; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use registry::Config;
use serde_json::json;
use tokio::time::Instant;

use support::metrics::{sample, scrape};
use support::server::Server;

/// Registers instance `id` with a lease of `ttl` seconds; returns the lease.
async fn register(
    http: &reqwest::Client,
    server: &Server,
    service: &str,
    id: &str,
    ttl: u64,
) -> String {
    let body = json!({ "address": format!("http://127.0.0.1:90{id:0>2}"), "ttl_secs": ttl });
    server.register(http, service, id, &body).await
}

#[tokio::test]
async fn metrics_show_instances_expiries_and_requests() {
    let server = Server::start(Config::default()).await;
    let url = &server.url;
    let http = reqwest::Client::new();
    let service = "metrics-expiry";
    let instances = format!("registry_instances{{service=\"{service}\"}}");
    let expiries = format!("registry_lease_expiries_total{{service=\"{service}\"}}");
    let registrations = r#"http_requests_total{method="PUT",route="/v1/services/{service}/instances/{id}",status="200"}"#;

    let before = scrape(&http, url).await;
    register(&http, &server, service, "1", 1).await;
    let lease = register(&http, &server, service, "2", 60).await;
    let text = scrape(&http, url).await;
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
        let text = scrape(&http, url).await;
        if sample(&text, &instances) == 1.0 {
            assert_eq!(sample(&text, &expiries), 1.0, "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no expiry within 5 s: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The last instance leaves: its service's gauge goes back to 0 rather than vanishing.
    let answer = http
        .delete(server.instance(service, "2"))
        .header("X-Lease", &lease)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let text = scrape(&http, url).await;
    assert_eq!(sample(&text, &instances), 0.0, "{text}");
    assert_eq!(
        sample(&text, &expiries),
        1.0,
        "a deregistration is not an expiry"
    );
    assert!(text.contains("\nregistry_blocking_queries 0\n"), "{text}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn protected_reads_protect_metrics_too() {
    let config = Config {
        token: Some("s3cret".parse().unwrap()),
        protect_reads: true,
        ..Config::default()
    };
    let server = Server::start(config).await;
    let url = &server.url;
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
    server.stop().await.unwrap();
}
