//! Stale pooled connections: an instance that closes idle keep-alive connections after 1 s,
//! while the client keeps them for 30 s. The next call must not fail: a request that never
//! reached the instance is sent again on a new connection, and is not the instance's failure.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use discovery_client::breaker::BreakerState;
use discovery_client::{Hedging, ServiceClient, StaticDiscovery};
use fake_ratings::{Behaviour, FakeRatings, Serve};

#[tokio::test]
async fn an_instance_closing_idle_connections_fails_no_call_and_opens_no_breaker() {
    let closing = Serve::plain().idle_close(Duration::from_secs(1));
    let fake = FakeRatings::serve(1, Behaviour::Ratings, closing).await;
    // The client's own pool keeps idle connections 30 s; one failure would open the breaker.
    let c = ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new([fake.url.clone()]))
        .failure_limit(1)
        .max_retries(0)
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    let mut failed = Vec::new();
    for call in 0..20 {
        if let Err(error) = c.get("/ratings/widget").no_cache().await {
            failed.push((call, error));
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(c.instances()[0].state, BreakerState::Closed);
    assert_eq!(c.instances()[0].failures, 0);
    // The instance did close them: each call came on a new connection.
    assert_eq!(fake.hits(), 20);
    assert!(
        fake.connections() >= 19,
        "{} connections",
        fake.connections()
    );
}
