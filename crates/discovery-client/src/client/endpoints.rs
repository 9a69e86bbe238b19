//! Following discovery: one endpoint stack per instance, rebuilt as instances come and go.

use std::sync::Arc;
use std::time::Duration;

use futures::future::poll_fn;
use tokio::sync::watch;
use tower::ServiceBuilder;
use tower::discover::Change;

use crate::Instance;
use crate::balance::InFlight;
use crate::breaker::{BreakerService, BreakerState, Breakers};
use crate::discovery::{InstanceStream, Update};
use crate::timeout::{Timeout, TimeoutLayer};
use crate::transport::{HttpClient, HttpEndpoint};

/// What one instance is called through: breaker(timeout(http)), the same tower pieces a
/// hand-built stack uses.
pub(crate) type EndpointService = BreakerService<Timeout<HttpEndpoint>>;

/// One instance and the stack that calls it.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    /// The instance as discovery reported it.
    pub(crate) instance: Instance,
    /// Its stack; clones share the breaker.
    pub(crate) service: EndpointService,
    /// Attempts sent to it and not finished yet, which the picker reads to pass over an
    /// instance that has stopped answering. Clones share it; a slot rebuilt for the same
    /// address starts a new count.
    pub(crate) in_flight: InFlight,
}

/// The endpoints in use right now; `None` until discovery has answered once.
pub(crate) type EndpointSet = Option<Arc<[Slot]>>;

/// How an instance's stack is made.
#[derive(Debug)]
pub(crate) struct Stacks {
    /// Breakers by address, with the client's classifier and event bus.
    pub(crate) breakers: Breakers,
    /// The HTTP client all endpoints share.
    pub(crate) http: HttpClient,
    /// Per-attempt timeout.
    pub(crate) timeout: Duration,
}

impl Stacks {
    fn stack(&self, instance: &Instance) -> EndpointService {
        ServiceBuilder::new()
            .layer(self.breakers.layer(instance))
            .layer(TimeoutLayer::new(&instance.address, self.timeout))
            .service(HttpEndpoint::with_client(
                self.http.clone(),
                &instance.address,
            ))
    }
}

/// Follows discovery's [`InstanceStream`]: applies each change, and after each new set (or a
/// discovery outage before any set) publishes the endpoints, sorted by instance id. Ends when
/// discovery ends or nobody reads the endpoints any more.
pub(crate) async fn follow_discovery(
    mut instances: InstanceStream,
    stacks: Stacks,
    out: watch::Sender<EndpointSet>,
) {
    let mut slots: Vec<Slot> = Vec::new();
    while let Some(update) = poll_fn(|cx| instances.poll_update(cx)).await {
        match update {
            Update::Changed(Change::Insert(address, instance)) => {
                let slot = Slot {
                    service: stacks.stack(&instance),
                    instance,
                    in_flight: InFlight::new(),
                };
                match slots.iter_mut().find(|s| s.instance.address == address) {
                    Some(existing) => *existing = slot,
                    None => slots.push(slot),
                }
            }
            Update::Changed(Change::Remove(address)) => {
                slots.retain(|s| s.instance.address != address);
            }
            Update::Settled => {
                slots.sort_by(|a, b| a.instance.id.cmp(&b.instance.id));
                stacks
                    .breakers
                    .forget_departed(|address| slots.iter().any(|s| s.instance.address == address));
                if out.send(Some(slots.clone().into())).is_err() {
                    return;
                }
            }
        }
    }
}

/// A snapshot of one instance for status pages.
///
/// ```no_run
/// use discovery_client::{RegistryDiscovery, ServiceClient};
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(RegistryDiscovery::new("http://127.0.0.1:8500"))
///     .build()?;
/// for status in ratings.instances() {
///     println!("{} {} {}", status.id, status.address, status.state.as_str());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// Instance id.
    pub id: String,
    /// Instance address.
    pub address: String,
    /// Its breaker's state.
    pub state: BreakerState,
}

pub(crate) fn status_of(slots: &[Slot]) -> Vec<InstanceStatus> {
    slots
        .iter()
        .map(|s| InstanceStatus {
            id: s.instance.id.clone(),
            address: s.instance.address.clone(),
            state: s.service.breaker().state(),
        })
        .collect()
}
