//! Any [`Discovery`] as a tower [`Discover`](tower::discover::Discover) stream.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::future::BoxFuture;
use pin_project_lite::pin_project;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tower::discover::Change;

use super::{Discovery, DiscoveryReport, DiscoverySink, InstanceSet};
use crate::events::EventBus;
use crate::telemetry::ServiceTelemetry;
use crate::{Error, Instance};

/// Waits for discovery's next set; hands the receiver back with whether the source lives.
type NextSet = BoxFuture<'static, (bool, watch::Receiver<Option<InstanceSet>>)>;

fn next_set(mut sets: watch::Receiver<Option<InstanceSet>>) -> NextSet {
    Box::pin(async move {
        let alive = sets.changed().await.is_ok();
        (alive, sets)
    })
}

/// What the stream has seen, as [`ServiceClient`](crate::ServiceClient) follows it.
pub(crate) enum Update {
    /// An instance came, changed or went.
    Changed(Change<String, Instance>),
    /// Every change of a new set has been handed out.
    Settled,
    /// Discovery failed before it found anything (the reason): nobody should wait for a
    /// first answer that is not coming. Sent once, until a set arrives.
    Unavailable(String),
}

/// The instances of one service, from any [`Discovery`] source, as a stream of
/// [`Change::Insert`]`(address, instance)` and [`Change::Remove`]`(address)`: a tower
/// [`Discover`](tower::discover::Discover).
///
/// Instances are keyed by address (the key their breakers are kept by): an instance whose id
/// or metadata changed at the same address is inserted again, which replaces it. Each change
/// is logged (`ratings instance 1 added: http://..`) and, with [`events`](Self::events),
/// published as [`Event::InstanceAdded`](crate::Event::InstanceAdded) /
/// [`Event::InstanceRemoved`](crate::Event::InstanceRemoved); discovery outages are logged
/// once and published as [`Event::DiscoveryOutage`](crate::Event::DiscoveryOutage) while the
/// last known instances stay in place. An outage before discovery has found anything is
/// also handed out as an `Err(`[`Error::Discovery`]`)` item, after which the stream goes
/// on: a [`Balancer`](crate::balance::Balancer) answers calls with that error until a set
/// arrives. Dropping the stream stops the discovery task.
///
/// Use [`endpoints`](Self::endpoints) to turn each instance into a service for
/// [`Balancer`](crate::balance::Balancer).
///
/// ```
/// use discovery_client::discovery::InstanceStream;
/// use discovery_client::StaticDiscovery;
/// use futures::TryStreamExt;
/// use tower::discover::Change;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), discovery_client::Error> {
/// let mut instances = InstanceStream::new(
///     "ratings",
///     StaticDiscovery::new(["http://127.0.0.1:8001", "http://127.0.0.1:8002"]),
/// )?;
/// let Some(Change::Insert(address, instance)) = instances.try_next().await.unwrap() else {
///     panic!("an insert comes first");
/// };
/// assert_eq!(address, "http://127.0.0.1:8001");
/// assert_eq!(instance.id, "1");
/// # Ok(()) }
/// ```
pub struct InstanceStream {
    /// Service name and event bus for logs and events.
    telemetry: ServiceTelemetry,
    /// Discovery's next set; `None` once the source has stopped.
    next_set: Option<NextSet>,
    /// Outages and recoveries reported by the source.
    reports: mpsc::UnboundedReceiver<DiscoveryReport>,
    /// Whether `reports` can still deliver.
    reports_open: bool,
    /// The instances handed out so far, one per address.
    current: Vec<Instance>,
    /// Changes worked out but not handed out yet.
    pending: VecDeque<Update>,
    /// Whether discovery has answered (or failed) at least once.
    answered: bool,
    /// The discovery source, aborted when the stream is dropped.
    task: JoinHandle<()>,
}

impl InstanceStream {
    /// Starts watching `service` with `discovery`. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] outside a tokio runtime.
    pub fn new(service: &str, discovery: impl Discovery) -> Result<Self, Error> {
        Self::start(ServiceTelemetry::new(service, None), &discovery)
    }

