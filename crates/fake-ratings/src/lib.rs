//! Fake ratings instances for tests: one fake, whose behaviour a test switches at any
//! time, served two ways.
//!
//! - [`FakeRatings::start`] serves it on a real socket, `127.0.0.1:0`, speaking just enough
//!   HTTP/1.1 (and, for [`Behaviour::Raw`], anything at all) to drive a client end to end.
//! - [`InMemory`] serves it as a `tower::Service` without sockets, so a client library's
//!   tests can run on paused time (`#[tokio::test(start_paused = true)]`).
//! - [`FakeRatings::serve`] serves it with hyper on a real socket, as a real server would
//!   ([`Serve`]: keep-alive, HTTP/2, TLS with rustls, client certificates), counting
//!   connections and keeping each request it received.
//!
//! Both count what they receive (requests, requests held at once, each request's
//! `traceparent` header and arrival instant), and both decide what to answer with the same
//! code ([`Behaviour`]), so the two cannot drift apart.
//!
//! Modules:
//! - `behaviour`: what an instance answers to a request path.
//! - `state`: one instance's behaviour switch and what it has received.
//! - `instance`: [`FakeRatings`], the handle a test holds for one instance.
//! - `tcp`: the socket server behind [`FakeRatings::start`].
//! - `hyper_server`: the one behind [`FakeRatings::serve`].
//! - `http1`: reading a request head and body, writing an answer.
//! - `memory`: the [`InMemory`] transport.
//! - `closed_port`: [`ClosedPort`], an address that refuses connections.
//!
//! # Example
//!
//! ```no_run
//! use fake_ratings::{Behaviour, FakeRatings};
//!
//! # async fn example() {
//! let fake = FakeRatings::start(1, Behaviour::Ratings).await;
//! // ... point a client at `fake.url` and call `/ratings/widget` ...
//! fake.set(Behaviour::Status(503));
//! // ... the next calls get 503 ...
//! assert!(fake.hits() >= 1);
//! fake.stop().await;
//! # }
//! ```
//!
//! This crate is for tests only (`publish = false`): it panics when it cannot do what a test
//! asked (bind a port, stop in time), since the test has nothing better to do with an error.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod behaviour;
mod closed_port;
mod http1;
mod hyper_server;
mod instance;
mod memory;
mod state;
mod tcp;

pub use behaviour::{Behaviour, STANDARD_ITEMS, rating_of};
pub use closed_port::ClosedPort;
pub use http1::response;
pub use hyper_server::Serve;
pub use instance::FakeRatings;
pub use memory::InMemory;
pub use state::Received;
