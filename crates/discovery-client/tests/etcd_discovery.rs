//! `EtcdDiscovery` against a real etcd on loopback: the set and its changes reach the client
//! at once, the last known set survives an etcd outage (reported once, recovered once), and
//! losing a member of a three-member cluster does not lose the watch.
//!
//! Instances are written here the way the registry's etcd store writes them:
//! `/discovery/<service>/<id>` holding `{"address", "metadata", ...}`, on an etcd lease.
#![cfg(feature = "etcd")]
// Tests panic on unexpected errors; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use discovery_client::{EtcdDiscovery, Event, ServiceClient};
use etcd_client::{Client, PutOptions};
use etcd_harness::EtcdCluster;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::time::Instant;

fn value(address: &str) -> String {
    json!({ "address": address, "metadata": { "zone": "a" }, "ttl_secs": 30, "lease_sha256": "" })
        .to_string()
}

async fn put(etcd: &mut Client, key: &str, address: &str, lease: Option<i64>) {
    let options = lease.map(|id| PutOptions::new().with_lease(id));
    etcd.put(key, value(address), options).await.unwrap();
}

/// The client's current instance ids, sorted.
fn ids(client: &ServiceClient) -> Vec<String> {
    let mut ids: Vec<String> = client.instances().into_iter().map(|i| i.id).collect();
    ids.sort();
    ids
}

