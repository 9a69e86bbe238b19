//! The client's fail-fast guard against the real programs: every instance paused, every
//! breaker open, calls answered at once; one instance resumed, traffic through it again.
//! (The same guards on paused time, with exact instants, are in
//! crates/discovery-client/tests/guards.rs.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::collections::BTreeMap;
use std::time::Duration;

use discovery_client::{Error, Event, RegistryDiscovery, ServiceClient};
use system_tests::*;
use tokio::time::Instant;

/// Three real ratings instances paused with SIGSTOP: once every breaker is open the client
/// fails fast, and the first instance resumed takes the traffic after its retest.
#[tokio::test]
async fn real_instances_all_paused_fail_fast_and_the_first_resumed_takes_traffic() {
    let registry = registry(&[]).await;
    let mut instances = Vec::new();
    for n in 1..=3 {
        instances.push(ratings(n, &registry, &[]).await);
    }
    wait_for_instances(&registry, "ratings", &["1", "2", "3"]).await;
    let retest = Duration::from_secs(1);
    let client = ServiceClient::builder("ratings")
        .discovery(RegistryDiscovery::new(&registry.url))
        .timeout(Duration::from_millis(200))
        .retest_delay(retest)
        .build()
        .unwrap();
    let first = client
        .get("/ratings/widget")
        .no_cache()
        .await
        .expect("served");
    assert_eq!(first.status(), 200);

    for instance in &mut instances {
        instance.pause();
    }
    let mut opened = BTreeMap::new();
    let mut rx = client.subscribe();
    while opened.len() < 3 {
        let _ = client.get("/ratings/widget").no_cache().await;
        while let Ok(event) = rx.try_recv() {
            if let Event::BreakerOpened { address, .. } = event {
                opened.insert(address, Instant::now());
            }
        }
    }
    for _ in 0..20 {
        let started = Instant::now();
        let answer = client.get("/ratings/widget").no_cache().await;
        assert!(
            matches!(answer, Err(Error::AllInstancesDown { .. })),
            "{answer:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
    }

    instances[1].resume();
    let resumed = Instant::now();
    let served = loop {
        if let Ok(response) = client.get("/ratings/widget").no_cache().await {
            break response;
        }
        assert!(resumed.elapsed() < Duration::from_secs(5), "no recovery");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        resumed.elapsed() <= retest + Duration::from_millis(500),
        "{:?}",
        resumed.elapsed()
    );
    assert_eq!(served.instance().id, "2");
    let body: serde_json::Value = serde_json::from_slice(served.body()).expect("json");
    assert_eq!(body["instance"], 2);
}
