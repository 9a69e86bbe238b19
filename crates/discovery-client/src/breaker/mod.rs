//! Per-instance circuit breaker: the state machine, and the tower middleware around it.
//!
//! The [`Breaker`] is a small state machine, kept apart from the question "was this call a
//! failure?" (see [`crate::classify`]) and from I/O, so it can be tested on paused time:
//!
//! ```text
//!            the failure policy trips
//!   Closed ─────────────────────────────────────▶ Open
//!     ▲                                            │ retest delay passes
//!     │ probe succeeds                             ▼
//!     └──────────────────────────────────────── Retest ──▶ Open (probe fails)
//! ```
//!
//! The [`FailurePolicy`] says what trips it: failures in a row (the default, one), or a
//! share of failures over a sliding window ([`FailureRate`]).
//!
//! A request needs a [`Permit`] from the breaker ([`Breaker::try_acquire`]), whose outcome
//! is recorded on it ([`Permit::record_success`], [`Permit::record_failure`]). In `Retest`
//! exactly one permit (the probe) is out at a time; everyone else is turned away until the
//! probe's outcome is known. A probe whose caller gives up (its permit is dropped
//! unrecorded) frees the slot for the next caller.
//!
//! Every transition is reported back to the caller as a [`Transition`], so the layer that owns
//! the breaker can log it and publish an event with the instance's name and address.
//!
//! Outcomes of requests permitted in an earlier state (say, a slow request let in while
//! Closed that ends after the breaker opened) are ignored: only the state they were permitted
//! in may act on them. Each transition bumps a generation counter to tell them apart.
//!
//! # As tower middleware
//!
//! [`BreakerLayer`] wraps one instance's service in a [`BreakerService`]: it asks the breaker
//! for a permit in `call` (never failing or holding back `poll_ready`), turns a refused call
//! away at once with [`Error::CircuitOpen`](crate::Error::CircuitOpen), and judges, times and
//! records every permitted call. [`Breakers`] keeps one service's breakers by address and
//! hands out the layer for each instance discovery reports. Balancers take a
//! [`BreakerService`]'s permit ahead of the call through [`AcquirePermit`].
//! [`ServiceClient`](crate::ServiceClient) asks the same breakers, through the same code.
//!
//! A [`BreakerService`] judges whole answers (`Bytes` bodies) by default; made with
//! [`BreakerLayer::streamed`] it takes any body and judges an answer by its head, and a gRPC
//! answer by its `grpc-status` when the stream ends ([`StreamedAnswer`]).
//!
//! ```
//! use std::time::Duration;
//! use discovery_client::breaker::{BreakerConfig, Breakers};
//! use discovery_client::events::EventBus;
//! use discovery_client::timeout::TimeoutLayer;
//! use discovery_client::transport::HttpEndpoint;
//! use discovery_client::Instance;
//! use tower::ServiceBuilder;
//!
//! let events = EventBus::new(256);
//! let breakers = Breakers::new("ratings", BreakerConfig::default()).events(events.clone());
//! let instance = Instance::new("1", "http://127.0.0.1:8001");
//! let endpoint = ServiceBuilder::new()
//!     .layer(breakers.layer(&instance))
//!     .layer(TimeoutLayer::new(&instance.address, Duration::from_secs(1)))
//!     .service(HttpEndpoint::new(&instance.address));
//! # let _ = endpoint;
//! ```

mod by_address;
mod config;
mod future;
mod gate;
mod judged_body;
mod layer;
mod policy;
mod push_back;
mod service;
mod state;
mod streamed;
mod tally;

pub use by_address::Breakers;
pub use config::BreakerConfig;
pub use future::ResponseFuture;
pub(crate) use gate::Gate;
pub use layer::BreakerLayer;
pub use policy::{FailurePolicy, FailureRate};
pub(crate) use push_back::{MAX_WAIT, PushBack};
pub use service::{AcquirePermit, BreakerService};
pub use state::{Breaker, BreakerState, Permit, Transition};
pub use streamed::{JudgedBody, StreamedAnswer, StreamedResponseFuture, WholeAnswer};

#[cfg(test)]
mod rate_tests;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod streamed_tests;
#[cfg(test)]
mod tests;
