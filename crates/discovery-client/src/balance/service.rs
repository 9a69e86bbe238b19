//! [`Balancer`]: the picking rules as a tower [`Service`] over a [`Discover`] stream.

use std::borrow::Borrow;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::Service;
use tower::discover::{Change, Discover};

#[cfg(feature = "grpc")]
use super::Roster;
use super::{Balance, Load, Picker, ResponseFuture, Tried};
use crate::Error;
use crate::breaker::AcquirePermit;
use crate::events::EventBus;
use crate::telemetry::ServiceTelemetry;

/// A tower [`Service`] that sends each call to an endpoint chosen by its [`Balance`] rule
/// (by default round-robin turns weighted by answer time) among those whose breaker grants
/// a permit; endpoints come and go with a [`Discover`] stream.
///
/// - `poll_ready` applies the discovery changes that have arrived, then picks: it asks the
///   endpoint it would choose for a permit ([`AcquirePermit::try_acquire`]) and readiness,
///   then the others, fewest calls in flight first, and keeps the first that gives both for
///   the next `call`. An endpoint that pushed back (a 429, or a 503 with `Retry-After`) is
///   refused a permit for its `Retry-After`. When no endpoint grants a permit it is ready
///   all the same, and `call` answers at once: [`Error::Overloaded`] if some pushed back,
///   otherwise [`Error::AllInstancesDown`]. A caller never waits for a breaker. It waits
///   only when an endpoint that granted a permit is not ready yet.
/// - Until discovery has said anything (a first endpoint, or an error), `poll_ready` waits
///   for it, at most [`wait_for_discovery`](Balancer::wait_for_discovery) (1 s by default),
///   so that the first calls of a freshly built stack are not told "all services are down"
///   only because discovery has not answered yet.
/// - An error from discovery while no endpoint is known (the registry cannot be reached,
///   say) is what `call` answers until endpoints arrive ([`Error::Discovery`] from an
///   [`InstanceStream`](crate::discovery::InstanceStream)); once endpoints are known, the
///   last ones stay in use through discovery errors. The end of the stream keeps the last
///   endpoints too.
/// - A request carrying the instances its call has tried (a retry or a hedge) goes to an
///   endpoint not among them: if the pick of `poll_ready` is one, `call` hands its permit
///   back and picks again among the others (those ready at once); with none left it fails
///   at once with [`Error::AllInstancesDown`], unlogged.
/// - A call counts as in flight on its endpoint from `call` until its response future
///   finishes or is dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use bytes::Bytes;
/// use discovery_client::balance::Balancer;
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
/// let mut ratings = Balancer::new("ratings", endpoints);
/// let request = http::Request::get("/ratings/widget").body(Bytes::new()).unwrap();
/// let answer = ratings.ready().await?.call(request).await?;
/// println!("{}", answer.status());
/// # Ok(()) }
/// ```
pub struct Balancer<D: Discover> {
    /// Where endpoints come from.
    discover: D,
    /// The endpoints, in the order discovery inserted them.
    endpoints: Vec<(D::Key, D::Service)>,
    /// Each endpoint's calls in flight and answer time, by the same index as `endpoints` (a
    /// separate list so the picker can read them while it asks endpoints for permits).
    loads: Vec<Load>,
    /// The round-robin cursor.
    picker: Arc<Picker>,
    /// Whether calls in flight steer the pick.
    balance: Balance,
    /// The endpoint chosen by `poll_ready` for the next call (holding its breaker's permit).
    selected: Option<usize>,
    /// Whether the discovery stream has ended.
    discover_done: bool,
    /// How long `poll_ready` waits for discovery's first word.
    wait: Duration,
    /// Until discovery's first word: the end of the wait, once it has started.
    first_word: FirstWord,
    /// The last discovery error while no endpoint was known: what calls are answered.
    unavailable: Option<Error>,
    /// Service name and event bus for `all services are down`.
    telemetry: ServiceTelemetry,
    /// Where the endpoints are published for status pages, once asked for.
    #[cfg(feature = "grpc")]
    roster: Option<Roster>,
}

/// Whether discovery has said anything yet.
enum FirstWord {
    /// Not yet; the wait ends at this sleep (made at the first `poll_ready`).
    Awaited(Option<Pin<Box<Sleep>>>),
    /// It has (or the wait is over).
    Heard,
}