/// Waits (at most 5 s) until the client's instance ids are `expected`; how long it took.
async fn until_ids(client: &ServiceClient, expected: &[&str]) -> Duration {
    let started = Instant::now();
    // Bounded by the 5 s limit; polls every 5 ms.
    while ids(client) != expected {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "instances {:?}, expected {expected:?}",
            ids(client)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

/// Every event received within `window`.
async fn events_within(events: &mut broadcast::Receiver<Event>, window: Duration) -> Vec<Event> {
    let until = Instant::now() + window;
    let mut seen = Vec::new();
    while let Ok(Ok(event)) = tokio::time::timeout_at(until, events.recv()).await {
        seen.push(event);
    }
    seen
}

fn count(events: &[Event], wanted: fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| wanted(e)).count()
}

#[tokio::test]
async fn publishes_the_set_and_follows_every_change_at_once() {
    let Some(cluster) = EtcdCluster::start(1) else {
        return;
    };
    let mut etcd = Client::connect(cluster.endpoints(), None).await.unwrap();
    put(
        &mut etcd,
        "/discovery/ratings/1",
        "http://127.0.0.1:8001",
        None,
    )
    .await;
    let lease = etcd.lease_grant(30, None).await.unwrap().id();
    put(
        &mut etcd,
        "/discovery/ratings/2",
        "http://127.0.0.1:8002",
        Some(lease),
    )
    .await;
    // Not instances of ratings: another service, a deeper key, a value without an address.
    put(
        &mut etcd,
        "/discovery/market/1",
        "http://127.0.0.1:5000",
        None,
    )
    .await;
    put(
        &mut etcd,
        "/discovery/ratings/1/extra",
        "http://127.0.0.1:1",
        None,
    )
    .await;
    etcd.put("/discovery/ratings/junk", "not json", None)
        .await
        .unwrap();

    let client = ServiceClient::builder("ratings")
        .discovery(EtcdDiscovery::new(cluster.endpoints()))
        .build()
        .unwrap();
    until_ids(&client, &["1", "2"]).await;
    let first = client
        .instances()
        .into_iter()
        .find(|i| i.id == "1")
        .unwrap();
    assert_eq!(first.address, "http://127.0.0.1:8001");

    // A new key, a deletion, a lease running out (revoked here): each reaches the client
    // within milliseconds, with no polling.
    put(
        &mut etcd,
        "/discovery/ratings/3",
        "http://127.0.0.1:8003",
        None,
    )
    .await;
    let took = until_ids(&client, &["1", "2", "3"]).await;
    assert!(
        took < Duration::from_millis(500),
        "a new instance took {took:?}"
    );
    etcd.delete("/discovery/ratings/1", None).await.unwrap();
    let took = until_ids(&client, &["2", "3"]).await;
    assert!(took < Duration::from_millis(500), "a removal took {took:?}");
    etcd.lease_revoke(lease).await.unwrap();
    let took = until_ids(&client, &["3"]).await;
    assert!(took < Duration::from_millis(500), "an expiry took {took:?}");
    // A value that stops being an instance removes it too.
    etcd.put("/discovery/ratings/3", "garbage", None)
        .await
        .unwrap();
    until_ids(&client, &[]).await;
}

#[tokio::test]
async fn keeps_the_last_set_through_an_outage_and_reports_it_once() {
    let Some(mut cluster) = EtcdCluster::start(1) else {
        return;
    };
    let mut etcd = Client::connect(cluster.endpoints(), None).await.unwrap();
    put(&mut etcd, "/team/ratings/1", "http://127.0.0.1:8001", None).await;
    let client = ServiceClient::builder("ratings")
        .discovery(
            EtcdDiscovery::new(cluster.endpoints())
                .prefix("/team")
                .timeout(Duration::from_millis(500)),
        )
        .build()
        .unwrap();
    let mut events = client.subscribe();
    until_ids(&client, &["1"]).await;

    cluster.kill(0);
    // Several reconnection attempts fail meanwhile; the outage is reported once.
    let seen = events_within(&mut events, Duration::from_secs(3)).await;
    assert_eq!(
        count(&seen, |e| matches!(e, Event::DiscoveryOutage { .. })),
        1,
        "{seen:?}"
    );
    assert_eq!(
        count(&seen, |e| matches!(e, Event::InstanceRemoved { .. })),
        0
    );
    assert_eq!(ids(&client), ["1"], "the last known set stays in use");

    cluster.restart(0);
    let mut etcd = Client::connect(cluster.endpoints(), None).await.unwrap();
    put(&mut etcd, "/team/ratings/2", "http://127.0.0.1:8002", None).await;
    until_ids(&client, &["1", "2"]).await;
    let seen = events_within(&mut events, Duration::from_millis(300)).await;
    assert_eq!(
        count(&seen, |e| matches!(e, Event::DiscoveryRecovered { .. })),
        1,
        "{seen:?}"
    );
    assert_eq!(
        count(&seen, |e| matches!(e, Event::DiscoveryOutage { .. })),
        0
    );
}

#[tokio::test]
async fn losing_a_cluster_member_does_not_lose_the_watch() {
    let Some(mut cluster) = EtcdCluster::start(3) else {
        return;
    };
    let mut etcd = Client::connect([cluster.endpoint(1), cluster.endpoint(2)], None)
        .await
        .unwrap();
    put(
        &mut etcd,
        "/discovery/ratings/1",
        "http://127.0.0.1:8001",
        None,
    )
    .await;
    // The source starts on member 0, which is killed below.
    let client = ServiceClient::builder("ratings")
        .discovery(EtcdDiscovery::new(cluster.endpoints()))
        .build()
        .unwrap();
    let mut events = client.subscribe();
    until_ids(&client, &["1"]).await;

    cluster.kill(0);
    // Written while the source moves to another member (and etcd elects a new leader, if
    // member 0 led): resuming from the next revision means it is not missed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let write = etcd.put("/discovery/ratings/2", value("http://127.0.0.1:8002"), None);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), write).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the surviving members never took the write"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = until_ids(&client, &["1", "2"]).await;
    assert!(
        took < Duration::from_secs(3),
        "seen {took:?} after the write"
    );
    let seen = events_within(&mut events, Duration::from_millis(200)).await;
    assert_eq!(
        count(&seen, |e| matches!(e, Event::InstanceRemoved { .. })),
        0,
        "{seen:?}"
    );
}
