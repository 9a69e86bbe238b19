//! The registry's state: which instances of which services are alive, under which lease.
//!
//! [`MemoryStore`] is the embedded store and the default. With the `etcd` feature,
//! [`EtcdStore`] keeps the same data in etcd (leases and watches), so it survives the loss of
//! a registry process or an etcd member. Both implement [`Store`], the shape the HTTP layer
//! uses (`register`, `heartbeat`, `deregister`, `services`, `snapshot`, `wait_for_change`,
//! `expire`), expressed with the types below and with the same semantics; [`open`] makes the
//! one the configuration asks for.
//!
//! ## Indexes
//!
//! A store-wide counter is bumped on every *visible* change: an instance appears or
//! disappears (deregistration, expiry), or its address or metadata changes. A service's
//! index is the counter value at its last visible change, so it only ever grows, and
//! heartbeats or identical re-registrations leave it alone. Blocking readers wait on that
//! index (see [`MemoryStore::wait_for_change`]).
//!
//! ## Epochs
//!
//! Indexes only say what changed within one history of registrations. A memory store's
//! history ends with its process: a restarted registry starts empty, and its counter
//! starts again from 0, so a service's new index can be lower *or higher* than the one a
//! client last saw (other services may have registered first). So every store also has an
//! **epoch** ([`Store::epoch`]), sent with every read as `X-Registry-Epoch`: a client that
//! sees it change knows the registrations it knew may be gone for a while (until the
//! instances notice and re-register) and can hold on to them, whatever the indexes did.
//!
//! - [`MemoryStore`]: a random number chosen when the store is made, so each registry
//!   process has its own.
//! - `EtcdStore`: a random number kept in etcd under the prefix (`<prefix>registry-epoch`),
//!   written by the first registry to use that etcd and prefix and read by every later one.
//!   Registrations live in etcd and indexes are etcd revisions, so both carry on across
//!   registry restarts and between registries on the same etcd: nothing was lost, and the
//!   epoch stays the same. Only if the etcd data is lost (a new cluster, the prefix
//!   deleted) does the next registry write a new epoch.

mod backend;
#[cfg(feature = "etcd")]
pub mod etcd;
mod lease;
mod memory;
mod open;
mod published;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

pub use backend::{Store, StoreFuture};
#[cfg(feature = "etcd")]
pub use etcd::EtcdStore;
pub use lease::Lease;
pub use memory::MemoryStore;
pub use open::{OpenError, open};

/// Instance metadata: free-form string pairs, sorted by key.
pub type Metadata = BTreeMap<String, String>;

/// A validated request to register (or re-register) one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Service the instance belongs to (already validated).
    pub service: String,
    /// Instance id, unique within the service (already validated).
    pub id: String,
    /// Base URL clients use to reach the instance (already validated).
    pub address: String,
    /// Free-form metadata published with the instance.
    pub metadata: Metadata,
    /// How long the lease lives without a heartbeat.
    pub ttl: Duration,
}

/// The outcome of a successful registration.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The new lease secret; any earlier secret for this instance is no longer valid.
    pub lease: Lease,
    /// The lease TTL the instance must heartbeat within.
    pub ttl: Duration,
    /// Whether the instance id was not registered before.
    pub created: bool,
    /// Whether the visible instance set changed (and so the service index moved).
    pub changed: bool,
}

/// One instance as readers see it (no lease, no deadline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceView {
    /// Instance id.
    pub id: String,
    /// Base URL of the instance.
    pub address: String,
    /// Metadata registered with the instance.
    pub metadata: Metadata,
}

/// A service's instance set at one index; the body of `GET /v1/services/{service}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The service's index: the store counter at its last visible change (0 if never seen).
    pub index: u64,
    /// Live instances, sorted by id.
    pub instances: Vec<InstanceView>,
}

/// An instance removed because its lease ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Service the instance belonged to.
    pub service: String,
    /// Instance id.
    pub id: String,
    /// Address it was registered with.
    pub address: String,
}

/// Logs and counts (`registry_lease_expiries_total`) instances whose lease ran out; both
/// stores report expiries through this.
pub(crate) fn log_expired(expired: &[Expired]) {
    for Expired {
        service,
        id,
        address,
    } in expired
    {
        tracing::info!(service = %service, instance = %id, address = %address, "instance expired");
        crate::store_metrics::lease_expired(service);
    }
}

/// Bounds that keep the store's memory finite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most services tracked at once. Emptied services are kept (so their index stays
    /// monotonic) but are evicted, oldest first, when a new service needs the room.
    pub max_services: usize,
    /// Most instances one service may have.
    pub max_instances_per_service: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_services: 10_000,
            max_instances_per_service: 1_000,
        }
    }
}

/// Why a store operation was refused. Messages are safe to show to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No live instance with this id (never registered, deregistered or expired).
    #[error("instance {id:?} of service {service:?} is not registered")]
    UnknownInstance {
        /// Service asked for.
        service: String,
        /// Instance id asked for.
        id: String,
    },
    /// The lease secret was missing or is not the instance's current one.
    #[error("missing or wrong lease secret (X-Lease) for this instance")]
    LeaseMismatch,
    /// The id is registered under a lease that is still alive, and the caller did not
    /// present that lease (whatever the address): only the holder may re-register or move
    /// it. Anyone else must wait until the lease runs out.
    #[error(
        "instance id is already registered under a live lease; send its current lease in \
         X-Lease to re-register it{}",
        expiry_hint(*.retry_after)
    )]
    LeaseHeld {
        /// How long until the current lease runs out unless renewed (rounded up to whole
        /// seconds when shown); `None` if it never does (a record another tool wrote).
        retry_after: Option<Duration>,
    },
    /// The service already has the maximum number of instances.
    #[error("service has reached its limit of {limit} instances")]
    TooManyInstances {
        /// The configured limit.
        limit: usize,
    },
    /// The registry already tracks the maximum number of services.
    #[error("registry has reached its limit of {limit} services")]
    TooManyServices {
        /// The configured limit.
        limit: usize,
    },
    /// The backing store (etcd) could not be reached in time; nothing was changed, or the
    /// change is not known to have happened. The details are logged, not shown.
    #[error("the registry's store is unavailable; retry later")]
    Unavailable,
}

/// `d` in whole seconds, rounded up, at least 1: how long to wait before retrying so that
/// a lease with `d` left has surely run out.
pub fn whole_seconds_up(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// The end of a [`StoreError::LeaseHeld`] message.
fn expiry_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(left) => format!(
            ", or retry after it expires in {} s",
            whole_seconds_up(left)
        ),
        None => String::new(),
    }
}