impl<D: Discover> Balancer<D> {
    /// Balances calls for `service` over the endpoints `discover` reports.
    pub fn new(service: &str, discover: D) -> Self {
        Self {
            discover,
            endpoints: Vec::new(),
            loads: Vec::new(),
            picker: Arc::new(Picker::new()),
            balance: Balance::default(),
            selected: None,
            discover_done: false,
            wait: Duration::from_secs(1),
            first_word: FirstWord::Awaited(None),
            unavailable: None,
            telemetry: ServiceTelemetry::new(service, None),
            #[cfg(feature = "grpc")]
            roster: None,
        }
    }

    /// Publishes [`Event::AllInstancesDown`](crate::Event::AllInstancesDown) to `events`.
    pub fn events(mut self, events: EventBus) -> Self {
        self.telemetry = self.telemetry.with_events(events);
        self
    }

    /// How to choose among endpoints that grant a permit (default
    /// [`Balance::LatencyAware`]).
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// How long `poll_ready` waits for discovery's first endpoint or error before calls are
    /// answered [`Error::AllInstancesDown`] (default 1 s, the default per-attempt timeout).
    pub fn wait_for_discovery(mut self, wait: Duration) -> Self {
        self.wait = wait;
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

    /// The endpoints as status pages read them, kept up to date from now on. Ask after
    /// setting the [`balance`](Self::balance) rule: the shares are those of the rule set
    /// then.
    #[cfg(feature = "grpc")]
    pub(crate) fn roster(&mut self) -> Roster
    where
        D::Key: Borrow<str>,
    {
        if let Some(roster) = &self.roster {
            return roster.clone();
        }
        let roster = Roster::new(Arc::clone(&self.picker), self.balance);
        self.publish_to(&roster);
        self.roster = Some(roster.clone());
        roster
    }

    /// Publishes the endpoints to `roster`.
    #[cfg(feature = "grpc")]
    fn publish_to(&self, roster: &Roster)
    where
        D::Key: Borrow<str>,
    {
        let keys = self
            .endpoints
            .iter()
            .map(|(key, _)| (*key).borrow().to_string());
        roster.publish(keys.zip(self.loads.iter().cloned()));
    }

    /// Hands back the permit held for a call that was picked but not made.
    fn unselect(&mut self)
    where
        D::Service: AcquirePermit,
    {
        if let Some(index) = self.selected.take() {
            if let Some((_, svc)) = self.endpoints.get_mut(index) {
                svc.release();
            }
        }
    }

    /// Applies every discovery change that has arrived.
    fn update(&mut self, cx: &mut Context<'_>)
    where
        D: Unpin,
        D::Key: Borrow<str>,
        D::Error: Into<Error>,
        D::Service: AcquirePermit,
    {
        while !self.discover_done {
            let change = match Pin::new(&mut self.discover).poll_discover(cx) {
                Poll::Pending => return,
                Poll::Ready(None) => {
                    self.discover_done = true;
                    self.first_word = FirstWord::Heard;
                    return;
                }
                Poll::Ready(Some(Err(error))) => {
                    self.first_word = FirstWord::Heard;
                    if self.endpoints.is_empty() {
                        self.unavailable = Some(error.into());
                    }
                    continue;
                }
                Poll::Ready(Some(Ok(change))) => change,
            };
            self.first_word = FirstWord::Heard;
            self.unavailable = None;
            // Indexes move: give back any permit held for the next call first.
            self.unselect();
            // A replaced endpoint starts a new count; calls still out on the old one lower
            // the old count.
            let position = |key: &D::Key| self.endpoints.iter().position(|(k, _)| k == key);
            match change {
                Change::Insert(key, svc) => match position(&key) {
                    Some(index) => {
                        self.endpoints[index].1 = svc;
                        self.loads[index] = Load::new(Instant::now());
                    }
                    None => {
                        self.endpoints.push((key, svc));
                        self.loads.push(Load::new(Instant::now()));
                    }
                },
                Change::Remove(key) => {
                    if let Some(index) = position(&key) {
                        self.endpoints.remove(index);
                        self.loads.remove(index);
                    }
                }
            }
            #[cfg(feature = "grpc")]
            if let Some(roster) = &self.roster {
                self.publish_to(roster);
            }
        }
    }

    /// Why no endpoint took a call: every one that could have pushed back
    /// ([`Error::Overloaded`], with the soonest one may be called again), or
    /// [`Error::AllInstancesDown`].
    fn none_available(&self) -> Error
    where
        D::Service: AcquirePermit,
    {
        let now = Instant::now();
        let pushed_back = self.endpoints.iter();
        match pushed_back
            .filter_map(|(_, svc)| svc.pushed_back_for(now))
            .min()
        {
            Some(retry_after) => self.telemetry.overloaded(Some(retry_after)),
            None => self.telemetry.all_down(),
        }
    }

    /// Makes sure the endpoint selected for the next call is not one `tried` names: if it
    /// is, hands its permit back and selects, among the endpoints not tried, one that grants
    /// a permit and is ready at once (none: nothing is selected).
    fn steer_clear_of<Req>(&mut self, tried: &Tried)
    where
        D::Key: Borrow<str>,
        D::Service: Service<Req> + AcquirePermit,
    {
        let Some(index) = self.selected else {
            return;
        };
        let Some((key, _)) = self.endpoints.get(index) else {
            return;
        };
        if !tried.contains(key.borrow()) {
            return;
        }
        self.unselect();
        // Readiness asked outside of `poll_ready`: a service not ready at once is passed
        // over, and whoever polls it next registers a real waker.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let now = Instant::now();
        let (endpoints, loads) = (&mut self.endpoints, &self.loads);
        let load = |index: usize| &loads[index];
        let picked = self
            .picker
            .pick(self.balance, endpoints.len(), load, now, |index| {
                let (key, svc) = &mut endpoints[index];
                if tried.contains((*key).borrow()) || !svc.try_acquire(now) {
                    return None;
                }
                match svc.poll_ready(&mut cx) {
                    Poll::Ready(Ok(())) => Some(()),
                    _ => {
                        svc.release();
                        None
                    }
                }
            });
        self.selected = picked.map(|(index, ())| index);
    }

    /// Whether `poll_ready` must still wait for discovery's first word.
    fn awaiting_discovery(&mut self, cx: &mut Context<'_>) -> bool {
        let FirstWord::Awaited(sleep) = &mut self.first_word else {
            return false;
        };
        let sleep = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(self.wait)));
        if sleep.as_mut().poll(cx).is_pending() {
            return true;
        }
        self.first_word = FirstWord::Heard;
        false
    }
}

