//! HTTP/2 over real sockets: negotiated by ALPN over TLS, or by prior knowledge (h2c).
//! Concurrent calls to one instance share one connection (counted at the server), and an
//! instance that stops answering over HTTP/2 is hedged and its breaker opened, as over
//! HTTP/1.1.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use discovery_client::breaker::BreakerState;
use discovery_client::http::Version;
use discovery_client::{Balance, Hedging, ServiceClient, ServiceClientBuilder, StaticDiscovery};
use fake_ratings::{Behaviour, FakeRatings, Serve};
use futures::future::join_all;
use test_certs::TestCa;
use tokio::time::Instant;

#[derive(Debug, serde::Deserialize)]
struct Rating {
    instance: u32,
}

fn client(instances: &[&FakeRatings]) -> ServiceClientBuilder {
    let addresses: Vec<String> = instances.iter().map(|f| f.url.clone()).collect();
    ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(addresses))
        .timeout(Duration::from_secs(2))
}

async fn tls_pair(ca: &TestCa, first: Behaviour) -> (FakeRatings, FakeRatings) {
    let serve = || {
        let issued = ca.server(&["127.0.0.1"]);
        Serve::tls(issued.cert_pem, issued.key_pem)
    };
    (
        FakeRatings::serve(1, first, serve()).await,
        FakeRatings::serve(2, Behaviour::Ratings, serve()).await,
    )
}

/// A client for the bursts below: plain round-robin and no hedging, so each instance gets
/// exactly half of a burst. What they test is the transport. With the defaults the split
/// of a cold burst depends on the machine: while an instance's TLS handshake is under way,
/// its calls are hedged onto the other after 50 ms (seen on a busy machine: 169 and 31,
/// even with round-robin), and latency-aware picking splits by requests in flight. Those
/// rules are tested on their own.
fn burst_client(instances: &[&FakeRatings]) -> ServiceClientBuilder {
    client(instances)
        .balance(Balance::RoundRobin)
        .hedging(Hedging::Off)
}

/// 200 calls at once, none cached: all answered, exactly half by each instance, over HTTP/2.
async fn two_hundred_at_once(c: &ServiceClient) {
    let calls = (0..200).map(|_| c.get("/ratings/widget").no_cache().send());
    let mut by_instance = [0_usize; 2];
    for answer in join_all(calls).await {
        let answer = answer.expect("answered");
        assert_eq!(answer.version(), Version::HTTP_2);
        let rating: Rating = answer.json().expect("rating");
        by_instance[rating.instance as usize - 1] += 1;
    }
    assert_eq!(by_instance, [100, 100]);
}

#[tokio::test]
async fn concurrent_calls_share_one_h2_connection_per_instance_over_tls() {
    let ca = TestCa::new("CA");
    let (one, two) = tls_pair(&ca, Behaviour::Ratings).await;
    let c = burst_client(&[&one, &two])
        .tls_roots_only(ca.cert_pem())
        .build()
        .expect("client");
    two_hundred_at_once(&c).await;
    // The first call to each instance went alone (ALPN); the rest shared its connection:
    // one handshake per instance, not one per waiting call.
    assert_eq!((one.connections(), two.connections()), (1, 1));
    assert_eq!((one.used_connections(), two.used_connections()), (1, 1));
    two_hundred_at_once(&c).await;
    assert_eq!((one.connections(), two.connections()), (1, 1));
}

#[tokio::test]
async fn prior_knowledge_speaks_h2c_on_one_connection_per_instance() {
    let one = FakeRatings::serve(1, Behaviour::Ratings, Serve::plain()).await;
    let two = FakeRatings::serve(2, Behaviour::Ratings, Serve::plain()).await;
    let c = burst_client(&[&one, &two])
        .http2_prior_knowledge()
        .build()
        .expect("client");
    two_hundred_at_once(&c).await;
    assert_eq!((one.connections(), two.connections()), (1, 1));
    assert!(one.received().iter().all(|r| r.version == Version::HTTP_2));
}

#[tokio::test]
async fn an_h2_instance_that_stops_answering_is_hedged_then_opened() {
    let ca = TestCa::new("CA");
    let (hung, healthy) = tls_pair(&ca, Behaviour::Hang).await;
    let timeout = Duration::from_millis(500);
    let c = client(&[&hung, &healthy])
        .tls_roots_only(ca.cert_pem())
        .timeout(timeout)
        .hedge_after(Duration::from_millis(50))
        .failure_limit(1)
        .retest_delay(Duration::from_secs(60))
        .build()
        .expect("client");
    let started = Instant::now();
    let rating: Rating = c
        .get_json("/ratings/widget")
        .await
        .expect("the hedge answers");
    assert_eq!(rating.instance, 2);
    assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
    // The hedged-over attempt times out on its own and opens instance 1's breaker.
    let deadline = Instant::now() + timeout * 4;
    while c.instances()[0].state != BreakerState::Open {
        assert!(Instant::now() < deadline, "instance 1 never opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.instances()[1].state, BreakerState::Closed);
    for _ in 0..5 {
        let rating: Rating = c.get_json("/ratings/widget").await.expect("served by 2");
        assert_eq!(rating.instance, 2);
    }
}
