//! A resilient client for calling other services over HTTP.
//!
//! Give it a service name and a discovery source; it finds the instances, balances calls
//! round-robin across them, bounds each attempt with a timeout, trips a per-instance circuit
//! breaker when an instance keeps failing (and retests it with a single probe later), retries
//! on another instance within a budget, and caches answers, with a stale fallback for when
//! every instance is down.
//!
//! # Quickstart
//!
//! ```no_run
//! use std::time::Duration;
//! use discovery_client::{RegistryDiscovery, ServiceClient, Source};
//!
//! #[derive(Debug, serde::Deserialize)]
//! struct Rating {
//!     item_id: String,
//!     rating: u8,
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), discovery_client::Error> {
//!     let ratings = ServiceClient::builder("ratings")
//!         .discovery(RegistryDiscovery::new("http://127.0.0.1:8500"))
//!         .timeout(Duration::from_secs(1))
//!         .failure_limit(1)
//!         .retest_delay(Duration::from_secs(30))
//!         .cache_ttl(Duration::from_secs(5))
//!         .build()?;
//!
//!     let r: Rating = ratings.get_json("/ratings/widget").await?;
//!     println!("{} has {} stars", r.item_id, r.rating);
//!
//!     let cached = ratings.get_json_cached::<Rating>("/ratings/widget").await?;
//!     if cached.source == Source::Stale {
//!         println!("ratings is down; showing the last known rating");
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Modules
//!
//! - [`discovery`]: where instances come from (the registry's blocking query, a static list).
//! - [`balance`]: round-robin over the instances whose breaker admits a request.
//! - [`breaker`]: the per-instance circuit breaker state machine (Closed, Open, Retest).
//! - [`classify`]: deciding whether an attempt failed (5xx, timeouts, transport errors and
//!   undecodable bodies do; 4xx does not).
//! - [`cache`]: the moka response cache with coalescing and stale fallback.
//! - [`events`]: typed events for breaker transitions and discovery changes.
//! - [`registration`]: the other side: how a service registers itself and heartbeats.
//!
//! # Logs
//!
//! The library never prints; it emits `tracing` events with `service`, `instance`, `address`
//! and `state` fields and these messages: `ratings using instance 1: http://127.0.0.1:8001`,
//! `OPEN breaker on [ratings at http://127.0.0.1:8001]`, `RETEST breaker on [...]`,
//! `CLOSE breaker on [...]`, and `ratings: all services are down`.

#![warn(missing_docs)]

pub mod balance;
pub mod breaker;
pub mod cache;
pub mod classify;
mod client;
pub mod discovery;
mod error;
pub mod events;
mod instance;
pub mod registration;

pub use cache::{Cached, Source};
pub use client::{InstanceStatus, Response, ServiceClient, ServiceClientBuilder};
pub use discovery::{Discovery, RegistryDiscovery, StaticDiscovery};
pub use error::Error;
pub use events::Event;
pub use instance::Instance;
