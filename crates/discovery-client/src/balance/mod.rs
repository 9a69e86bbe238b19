//! Round-robin among the instances whose breaker admits a request, preferring instances
//! with fewer requests in flight.
//!
//! The algorithm: each instance counts the requests it has been sent and has not answered
//! ([`InFlight`]), per thread. A cursor ([`Picker`], one per thread) gives each instance its
//! turn. By default ([`Balance::PowerOfTwoChoices`]) a pick compares the instance whose
//! turn it is with one other drawn at random and takes the one with fewer of the thread's
//! requests in flight, the turn's on a tie; [`Balance::LeastPending`] takes the fewest of
//! all, the first in turn on a tie. With nothing in flight (sequential callers) either is
//! plain round-robin, 1, 2, 3, 1, 2, 3. Under concurrent load an instance that stops
//! answering keeps its requests outstanding, and a thread sends it more only while it
//! holds no more of that thread's requests than the instance it is compared with: it ends
//! up holding about its share of each thread's requests in flight, where plain round-robin
//! sends every caller there in turn until a timeout opens its breaker. Keeping the cursor
//! and the counts per thread means that threads picking at the same time write no common
//! memory (picking scales with cores); it also means that calls from different threads
//! interleave only per thread. When the chosen instance's breaker refuses, the others are
//! asked, fewest in flight first. Instances with an open breaker are skipped
//! without being charged a turn, so traffic interleaves evenly across the healthy ones.
//! [`Balance::RoundRobin`] turns the preference off. When no instance admits the request
//! the answer is "all services are down" at once (logged as `ratings: all services are
//! down`, published as [`Event::AllInstancesDown`](crate::Event::AllInstancesDown), counted
//! in `discovery_client_all_down_total`): the caller never waits for a breaker.
//!
//! [`RoundRobin`] is that algorithm as a tower [`Service`] over a
//! [`Discover`] stream of per-instance services (each guarded by a
//! [`BreakerService`](crate::breaker::BreakerService), asked through [`Admit`]).
//! [`ServiceClient`](crate::ServiceClient) uses the same [`Picker`] for its attempts.

mod future;
mod in_flight;
mod picker;

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower::Service;
use tower::discover::{Change, Discover};

use crate::Error;
use crate::breaker::Admit;
use crate::events::EventBus;
use crate::telemetry::ServiceTelemetry;

pub use future::ResponseFuture;
pub use in_flight::{InFlight, InFlightGuard, InFlightGuardOf, InFlightRef};
pub use picker::{Balance, Endpoint, Picker};

/// A tower [`Service`] that sends each call to the next endpoint, round-robin, whose breaker
/// admits it, preferring endpoints with fewer calls in flight; endpoints come and go with a
/// [`Discover`] stream.
///
/// - `poll_ready` applies the discovery changes that have arrived, then picks as its
///   [`Balance`] says (by default [`Picker::pick_two_choices`]): it asks the endpoint it
///   would choose for leave ([`Admit::try_admit`]) and readiness, then the others, fewest
///   calls in flight first, and keeps the first that gives both for the next `call`. When
///   no endpoint admits a request it is ready all the same, and `call` answers
///   [`Error::AllInstancesDown`] at once. It waits only when an admitting
///   endpoint's own service is not ready yet.
/// - A call counts as in flight on its endpoint from `call` until its response future
///   finishes or is dropped. [`balance`](RoundRobin::balance) with [`Balance::RoundRobin`]
///   ignores the counts.
/// - Discovery errors end the balancer (`poll_ready` fails with them); the end of the
///   stream keeps the last endpoints.
///
/// ```no_run
/// use std::time::Duration;
/// use bytes::Bytes;
/// use discovery_client::balance::RoundRobin;
/// use discovery_client::breaker::{BreakerConfig, Breakers};
/// use discovery_client::discovery::InstanceStream;
/// use discovery_client::timeout::TimeoutLayer;
/// use discovery_client::transport::HttpEndpoint;
/// use discovery_client::RegistryDiscovery;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let breakers = Breakers::new("ratings", BreakerConfig::default());
/// let endpoints = InstanceStream::new("ratings", RegistryDiscovery::new("http://127.0.0.1:8500"))?
///     .endpoints(move |instance| {
///         ServiceBuilder::new()
///             .layer(breakers.layer(instance))
///             .layer(TimeoutLayer::new(&instance.address, Duration::from_secs(1)))
///             .service(HttpEndpoint::new(&instance.address))
///     });
/// let mut ratings = RoundRobin::new("ratings", endpoints);
/// let request = http::Request::get("/ratings/widget").body(Bytes::new()).unwrap();
/// let answer = ratings.ready().await?.call(request).await?;
/// println!("{}", answer.status());
/// # Ok(()) }
/// ```
pub struct RoundRobin<D: Discover> {
    /// Where endpoints come from.
    discover: D,
    /// The endpoints, in the order discovery inserted them.
    endpoints: Vec<(D::Key, D::Service)>,
    /// Calls in flight to each endpoint, by the same index as `endpoints` (a separate list
    /// so the picker can read counts while it asks endpoints for leave).
    in_flight: Vec<InFlight>,
    /// The round-robin cursor.
    picker: Picker,
    /// Whether calls in flight steer the pick.
    balance: Balance,
    /// The endpoint chosen by `poll_ready` for the next call (holding its breaker's leave).
    selected: Option<usize>,
    /// Whether the discovery stream has ended.
    discover_done: bool,
    /// Service name and event bus for `all services are down`.
    telemetry: ServiceTelemetry,
}

