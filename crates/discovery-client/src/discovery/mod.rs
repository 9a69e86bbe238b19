//! Where the instances of a service come from.
//!
//! A [`Discovery`] source watches one service and publishes each new instance set into a
//! [`tokio::sync::watch`] channel; the client reads the latest set on every request, so a
//! change is used by the very next call. Sources:
//!
//! - [`RegistryDiscovery`]: the registry's blocking query. Each query waits at the registry
//!   until the set changes, so a new or departed instance is seen within milliseconds. When
//!   the registry cannot be reached the last known set is kept, and the outage is logged once
//!   (and once more when it ends), not per request.
//! - [`DnsDiscovery`]: DNS A/AAAA or SRV records (a Kubernetes headless Service, Consul
//!   DNS), looked up again as their TTLs run out (clamped), and at once when an instance's
//!   breaker opens on a connection failure. A failed lookup keeps the last set; an empty
//!   answer keeps it for a grace period.
//! - [`StaticDiscovery`]: a fixed list of addresses.
//!
//! Sources report outages and recoveries through their [`DiscoverySink`] so the client can
//! log them and publish [`Event`](crate::Event)s.
//!
//! [`InstanceStream`] turns any source into a tower
//! [`Discover`](tower::discover::Discover) stream of `Change::Insert(address, instance)` and
//! `Change::Remove(address)`; [`ServiceClient`](crate::ServiceClient) follows the same stream.

mod discover;
pub mod dns;
#[cfg(feature = "etcd")]
pub mod etcd;
mod registry;
mod static_list;

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{Notify, watch};

use crate::Instance;

pub(crate) use discover::Update;
pub use discover::{EndpointStream, InstanceStream};
pub use dns::DnsDiscovery;
pub use registry::RegistryDiscovery;
pub use static_list::StaticDiscovery;

/// The instances of a service at one moment, sorted by id.
pub(crate) type InstanceSet = Arc<[Instance]>;

/// Where a discovery source publishes what it finds.
///
/// ```
/// use discovery_client::discovery::{Discovery, DiscoverySink};
/// use discovery_client::Instance;
/// use futures::future::{BoxFuture, FutureExt};
///
/// /// Instances from an environment variable, read once.
/// #[derive(Debug)]
/// struct FromEnv;
///
/// impl Discovery for FromEnv {
///     fn watch(&self, _service: &str, sink: DiscoverySink) -> BoxFuture<'static, ()> {
///         async move {
///             match std::env::var("RATINGS_ADDRESSES") {
///                 Ok(list) => {
///                     let instances = list
///                         .split(',')
///                         .enumerate()
///                         .map(|(i, address)| Instance::new((i + 1).to_string(), address))
///                         .collect();
///                     sink.publish(instances);
///                 }
///                 Err(e) => sink.outage(format!("RATINGS_ADDRESSES: {e}")),
///             }
///             // Keep the sink open so the last set stays in use.
///             futures::future::pending::<()>().await;
///         }
///         .boxed()
///     }
/// }
/// ```
#[derive(Debug)]
pub struct DiscoverySink {
    pub(crate) sets: watch::Sender<Option<InstanceSet>>,
    pub(crate) reports: tokio::sync::mpsc::UnboundedSender<DiscoveryReport>,
    /// Signalled by the client when an instance may be gone (see
    /// [`DiscoverySink::refresh_requested`]).
    pub(crate) refresh: Arc<Notify>,
}

impl DiscoverySink {
    /// Publishes a new instance set (sorted by id here). Returns `false` once nobody listens,
    /// which tells the source to stop.
    pub fn publish(&self, mut instances: Vec<Instance>) -> bool {
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        let set: InstanceSet = instances.into();
        self.sets.send_if_modified(|current| {
            if current.as_deref() == Some(&*set) {
                false
            } else {
                *current = Some(set);
                true
            }
        });
        !self.sets.is_closed()
    }

    /// Reports that the source cannot be reached (the last set stays in use).
    pub fn outage(&self, reason: impl Into<String>) {
        let _ = self.reports.send(DiscoveryReport::Outage(reason.into()));
    }

    /// Reports that the source answers again.
    pub fn recovered(&self) {
        let _ = self.reports.send(DiscoveryReport::Recovered);
    }

    /// Whether every reader is gone (the client was dropped).
    pub fn is_closed(&self) -> bool {
        self.sets.is_closed()
    }

    /// Waits until the client asks for a fresh look at the service: a
    /// [`ServiceClient`](crate::ServiceClient) asks when an instance's breaker opens on a
    /// connection failure (refused, unreachable), since the instance may be gone. A source
    /// that polls (such as [`DnsDiscovery`]) looks again at once; a source that is told of
    /// every change (such as [`RegistryDiscovery`]) can ignore it. A request made while
    /// nobody waits is kept until the next call, and several requests made meanwhile count
    /// as one.
    pub async fn refresh_requested(&self) {
        self.refresh.notified().await;
    }
}

/// A change in a discovery source's health, as [`DiscoverySink::outage`] and
/// [`DiscoverySink::recovered`] report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DiscoveryReport {
    /// The source cannot be reached.
    Outage(String),
    /// The source answers again.
    Recovered,
}

/// A source of instance sets for a named service.
///
/// ```
/// use discovery_client::discovery::{Discovery, DiscoverySink};
/// use discovery_client::{Instance, ServiceClient};
/// use futures::future::{BoxFuture, FutureExt};
///
/// /// Always the same single instance.
/// #[derive(Debug)]
/// struct One(&'static str);
///
/// impl Discovery for One {
///     fn watch(&self, _service: &str, sink: DiscoverySink) -> BoxFuture<'static, ()> {
///         let address = self.0;
///         async move {
///             sink.publish(vec![Instance::new("1", address)]);
///             futures::future::pending::<()>().await;
///         }
///         .boxed()
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), discovery_client::Error> {
/// let client = ServiceClient::builder("ratings").discovery(One("http://127.0.0.1:8001")).build()?;
/// # let _ = client;
/// # Ok(()) }
/// ```
pub trait Discovery: Send + Sync + std::fmt::Debug + 'static {
    /// Watches `service` and publishes every new set into `sink`, until
    /// [`DiscoverySink::is_closed`]. The client spawns the returned future as a task and
    /// aborts it when the client is dropped.
    fn watch(&self, service: &str, sink: DiscoverySink) -> BoxFuture<'static, ()>;
}

/// A source chosen at run time (from configuration, say) is a source.
impl Discovery for Box<dyn Discovery> {
    fn watch(&self, service: &str, sink: DiscoverySink) -> BoxFuture<'static, ()> {
        (**self).watch(service, sink)
    }
}

#[cfg(test)]
pub(crate) mod tests;