    pub(crate) fn start(
        telemetry: ServiceTelemetry,
        discovery: &dyn Discovery,
    ) -> Result<Self, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("discovery must be started inside a tokio runtime".into())
        })?;
        let (sets_tx, sets_rx) = watch::channel::<Option<InstanceSet>>(None);
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let sink = DiscoverySink {
            sets: sets_tx,
            reports: reports_tx,
            refresh: telemetry.refresh_hint(),
        };
        let task = runtime.spawn(discovery.watch(telemetry.service(), sink));
        Ok(Self {
            telemetry,
            next_set: Some(next_set(sets_rx)),
            reports,
            reports_open: true,
            current: Vec::new(),
            pending: VecDeque::new(),
            answered: false,
            task,
        })
    }

    /// Publishes instance and discovery events to `events`.
    pub fn events(mut self, events: EventBus) -> Self {
        self.telemetry = self.telemetry.clone().with_events(events);
        self
    }

    /// Turns each instance into a service with `make` (typically a breaker around a timeout
    /// around an [`HttpEndpoint`](crate::transport::HttpEndpoint)), giving a
    /// [`Discover`](tower::discover::Discover) of services for
    /// [`Balancer`](crate::balance::Balancer).
    pub fn endpoints<F, S>(self, make: F) -> EndpointStream<F>
    where
        F: FnMut(&Instance) -> S,
    {
        EndpointStream {
            instances: self,
            make,
        }
    }

    /// The next change, `Settled` after each set, or `Unavailable` when discovery failed
    /// before it found anything.
    pub(crate) fn poll_update(&mut self, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        loop {
            if let Some(update) = self.pending.pop_front() {
                return Poll::Ready(Some(update));
            }
            if self.reports_open {
                match self.reports.poll_recv(cx) {
                    Poll::Ready(Some(DiscoveryReport::Outage(reason))) => {
                        self.telemetry.discovery_outage(&reason);
                        if !self.answered {
                            self.answered = true;
                            self.pending.push_back(Update::Unavailable(reason));
                        }
                        continue;
                    }
                    Poll::Ready(Some(DiscoveryReport::Recovered)) => {
                        self.telemetry.discovery_recovered();
                        continue;
                    }
                    Poll::Ready(None) => {
                        self.reports_open = false;
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if let Some(waiting) = &mut self.next_set {
                if let Poll::Ready((alive, mut sets)) = waiting.as_mut().poll(cx) {
                    self.next_set = None;
                    if alive {
                        let set = sets.borrow_and_update().clone();
                        self.next_set = Some(next_set(sets));
                        if let Some(set) = set {
                            self.diff(&set);
                            self.answered = true;
                            self.pending.push_back(Update::Settled);
                        }
                    }
                    continue;
                }
            }
            if self.next_set.is_none() && !self.reports_open {
                return Poll::Ready(None);
            }
            return Poll::Pending;
        }
    }

    /// Queues the changes from the current instances to `set`, and logs them.
    fn diff(&mut self, set: &[Instance]) {
        let (telemetry, pending) = (&self.telemetry, &mut self.pending);
        self.current.retain(|old| {
            let kept = set.iter().any(|new| new.address == old.address);
            if !kept {
                telemetry.instance_removed(old);
                pending.push_back(Update::Changed(Change::Remove(old.address.clone())));
            }
            kept
        });
        for (position, new) in set.iter().enumerate() {
            if set[..position].iter().any(|i| i.address == new.address) {
                continue; // one instance per address: the first listed wins
            }
            match self.current.iter_mut().find(|c| c.address == new.address) {
                Some(same) if same == new => continue,
                Some(replaced) => {
                    self.telemetry.instance_removed(replaced);
                    *replaced = new.clone();
                }
                None => self.current.push(new.clone()),
            }
            self.telemetry.instance_added(new);
            self.pending.push_back(Update::Changed(Change::Insert(
                new.address.clone(),
                new.clone(),
            )));
        }
    }
}

impl Stream for InstanceStream {
    type Item = Result<Change<String, Instance>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match ready!(self.poll_update(cx)) {
                Some(Update::Changed(change)) => return Poll::Ready(Some(Ok(change))),
                Some(Update::Settled) => continue,
                Some(Update::Unavailable(reason)) => {
                    return Poll::Ready(Some(Err(Error::Discovery(reason))));
                }
                None => return Poll::Ready(None),
            }
        }
    }
}

impl Drop for InstanceStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for InstanceStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceStream")
            .field("service", &self.telemetry.service())
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// An [`InstanceStream`] whose instances are turned into services: a
    /// [`Discover`](tower::discover::Discover) of `Change<String, S>` keyed by address. Made by
    /// [`InstanceStream::endpoints`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use discovery_client::discovery::InstanceStream;
    /// use discovery_client::timeout::TimeoutLayer;
    /// use discovery_client::transport::HttpEndpoint;
    /// use discovery_client::StaticDiscovery;
    /// use tower::Layer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), discovery_client::Error> {
    /// let endpoints = InstanceStream::new("ratings", StaticDiscovery::new(["http://127.0.0.1:8001"]))?
    ///     .endpoints(|instance| {
    ///         TimeoutLayer::new(&instance.address, Duration::from_secs(1))
    ///             .layer(HttpEndpoint::new(&instance.address))
    ///     });
    /// # let _ = endpoints;
    /// # Ok(()) }
    /// ```
    pub struct EndpointStream<F> {
        instances: InstanceStream,
        make: F,
    }
}

impl<F, S> Stream for EndpointStream<F>
where
    F: FnMut(&Instance) -> S,
{
    type Item = Result<Change<String, S>, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let change = match ready!(Pin::new(this.instances).poll_next(cx)) {
            Some(Ok(Change::Insert(address, instance))) => {
                Change::Insert(address, (this.make)(&instance))
            }
            Some(Ok(Change::Remove(address))) => Change::Remove(address),
            Some(Err(error)) => return Poll::Ready(Some(Err(error))),
            None => return Poll::Ready(None),
        };
        Poll::Ready(Some(Ok(change)))
    }
}

impl<F> fmt::Debug for EndpointStream<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointStream")
            .field("instances", &self.instances)
            .finish_non_exhaustive()
    }
}
