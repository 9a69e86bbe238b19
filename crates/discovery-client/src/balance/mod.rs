//! Choosing an instance: round-robin turns among the instances whose breaker grants a
//! permit, steered by the requests each has in flight.
//!
//! The algorithm: each instance counts the requests it has been sent and has not answered
//! yet. A cursor gives each instance its turn. By default
//! ([`Balance::PowerOfTwoChoices`]) a pick compares the instance whose turn it is with one
//! other drawn at random and takes the one with fewer requests in flight, the turn's on a
//! tie; [`Balance::LeastPending`] takes the fewest of all, the first in turn
//! on a tie; [`Balance::RoundRobin`] ignores the counts. With nothing in flight (sequential
//! callers) each is plain round-robin, 1, 2, 3, 1, 2, 3. Under concurrent load an instance
//! that stops answering keeps its requests outstanding, and is sent more only while it
//! holds no more requests than the instance it is compared with, where plain round-robin
//! sends every caller there in turn until a timeout opens its breaker.
//!
//! When the chosen instance's breaker refuses a permit, the others are asked, fewest in
//! flight first; instances passed over are not charged a turn, so traffic interleaves
//! evenly across the healthy ones. When no instance grants a permit the answer is "all
//! services are down" at once (logged as `ratings: all services are down`, published as
//! [`Event::AllInstancesDown`](crate::Event::AllInstancesDown), counted in
//! `discovery_client_all_down_total`): the caller never waits for a breaker.
//!
//! [`ServiceClient`](crate::ServiceClient) picks its attempts by these rules.
//! [`Balancer`] applies them as a tower [`Service`](tower::Service) over a
//! [`Discover`](tower::discover::Discover) stream of per-instance services (each guarded by
//! a [`BreakerService`](crate::breaker::BreakerService), asked through
//! [`AcquirePermit`](crate::breaker::AcquirePermit)).

mod future;
mod in_flight;
mod pick;
mod service;

pub use future::ResponseFuture;
pub(crate) use in_flight::{InFlight, InFlightGuard};
pub use pick::Balance;
pub(crate) use pick::Picker;
pub use service::Balancer;

#[cfg(test)]
mod pick_tests;
#[cfg(test)]
mod service_tests;
