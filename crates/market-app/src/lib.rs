//! The market: a small web shop (the "monolith" of the walkthrough) that sells four items and
//! shows each one's star rating, fetched from the ratings microservice through
//! [`discovery_client`] so that instances can come and go, pause or die without the page
//! ever failing.
//!
//! Modules, roughly in the order a request meets them:
//!
//! - [`config`]: command-line/environment configuration ([`Config`]) and its validation.
//! - [`server`]: [`run`] builds the ratings client and serves on a bound listener, plain or
//!   TLS (through the `serving` crate), until shutdown (`main` passes
//!   `service_telemetry::shutdown::signal()`).
//! - [`routes`]: the router ([`app`]): HTML pages, the JSON API, and the cart cookie.
//! - [`state`]: what handlers share ([`AppState`]).
//! - [`catalog`]: the items for sale and how prices are written.
//! - [`ratings`]: fetching every item's rating concurrently, with its source
//!   (`live`, `cache`, `stale`, or `none` for "no rating yet").
//! - [`cart`]: per-visitor carts in memory, bounded in number and quantity.
//! - [`html`]: the pages as escaped HTML strings.
//! - [`error`]: the handlers' error type, as JSON or as a page.
//! - [`status`]: the live view of the ratings instances (`/status`, `/api/status`, and the
//!   table the `watch` program draws): the ratings client's figures for each instance, and
//!   how many ratings shown were live, cached, stale or missing.
//!
//! Observability: `/metrics` serves the process's Prometheus recorder (installed by
//! [`AppState::new`]); each request continues or starts a W3C trace whose id is in its log
//! lines and is sent to ratings as `traceparent` (see [`service_telemetry`]).
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! let config = market_app::Config::default();
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! market_app::run(listener, config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod cart;
pub mod catalog;
pub mod config;
pub mod error;
pub mod html;
pub mod ratings;
pub mod routes;
pub mod server;
pub mod state;
pub mod status;

pub use config::{Config, RatingsDiscovery};
pub use routes::app;
pub use server::{ratings_client, run};
pub use state::AppState;
