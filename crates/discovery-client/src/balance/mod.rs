//! Round-robin among the instances whose breaker admits a request.
//!
//! The algorithm: a shared cursor ([`Picker`]) walks the instance list starting after the
//! last instance chosen, and takes the first instance whose breaker grants leave. Instances
//! with an open breaker are skipped without being charged a turn, so traffic interleaves
//! evenly across the healthy ones. When no instance admits the request the answer is
//! "all services are down" at once (logged as `ratings: all services are down`, published as
//! [`Event::AllInstancesDown`](crate::Event::AllInstancesDown), counted in
//! `discovery_client_all_down_total`): the caller never waits for a breaker.
//!
//! [`RoundRobin`] is that algorithm as a tower [`Service`] over a
//! [`Discover`] stream of per-instance services (each guarded by a
//! [`BreakerService`](crate::breaker::BreakerService), asked through [`Admit`]).
//! [`ServiceClient`](crate::ServiceClient) uses the same [`Picker`] for its attempts.

mod future;
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
pub use picker::{Endpoint, Picker};

/// A tower [`Service`] that sends each call to the next endpoint, round-robin, whose breaker
/// admits it; endpoints come and go with a [`Discover`] stream.
///
/// - `poll_ready` applies the discovery changes that have arrived, then picks: it asks each
///   endpoint in turn for leave ([`Admit::try_admit`]) and readiness, and keeps the first that
///   gives both for the next `call`. When no endpoint admits a request it is ready all the
///   same, and `call` answers [`Error::AllInstancesDown`] at once. It waits only when an
///   admitting endpoint's own service is not ready yet.
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
    /// The round-robin cursor.
    picker: Picker,
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
            picker: Picker::new(),
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
            match change {
                Change::Insert(key, svc) => {
                    match self.endpoints.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = svc,
                        None => self.endpoints.push((key, svc)),
                    }
                }
                Change::Remove(key) => self.endpoints.retain(|(k, _)| *k != key),
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
        let endpoints = &mut self.endpoints;
        let picked = self.picker.pick_with(endpoints.len(), |index| {
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
        let chosen = self
            .selected
            .take()
            .and_then(|index| self.endpoints.get_mut(index));
        match chosen {
            Some((_, svc)) => ResponseFuture::called(svc.call(request)),
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
