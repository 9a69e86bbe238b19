//! The tower pieces composed by hand in a plain `ServiceBuilder`, against real instances on
//! loopback port 0: discovery → round-robin over breaker(timeout(http)), under the cache.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use discovery_client::balance::RoundRobin;
use discovery_client::breaker::{BreakerConfig, Breakers};
use discovery_client::cache::{CacheConfig, CacheLayer};
use discovery_client::discovery::InstanceStream;
use discovery_client::events::{Event, EventBus};
use discovery_client::timeout::TimeoutLayer;
use discovery_client::transport::{HttpClient, HttpEndpoint};
use discovery_client::{Error, Source, StaticDiscovery};
use tokio::sync::broadcast;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Starts an instance answering its number, or 500 while `failing` is set.
async fn instance(n: u32, failing: Arc<AtomicBool>) -> String {
    async fn answer(State((n, failing)): State<(u32, Arc<AtomicBool>)>) -> (StatusCode, String) {
        if failing.load(Ordering::SeqCst) {
            (StatusCode::INTERNAL_SERVER_ERROR, "boom".into())
        } else {
            (StatusCode::OK, n.to_string())
        }
    }
    let app = Router::new()
        .route("/who", get(answer))
        .with_state((n, failing));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

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
    let failing: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let mut addresses = Vec::new();
    for (n, flag) in (1..).zip(&failing) {
        addresses.push(instance(n, Arc::clone(flag)).await);
    }
    let bus = EventBus::new(256);
    let mut events = bus.subscribe();
    let breakers = Breakers::new(
        "ratings",
        BreakerConfig {
            failure_limit: 1,
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
    let balancer = RoundRobin::new("ratings", endpoints).events(bus.clone());
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
        let request = http::Request::get("/who")
            .body(Bytes::new())
            .expect("request");
        let answer = stack.ready().await?.call(request).await?;
        let source = answer.extensions().get::<Source>().copied();
        Ok((
            String::from_utf8(answer.body().to_vec()).expect("utf-8"),
            source,
        ))
    };

    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(who().await.expect("answer").0);
    }
    assert_eq!(seen, ["1", "2", "3", "1", "2", "3"]);

    // Instance 2 fails once, its breaker opens, and it is skipped.
    failing[1].store(true, Ordering::SeqCst);
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
    failing[1].store(false, Ordering::SeqCst);
    for _ in 0..3 {
        who().await.expect("answer");
    }
    assert!(matches!(
        next_breaker_event(&mut events).await,
        Event::BreakerClosed { .. }
    ));

    // Everything fails: the last good answer is served, marked stale.
    for flag in &failing {
        flag.store(true, Ordering::SeqCst);
    }
    let (_, source) = who().await.expect("stale answer");
    assert_eq!(source, Some(Source::Stale));
}
