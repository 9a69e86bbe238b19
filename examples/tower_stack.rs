//! The library's pieces as plain tower middleware, composed by hand.
//!
//! ```text
//! cargo run -p examples --example tower-stack
//! ```
//!
//! It starts three small ratings instances on 127.0.0.1 (port 0), then builds this stack
//! with a `tower::ServiceBuilder`:
//!
//! ```text
//! CacheLayer ─ Buffer ─ RoundRobin ─┬─ BreakerService ─ Timeout ─ HttpEndpoint (instance 1)
//!                      (InstanceStream ├─ BreakerService ─ Timeout ─ HttpEndpoint (instance 2)
//!                       as Discover)   └─ BreakerService ─ Timeout ─ HttpEndpoint (instance 3)
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

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
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
use discovery_client::events::EventBus;
use discovery_client::timeout::TimeoutLayer;
use discovery_client::transport::HttpEndpoint;
use discovery_client::{Error, Source, StaticDiscovery};
use tower::{Service, ServiceBuilder, ServiceExt};

/// How a demo instance behaves.
const HEALTHY: u8 = 0;
const HANGING: u8 = 1;
const FAILING: u8 = 2;

async fn rating(State((n, mode)): State<(u32, Arc<AtomicU8>)>) -> (StatusCode, String) {
    match mode.load(Ordering::SeqCst) {
        HANGING => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            (StatusCode::OK, String::new())
        }
        FAILING => (StatusCode::INTERNAL_SERVER_ERROR, "boom".into()),
        _ => (
            StatusCode::OK,
            format!("{{\"item_id\":\"widget\",\"rating\":4,\"instance\":{n}}}"),
        ),
    }
}

/// Starts instance `n` on a free loopback port; returns its address and its mode switch.
async fn start_instance(n: u32) -> std::io::Result<(String, Arc<AtomicU8>)> {
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let app = Router::new()
        .route("/ratings/widget", get(rating))
        .with_state((n, Arc::clone(&mode)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((address, mode))
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
    let mut modes = Vec::new();
    for n in 1..=3 {
        let (address, mode) = start_instance(n).await?;
        println!("instance {n} listens on {address}");
        addresses.push(address);
        modes.push(mode);
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
            failure_limit: 1,
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
    let balancer = RoundRobin::new("ratings", endpoints).events(bus.clone());
    let mut ratings = ServiceBuilder::new()
        .layer(CacheLayer::new(
            "ratings",
            CacheConfig {
                ttl: Duration::ZERO, // always ask upstream; keep the stale fallback
                ..CacheConfig::default()
            },
        ))
        .buffer(32) // RoundRobin is not Clone; the cache calls a clone per miss
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
        Ok::<_, http::Error>(())
    };

    println!("\n1. Three healthy instances: calls interleave round-robin.");
    for i in 1..=3 {
        call(&format!("  call {i}")).await?;
    }

    println!("\n2. Instance 2 hangs: its call times out and its breaker opens.");
    modes[1].store(HANGING, Ordering::SeqCst);
    for i in 4..=8 {
        call(&format!("  call {i}")).await?;
    }

    println!("\n3. Instance 2 recovers; after the retest delay one probe closes its breaker.");
    modes[1].store(HEALTHY, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(700)).await;
    for i in 9..=12 {
        call(&format!("  call {i}")).await?;
    }

    println!(
        "\n4. Every instance fails and its breaker opens; then all are down. The cache serves \
         the last good answer, marked stale."
    );
    for mode in &modes {
        mode.store(FAILING, Ordering::SeqCst);
    }
    for i in 13..=16 {
        call(&format!("  call {i}")).await?;
    }

    // Let the event printer catch up before exiting.
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!("\ndone");
    Ok(())
}
