//! The library's pieces as plain tower middleware, composed by hand.
//!
//! ```text
//! cargo run -p examples --example tower-stack
//! ```
//!
//! It starts three real ratings instances in this process (the `ratings-service` library,
//! on 127.0.0.1 port 0, its faults switched from here), then builds this stack with a
//! `tower::ServiceBuilder`:
//!
//! ```text
//! CacheLayer ─ Buffer ─ Balancer ─┬─ BreakerService ─ Timeout ─ HttpEndpoint (instance 1)
//!                   (InstanceStream ├─ BreakerService ─ Timeout ─ HttpEndpoint (instance 2)
//!                    as Discover)   └─ BreakerService ─ Timeout ─ HttpEndpoint (instance 3)
//! ```
//!
//! and walks through the story: calls interleave round-robin; instance 2 hangs, times out and
//! its breaker opens (that call is answered from the stale cache); the retest timer lets one
//! probe through and the breaker closes again; finally every instance fails, every breaker
//! opens, the balancer says `ratings: all services are down`, and the cache serves the last
//! good answer, marked stale. The typed events from the shared `EventBus` are printed as they
//! arrive. It ends by itself in about two seconds.
//!
//! Unlike `ServiceClient`, this stack does not retry on another instance: add
//! `tower::retry` around the balancer if you want that.

use std::time::Duration;

use bytes::Bytes;
use discovery_client::balance::Balancer;
use discovery_client::breaker::{BreakerConfig, Breakers, FailurePolicy};
use discovery_client::cache::{CacheConfig, CacheLayer};
use discovery_client::discovery::InstanceStream;
use discovery_client::events::EventBus;
use discovery_client::timeout::TimeoutLayer;
use discovery_client::transport::HttpEndpoint;
use discovery_client::{Error, Source, StaticDiscovery};
use ratings_service::AppState;
use ratings_service::catalog::Catalog;
use ratings_service::faults::{Faults, FaultsUpdate};
use ratings_service::state::AdminAccess;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Starts ratings instance `n` on a free loopback port; returns its address and its state,
/// whose faults this program switches.
async fn start_instance(n: u16) -> Result<(String, AppState), Box<dyn std::error::Error>> {
    let state = AppState::new(n, Catalog::embedded()?, Faults::NONE, AdminAccess::Disabled);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let app = ratings_service::app(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((address, state))
}

/// Sets every fault of `instance` at once.
fn set_faults(instance: &AppState, latency_ms: u64, error_rate: f64) -> Result<(), String> {
    let update = FaultsUpdate {
        latency_ms: Some(latency_ms),
        error_rate: Some(error_rate),
        garbage_rate: Some(0.0),
        throttle_rate: Some(0.0),
    };
    instance
        .faults()
        .update(update)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .init();

    let mut addresses = Vec::new();
    let mut instances = Vec::new();
    for n in 1..=3 {
        let (address, state) = start_instance(n).await?;
        println!("instance {n} listens on {address}");
        addresses.push(address);
        instances.push(state);
    }

    // One event bus for every piece; print what it says.
    let bus = EventBus::new(256);
    let mut events = bus.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            println!("    event: {event:?}");
        }
    });

    // Breakers kept by address, one layer per instance discovery reports.
    let breakers = Breakers::new(
        "ratings",
        BreakerConfig {
            policy: FailurePolicy::ConsecutiveFailures(1),
            retest_delay: Duration::from_millis(600),
            ..BreakerConfig::default()
        },
    )
    .events(bus.clone());
    let endpoints = InstanceStream::new("ratings", StaticDiscovery::new(addresses.clone()))?
        .events(bus.clone())
        .endpoints(move |instance| {
            ServiceBuilder::new()
                .layer(breakers.layer(instance))
                .layer(TimeoutLayer::new(
                    &instance.address,
                    Duration::from_millis(300),
                ))
                .service(HttpEndpoint::new(&instance.address))
        });
    let balancer = Balancer::new("ratings", endpoints).events(bus.clone());
    let mut ratings = ServiceBuilder::new()
        .layer(CacheLayer::new(
            "ratings",
            CacheConfig {
                ttl: Duration::ZERO, // always ask upstream; keep the stale fallback
                ..CacheConfig::default()
            },
        ))
        .buffer(32) // Balancer is not Clone; the cache calls a clone per miss
        .service(balancer);

    let mut call = async |label: &str| {
        let request = http::Request::get("/ratings/widget").body(Bytes::new())?;
        let result: Result<_, Error> = async { ratings.ready().await?.call(request).await }.await;
        match result {
            Ok(answer) => {
                let source = answer
                    .extensions()
                    .get::<Source>()
                    .map_or("?", |s| s.as_str());
                let body = String::from_utf8_lossy(answer.body()).into_owned();
                println!("{label}: {} ({source}) {body}", answer.status());
            }
            Err(error) => println!("{label}: error: {error}"),
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    };

    println!("\n1. Three healthy instances: calls interleave round-robin.");
    for i in 1..=3 {
        call(&format!("  call {i}")).await?;
    }

    println!("\n2. Instance 2 hangs: its call times out and its breaker opens.");
    set_faults(&instances[1], 5_000, 0.0)?;
    for i in 4..=8 {
        call(&format!("  call {i}")).await?;
    }

    println!("\n3. Instance 2 recovers; after the retest delay one probe closes its breaker.");
    set_faults(&instances[1], 0, 0.0)?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    for i in 9..=12 {
        call(&format!("  call {i}")).await?;
    }

    println!(
        "\n4. Every instance fails and its breaker opens; then all are down. The cache serves \
         the last good answer, marked stale."
    );
    for instance in &instances {
        set_faults(instance, 0, 1.0)?;
    }
    for i in 13..=16 {
        call(&format!("  call {i}")).await?;
    }

    // Let the event printer catch up before exiting.
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!("\ndone");
    Ok(())
}
