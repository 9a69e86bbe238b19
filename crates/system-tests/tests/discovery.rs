//! Discovery against the real registry: how fast changes arrive, and what happens when the
//! registry itself goes away.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::time::Duration;

use discovery_client::{Event, RegistryDiscovery, ServiceClient};
use system_tests::*;
use tokio::time::Instant;

async fn next_instance_event(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Event {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an instance event in time")
            .expect("events open");
        if matches!(
            event,
            Event::InstanceAdded { .. } | Event::InstanceRemoved { .. }
        ) {
            return event;
        }
    }
}

#[tokio::test]
async fn registrations_reach_the_client_within_100ms() {
    let registry = registry(&[]).await;
    let client = ServiceClient::builder("inventory")
        .discovery(RegistryDiscovery::new(&registry.url))
        .build()
        .expect("client");
    let mut events = client.subscribe();
    // Let the client's first blocking query reach the registry.
    let _ = client.get("/").await;
    let http = http();
    let instance = format!("{}/v1/services/inventory/instances/a", registry.url);
    for round in 0..5 {
        let started = Instant::now();
        let answer = http
            .put(&instance)
            .json(&serde_json::json!({"address": "http://127.0.0.1:9"}))
            .send()
            .await
            .expect("register");
        assert!(answer.status().is_success());
        let lease = answer.json::<serde_json::Value>().await.expect("json")["lease"]
            .as_str()
            .expect("lease")
            .to_string();
        let added = next_instance_event(&mut events).await;
        let took = started.elapsed();
        assert!(
            matches!(added, Event::InstanceAdded { ref id, .. } if id == "a"),
            "{added:?}"
        );
        assert!(
            took < Duration::from_millis(100),
            "round {round}: seen after {took:?}"
        );

        let started = Instant::now();
        let gone = http
            .delete(&instance)
            .header("X-Lease", &lease)
            .send()
            .await
            .expect("deregister");
        assert!(gone.status().is_success());
        let removed = next_instance_event(&mut events).await;
        let took = started.elapsed();
        assert!(
            matches!(removed, Event::InstanceRemoved { ref id, .. } if id == "a"),
            "{removed:?}"
        );
        assert!(
            took < Duration::from_millis(100),
            "round {round}: gone after {took:?}"
        );
    }
}

#[tokio::test]
async fn a_stopped_instance_disappears_from_the_client_at_once() {
    let registry = registry(&[]).await;
    let mut r1 = ratings(1, &registry, &[]).await;
    wait_for_instances(&registry, "ratings", &["1"]).await;
    let client = ServiceClient::builder("ratings")
        .discovery(RegistryDiscovery::new(&registry.url))
        .build()
        .expect("client");
    let mut events = client.subscribe();
    let first = next_instance_event(&mut events).await;
    assert!(
        matches!(first, Event::InstanceAdded { ref id, .. } if id == "1"),
        "{first:?}"
    );
    assert!(r1.terminate().await);
    let exited = Instant::now();
    let removed = next_instance_event(&mut events).await;
    assert!(
        matches!(removed, Event::InstanceRemoved { ref id, .. } if id == "1"),
        "{removed:?}"
    );
    assert!(
        exited.elapsed() < Duration::from_millis(100),
        "{:?}",
        exited.elapsed()
    );
}

#[tokio::test]
async fn with_the_registry_gone_the_market_keeps_using_the_last_known_instances() {
    let mut registry = registry(&[]).await;
    let (_r1, _r2) = two_ratings(&registry, &[]).await;
    let mut market = market(&registry, &[]).await;
    assert!(market_items(&market).await.iter().all(|i| i.2 == "live"));

    registry.kill();
    market
        .wait_for_log("discovery outage for ratings", Duration::from_secs(5))
        .await;
    for _ in 0..5 {
        let items = market_items(&market).await;
        assert!(items.iter().all(|i| i.2 == "live"), "{items:?}");
        let served_by: Vec<u64> = items.iter().filter_map(|i| i.3).collect();
        assert!(
            served_by.contains(&1) && served_by.contains(&2),
            "{served_by:?}"
        );
    }
    assert_eq!(
        market.count("discovery outage"),
        1,
        "logged once per outage"
    );
}
