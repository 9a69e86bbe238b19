//! The tower pieces composed by hand in a plain `ServiceBuilder`, against fake instances on
//! loopback port 0: discovery → balancer over breaker(timeout(http)), under the cache.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use discovery_client::balance::Balancer;
use discovery_client::breaker::{BreakerConfig, Breakers, FailurePolicy};
use discovery_client::cache::{CacheConfig, CacheLayer};
use discovery_client::discovery::InstanceStream;
use discovery_client::events::{Event, EventBus};
use discovery_client::timeout::TimeoutLayer;
use discovery_client::transport::{HttpClient, HttpEndpoint};
use discovery_client::{Error, Source, StaticDiscovery};
use fake_ratings::{Behaviour, FakeRatings};
use tokio::sync::broadcast;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

async fn next_breaker_event(events: &mut broadcast::Receiver<Event>) -> Event {
    let wait = async {
        loop {
            match events.recv().await.expect("events") {
                e @ (Event::BreakerOpened { .. }
                | Event::BreakerRetesting { .. }
                | Event::BreakerClosed { .. }) => return e,
                _ => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3), wait)
        .await
        .expect("event in time")
}

#[tokio::test]
async fn a_hand_built_stack_balances_trips_retests_and_falls_back_to_stale() {
    let mut fakes = Vec::new();
    for n in 1..=3 {
        fakes.push(FakeRatings::start(n, Behaviour::Ratings).await);
    }
    let addresses: Vec<String> = fakes.iter().map(|f| f.url.clone()).collect();
    let bus = EventBus::new(256);
    let mut events = bus.subscribe();
    let breakers = Breakers::new(
        "ratings",
        BreakerConfig {
            policy: FailurePolicy::ConsecutiveFailures(1),
            retest_delay: Duration::from_millis(300),
            ..BreakerConfig::default()
        },
    )
    .events(bus.clone());
    let http = HttpClient::new();
    let endpoints = InstanceStream::new("ratings", StaticDiscovery::new(addresses.clone()))
        .expect("runtime")
        .events(bus.clone())
        .endpoints(move |instance| {
            ServiceBuilder::new()
                .layer(breakers.layer(instance))
                .layer(TimeoutLayer::new(
                    &instance.address,
                    Duration::from_millis(500),
                ))
                .service(HttpEndpoint::with_client(http.clone(), &instance.address))
        });
    let balancer = Balancer::new("ratings", endpoints).events(bus.clone());
    let mut stack = ServiceBuilder::new()
        .layer(CacheLayer::new(
            "ratings",
            CacheConfig {
                ttl: Duration::ZERO, // always upstream, but keep the stale fallback
                ..CacheConfig::default()
            },
        ))
        .buffer(16)
        .service(balancer);
    let mut who = async || -> Result<(String, Option<Source>), Error> {
        let request = http::Request::get("/ratings/widget")
            .body(Bytes::new())
            .expect("request");
        let answer = stack.ready().await?.call(request).await?;
        let source = answer.extensions().get::<Source>().copied();
        let rating: serde_json::Value = serde_json::from_slice(answer.body()).expect("json");
        Ok((rating["instance"].to_string(), source))
    };

    // The first call, made as soon as the stack is built, is answered: the balancer waits
    // for discovery's first set.
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(who().await.expect("answer").0);
    }
    assert_eq!(seen, ["1", "2", "3", "1", "2", "3"]);

    // Instance 2 fails once, its breaker opens, and it is skipped.
    fakes[1].set(Behaviour::Status(500));
    let mut seen = Vec::new();
    for _ in 0..6 {
        if let Ok((n, _)) = who().await {
            seen.push(n);
        }
    }
    assert!(!seen.contains(&"2".to_string()), "{seen:?}");
    assert_eq!(
        next_breaker_event(&mut events).await,
        Event::BreakerOpened {
            service: "ratings".into(),
            address: addresses[1].clone()
        }
    );
    // The retest timer moves it to Retest by itself; a good probe closes it.
    assert!(matches!(
        next_breaker_event(&mut events).await,
        Event::BreakerRetesting { .. }
    ));
    fakes[1].set(Behaviour::Ratings);
    for _ in 0..3 {
        who().await.expect("answer");
    }
    assert!(matches!(
        next_breaker_event(&mut events).await,
        Event::BreakerClosed { .. }
    ));

    // Everything fails: the last good answer is served, marked stale.
    for fake in &fakes {
        fake.set(Behaviour::Status(500));
    }
    let (_, source) = who().await.expect("stale answer");
    assert_eq!(source, Some(Source::Stale));
}

/// A stack over a registry that cannot be reached: its calls say so ([`Error::Discovery`]),
/// at once once discovery has reported it, rather than "all services are down".
#[tokio::test]
async fn a_stack_over_an_unreachable_registry_answers_a_discovery_error() {
    let closed = fake_ratings::ClosedPort::bind();
    let endpoints = InstanceStream::new(
        "ratings",
        discovery_client::RegistryDiscovery::new(&closed.url),
    )
    .expect("runtime")
    .endpoints(move |instance| {
        let breakers = Breakers::new("ratings", BreakerConfig::default());
        breakers
            .layer(instance)
            .layer(HttpEndpoint::new(&instance.address))
    });
    let mut balancer =
        Balancer::new("ratings", endpoints).wait_for_discovery(Duration::from_secs(5));
    let request = || {
        http::Request::get("/ratings/widget")
            .body(Bytes::new())
            .expect("request")
    };
    let answer = balancer.ready().await.expect("ready").call(request()).await;
    assert!(
        matches!(&answer, Err(Error::Discovery(reason)) if reason.contains(&closed.url)),
        "{answer:?}"
    );
}
