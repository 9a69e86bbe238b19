//! Published snapshots: how both stores serve reads and blocking queries.
//!
//! Each service publishes its current [`Snapshot`] on a `tokio::sync::watch` channel, so
//! blocking readers wake as soon as it changes and share one prebuilt snapshot. A service
//! the table does not know reports the table's *floor* as its index, and its readers wait
//! on a table-wide channel instead. Emptied services are kept, so their index is kept, until
//! a store evicts them to bound its memory; eviction raises the floor past their index, so
//! no index ever goes backwards.
//!
//! The table does not decide what an index is: the memory store publishes its counter, the
//! etcd store's mirror publishes etcd revisions.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{InstanceView, Snapshot};

/// An instance as kept by a store, which readers see as an [`InstanceView`].
pub(super) trait View {
    /// What readers see of the instance with this id.
    fn view(&self, id: &str) -> InstanceView;
}

/// Every known service's instances and published snapshot, and what unknown services report.
#[derive(Debug)]
pub(super) struct PublishedServices<I> {
    /// Services by name (sorted, so listing needs no sort), including emptied ones.
    services: BTreeMap<String, PublishedService<I>>,
    /// The index unknown services report; raised past the index of every evicted service.
    floor: u64,
    /// Wakes readers waiting on services that do not exist yet; carries the latest index.
    changes: watch::Sender<u64>,
}

/// One service's instances and the snapshot last published of them.
#[derive(Debug)]
pub(super) struct PublishedService<I> {
    /// Instances by id (sorted, so snapshots need no sort).
    pub instances: BTreeMap<String, I>,
    /// The current snapshot; blocking readers subscribe to it.
    published: watch::Sender<Arc<Snapshot>>,
}

/// What a blocking reader found: an answer, or what to wait on for one. The subscriptions
/// are taken under the same lock as the look, so no change slips in between.
pub(super) enum Look {
    /// The index already differs from the reader's: answer with this.
    Changed(Arc<Snapshot>),
    /// The service exists and is unchanged: wait on its snapshot channel.
    WaitService(watch::Receiver<Arc<Snapshot>>),
    /// The service does not exist: wait on the table-wide channel and look again.
    WaitStore(watch::Receiver<u64>),
}

impl<I: View> PublishedServices<I> {
    /// An empty table whose unknown services report index 0.
    pub fn new() -> Self {
        let (changes, _) = watch::channel(0);
        Self {
            services: BTreeMap::new(),
            floor: 0,
            changes,
        }
    }

    /// The index unknown services report.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Raises the index unknown services report to at least `index`.
    pub fn raise_floor(&mut self, index: u64) {
        self.floor = self.floor.max(index);
    }

    /// How many services are kept, emptied ones included.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Names of every kept service, emptied ones included, sorted.
    #[cfg(feature = "etcd")]
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.services.keys()
    }

    /// Names of the services with at least one instance, sorted.
    pub fn live(&self) -> impl Iterator<Item = &String> {
        self.services
            .iter()
            .filter(|(_, service)| !service.instances.is_empty())
            .map(|(name, _)| name)
    }

    /// The service, if it is kept.
    pub fn get(&self, name: &str) -> Option<&PublishedService<I>> {
        self.services.get(name)
    }

    /// The service, if it is kept, to change its instances (then publish them).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut PublishedService<I>> {
        self.services.get_mut(name)
    }

    /// The service, created empty at `index` if it is not known yet. Creating it publishes
    /// nothing: the caller publishes once it has added instances.
    pub fn get_or_insert(&mut self, name: &str, index: u64) -> &mut PublishedService<I> {
        self.services
            .entry(name.to_owned())
            .or_insert_with(|| PublishedService::new(index))
    }

    /// Wakes the readers of services that do not exist yet, so they look again.
    pub fn notify(&self, index: u64) {
        self.changes.send_replace(index);
    }

    /// Forgets the emptied service with the oldest index and raises the floor past it;
    /// false if no service is empty.
    pub fn evict_oldest_emptied(&mut self) -> bool {
        let victim = self
            .services
            .iter()
            .filter(|(_, service)| service.instances.is_empty())
            .min_by_key(|(_, service)| service.index())
            .map(|(name, _)| name.clone());
        let Some(evicted) = victim.and_then(|name| self.services.remove(&name)) else {
            return false;
        };
        // Dropping the entry wakes its readers, who then wait on the table-wide channel.
        self.raise_floor(evicted.index());
        true
    }

    /// The service's current snapshot; an unknown service has no instances and the floor
    /// as its index.
    pub fn snapshot(&self, name: &str) -> Arc<Snapshot> {
        match self.services.get(name) {
            Some(service) => service.snapshot(),
            None => Arc::new(Snapshot {
                index: self.floor,
                instances: Vec::new(),
            }),
        }
    }

    /// Compares the service's index with the reader's `index`.
    pub fn look(&self, name: &str, index: u64) -> Look {
        match self.services.get(name) {
            Some(service) => {
                let rx = service.published.subscribe();
                let current = Arc::clone(&rx.borrow());
                if current.index == index {
                    Look::WaitService(rx)
                } else {
                    Look::Changed(current)
                }
            }
            None if self.floor == index => Look::WaitStore(self.changes.subscribe()),
            None => Look::Changed(self.snapshot(name)),
        }
    }
}

impl<I: View> PublishedService<I> {
    /// A service with no instances, published at `index`.
    fn new(index: u64) -> Self {
        let (published, _) = watch::channel(Arc::new(Snapshot {
            index,
            instances: Vec::new(),
        }));
        Self {
            instances: BTreeMap::new(),
            published,
        }
    }

    /// The index of the last published snapshot.
    pub fn index(&self) -> u64 {
        self.published.borrow().index
    }

    /// The last published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.published.borrow())
    }

    /// Whether the instances differ, as readers see them, from the last published snapshot.
    #[cfg(feature = "etcd")]
    pub fn is_stale(&self) -> bool {
        self.published.borrow().instances != self.views()
    }

    /// Publishes the current instances at `index` and wakes every reader of this service.
    pub fn publish(&self, index: u64) {
        let instances = self.views();
        self.published
            .send_replace(Arc::new(Snapshot { index, instances }));
    }

    fn views(&self) -> Vec<InstanceView> {
        self.instances
            .iter()
            .map(|(id, instance)| instance.view(id))
            .collect()
    }
}

/// Waits until a [`Look`] finds the index changed, or until `deadline`, and returns the
/// snapshot then current: `look` looks under the store's lock (and must not hold it once it
/// returns), `current` reads the snapshot at the deadline. Cancel-safe: dropping the future
/// just stops waiting.
pub(super) async fn wait_for_change(
    look: impl Fn() -> Look,
    current: impl FnOnce() -> Arc<Snapshot>,
    deadline: Instant,
) -> Arc<Snapshot> {
    // Each pass either returns or waits for a change notification; the deadline bounds the
    // whole loop.
    loop {
        let woke = match look() {
            Look::Changed(snapshot) => return snapshot,
            Look::WaitService(mut rx) => tokio::time::timeout_at(deadline, rx.changed()).await,
            Look::WaitStore(mut rx) => tokio::time::timeout_at(deadline, rx.changed()).await,
        };
        if woke.is_err() {
            return current();
        }
        // Woken by a change, or the service was evicted/created: look again.
    }
}
