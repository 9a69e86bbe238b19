//! The service registry: instances register under a service name with a leased TTL,
//! heartbeat to keep the lease, and deregister on shutdown; clients list a service's
//! instances, optionally with a blocking query that returns as soon as the set changes.
//!
//! Modules, in the order a request meets them:
//!
//! - [`config`]: command-line/environment configuration ([`Config`]) and its validation.
//! - [`server`]: [`run`] serves the API on a bound listener, plain or TLS (through the
//!   `serving` crate), with graceful shutdown.
//! - [`http`]: the router ([`app`]), shared state ([`AppState`]), handlers, extractors,
//!   bearer-token auth and the JSON error type.
//! - [`validate`]: the rules for service names, instance ids, addresses, metadata, TTLs.
//! - [`store`]: the [`Store`](store::Store) trait and its stores: in memory (the default:
//!   leases, indexes, change notification, expiry) and, with the `etcd` feature, on etcd.
//! - [`sweeper`]: the background task that expires lapsed leases.
//! - [`shutdown`]: the signal that stops the sweeper and releases blocking queries.
//! - [`store_metrics`]: instance counts, lease expiries and waiting blocking queries, for
//!   `/metrics`.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! let config = registry::Config::default();
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! registry::run(listener, config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
#![warn(missing_docs)]
// Tests may panic on unexpected errors; that is how they fail.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod http;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod store_metrics;
pub mod sweeper;
pub mod validate;

pub use config::Config;
pub use http::{ApiError, AppState, app};
pub use server::{run, run_with_store};
