//! The ratings microservice: gives each item of the market a star rating.
//!
//! Run as N instances (instance N listens on `127.0.0.1:{8000+N}` by default); each one
//! registers itself with the registry and deregisters on shutdown.
//!
//! - [`config`]: flags and environment, checked before anything is bound.
//! - [`catalog`]: the ratings shared by all instances (`data/ratings.json`, embedded).
//! - [`faults`]: injected latency, errors and garbage bodies, for demos and tests.
//! - [`routes`]: `GET /ratings/{item_id}`, `GET /health`, JSON 404/405 answers ([`app`]).
//! - [`grpc`]: the same ratings over gRPC (`ratings.v1.Ratings`), on the same port.
//! - [`admin`]: `GET`/`PUT /admin/faults`, mounted only with `--admin`.
//! - [`error`]: every error answer as `{"error": "..."}`.
//! - [`state`]: what handlers share.
//! - [`server`]: [`run`], which serves, registers and deregisters.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod catalog;
pub mod config;
pub mod error;
pub mod faults;
pub mod grpc;
pub mod routes;
pub mod server;
pub mod state;

pub use config::Config;
pub use routes::app;
pub use server::run;
pub use state::AppState;
