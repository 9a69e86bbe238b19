//! Choosing an instance: round-robin turns among the instances whose breaker grants a
//! permit, weighted by how fast each answers and steered by the requests each has in
//! flight.
//!
//! The algorithm: each instance keeps its load: the requests it has been sent and has not
//! answered yet, and a moving estimate of how long it takes to answer. A cursor gives each
//! instance its turn. By default ([`Balance::LatencyAware`]) the turns are weighted: an
//! instance clearly slower than the fastest one (by more than 25 % + 1 ms) gets a
//! smaller share of turns, down to a trickle, and gets its share back as it recovers;
//! among the instances at full share, the one whose turn it is is compared with one other
//! drawn at random and the one with fewer requests in flight goes. Equally healthy, idle
//! instances are plain round-robin, 1, 2, 3, 1, 2, 3. [`Balance::PowerOfTwoChoices`] is the
//! same comparison without the latency weights, [`Balance::LeastPending`] takes the fewest
//! in flight of all, and [`Balance::RoundRobin`] ignores both. Under concurrent load an
//! instance that stops answering keeps its requests outstanding, and is sent more only
//! while it holds no more requests than the instance it is compared with, where plain
//! round-robin sends every caller there in turn until a timeout opens its breaker.
//!
//! When the chosen instance's breaker refuses a permit, the others are asked, largest share
//! then fewest in flight first; instances passed over are not charged a turn, so traffic
//! interleaves evenly across the healthy ones. When no instance grants a permit the answer
//! is "all services are down" at once (logged as `ratings: all services are down`,
//! published as [`Event::AllInstancesDown`](crate::Event::AllInstancesDown), counted in
//! `discovery_client_all_down_total`): the caller never waits for a breaker.
//!
//! A request may carry the instances its call has tried already (a gRPC call's retry or
//! hedge): [`Balancer`] then picks among the others only.
//!
//! [`ServiceClient`](crate::ServiceClient) picks its attempts by these rules.
//! [`Balancer`] applies them as a tower [`Service`](tower::Service) over a
//! [`Discover`](tower::discover::Discover) stream of per-instance services (each guarded by
//! a [`BreakerService`](crate::breaker::BreakerService), asked through
//! [`AcquirePermit`](crate::breaker::AcquirePermit)); it times each call from `call` to
//! its answer for the estimate.

mod future;
mod load;
mod pick;
#[cfg(feature = "grpc")]
mod roster;
mod service;
mod tried;

pub use future::ResponseFuture;
pub(crate) use load::{InFlightGuard, Load};
pub use pick::Balance;
pub(crate) use pick::Picker;
#[cfg(feature = "grpc")]
pub(crate) use roster::Roster;
pub use service::Balancer;
pub(crate) use tried::Tried;

#[cfg(test)]
mod pick_tests;
#[cfg(test)]
mod service_tests;