impl<D: Discover> RoundRobin<D> {
    /// Balances calls for `service` over the endpoints `discover` reports.
    pub fn new(service: &str, discover: D) -> Self {
        Self {
            discover,
            endpoints: Vec::new(),
            in_flight: Vec::new(),
            picker: Picker::new(),
            balance: Balance::default(),
            selected: None,
            discover_done: false,
            telemetry: ServiceTelemetry::new(service, None),
        }
    }

    /// Publishes [`Event::AllInstancesDown`](crate::Event::AllInstancesDown) to `events`.
    pub fn events(mut self, events: EventBus) -> Self {
        self.telemetry = self.telemetry.with_events(events);
        self
    }

    /// How to choose among admitting endpoints (default [`Balance::PowerOfTwoChoices`]).
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// How many endpoints are known.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether no endpoint is known.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Hands back the leave held for a call that was picked but not made.
    fn unselect(&mut self)
    where
        D::Service: Admit,
    {
        if let Some(index) = self.selected.take() {
            if let Some((_, svc)) = self.endpoints.get_mut(index) {
                svc.release();
            }
        }
    }

    /// Applies every discovery change that has arrived.
    fn update(&mut self, cx: &mut Context<'_>) -> Result<(), Error>
    where
        D: Unpin,
        D::Error: Into<Error>,
        D::Service: Admit,
    {
        while !self.discover_done {
            let change = match Pin::new(&mut self.discover).poll_discover(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(None) => {
                    self.discover_done = true;
                    return Ok(());
                }
                Poll::Ready(Some(Err(error))) => return Err(error.into()),
                Poll::Ready(Some(Ok(change))) => change,
            };
            // Indexes move: give back any leave held for the next call first.
            self.unselect();
            // A replaced endpoint starts a new count; calls still out on the old one lower
            // the old count.
            let position = |key: &D::Key| self.endpoints.iter().position(|(k, _)| k == key);
            match change {
                Change::Insert(key, svc) => match position(&key) {
                    Some(index) => {
                        self.endpoints[index].1 = svc;
                        self.in_flight[index] = InFlight::new();
                    }
                    None => {
                        self.endpoints.push((key, svc));
                        self.in_flight.push(InFlight::new());
                    }
                },
                Change::Remove(key) => {
                    if let Some(index) = position(&key) {
                        self.endpoints.remove(index);
                        self.in_flight.remove(index);
                    }
                }
            }
        }
        Ok(())
    }
}

impl<D, Req> Service<Req> for RoundRobin<D>
where
    D: Discover + Unpin,
    D::Error: Into<Error>,
    D::Service: Service<Req> + Admit,
    <D::Service as Service<Req>>::Error: Into<Error>,
{
    type Response = <D::Service as Service<Req>>::Response;
    type Error = Error;
    type Future = ResponseFuture<<D::Service as Service<Req>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.update(cx)?;
        // An earlier pick that was not used yet still holds its leave: keep it if ready.
        if let Some(index) = self.selected {
            if let Some((_, svc)) = self.endpoints.get_mut(index) {
                if let Poll::Ready(Ok(())) = svc.poll_ready(cx) {
                    return Poll::Ready(Ok(()));
                }
            }
            self.unselect();
        }
        let now = Instant::now();
        let mut waiting = false;
        let (endpoints, in_flight, balance) = (&mut self.endpoints, &self.in_flight, self.balance);
        let pending = |index: usize| balance.load(&in_flight[index]);
        let picked = self
            .picker
            .pick_by(balance, endpoints.len(), pending, |index| {
                let svc = &mut endpoints[index].1;
                if !svc.try_admit(now) {
                    return None;
                }
                match svc.poll_ready(cx) {
                    Poll::Ready(Ok(())) => Some(()),
                    Poll::Ready(Err(_)) => {
                        svc.release();
                        None
                    }
                    Poll::Pending => {
                        svc.release();
                        waiting = true;
                        None
                    }
                }
            });
        match picked {
            Some((index, ())) => {
                self.selected = Some(index);
                Poll::Ready(Ok(()))
            }
            // An admitting endpoint will wake us when its service is ready.
            None if waiting => Poll::Pending,
            // Nobody admits: `call` says so at once.
            None => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let chosen = self.selected.take().and_then(|index| {
            let in_flight = self.in_flight.get(index)?;
            Some((self.endpoints.get_mut(index)?, in_flight))
        });
        match chosen {
            Some(((_, svc), in_flight)) => {
                ResponseFuture::called(svc.call(request), in_flight.start())
            }
            None => ResponseFuture::failed(self.telemetry.all_down()),
        }
    }
}

impl<D> fmt::Debug for RoundRobin<D>
where
    D: Discover + fmt::Debug,
    D::Key: fmt::Debug,
    D::Service: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoundRobin")
            .field("service", &self.telemetry.service())
            .field("endpoints", &self.endpoints)
            .field("discover", &self.discover)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;