impl<D, B> Service<http::Request<B>> for Balancer<D>
where
    D: Discover + Unpin,
    D::Key: Borrow<str>,
    D::Error: Into<Error>,
    D::Service: Service<http::Request<B>> + AcquirePermit,
    <D::Service as Service<http::Request<B>>>::Error: Into<Error>,
{
    type Response = <D::Service as Service<http::Request<B>>>::Response;
    type Error = Error;
    type Future = ResponseFuture<<D::Service as Service<http::Request<B>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.update(cx);
        if self.awaiting_discovery(cx) {
            return Poll::Pending;
        }
        // An earlier pick that was not used yet still holds its permit: keep it if ready.
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
        let (endpoints, loads) = (&mut self.endpoints, &self.loads);
        let load = |index: usize| &loads[index];
        let picked = self
            .picker
            .pick(self.balance, endpoints.len(), load, now, |index| {
                let svc = &mut endpoints[index].1;
                if !svc.try_acquire(now) {
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
            // An endpoint that granted a permit will wake us when its service is ready.
            None if waiting => Poll::Pending,
            // Nobody grants one: `call` says so at once.
            None => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let tried = request.extensions().get::<Tried>().cloned();
        if let Some(tried) = &tried {
            self.steer_clear_of(tried);
        }
        let chosen = self.selected.take().and_then(|index| {
            let load = self.loads.get(index)?;
            Some((self.endpoints.get_mut(index)?, load))
        });
        match chosen {
            Some(((key, svc), load)) => {
                if let Some(tried) = &tried {
                    tried.push((*key).borrow());
                }
                ResponseFuture::called(svc.call(request), load.start())
            }
            // Every endpoint left was tried by this call: it says so itself.
            None if tried.as_ref().is_some_and(|t| t.len() > 0) => {
                ResponseFuture::failed(Error::AllInstancesDown {
                    service: self.telemetry.service().to_string(),
                })
            }
            None => match &self.unavailable {
                Some(error) => ResponseFuture::failed(error.clone()),
                None => ResponseFuture::failed(self.none_available()),
            },
        }
    }
}

impl<D> fmt::Debug for Balancer<D>
where
    D: Discover + fmt::Debug,
    D::Key: fmt::Debug,
    D::Service: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field("service", &self.telemetry.service())
            .field("endpoints", &self.endpoints)
            .field("discover", &self.discover)
            .finish_non_exhaustive()
    }
}
