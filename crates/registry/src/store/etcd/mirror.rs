//! The etcd store's in-memory view of its keys, which reads and blocking queries are served
//! from.
//!
//! [`Mirror::load`] replaces the view with a full read at some revision; [`Mirror::apply`]
//! applies the events of the watch that follows it. A service's index is the etcd revision
//! of the last event that changed what readers see of it (an instance appearing or going,
//! or its address or metadata changing). Re-registrations that only replace the lease, and
//! lease keep-alives, leave it alone, exactly as in the memory store.
//!
//! A service the mirror does not know reports the revision of the first load as its index
//! (or more, once emptied services have been evicted), so indexes never go backwards, even
//! across registry restarts: they are etcd's revisions, shared by every registry on the
//! same etcd.
//!
//! Waiting works as in the memory store: each service publishes its [`Snapshot`] on a
//! `watch` channel, and readers of unknown services wait on a store-wide one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::record::Record;
use crate::store::{InstanceView, Snapshot};

/// One instance as stored in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stored value.
    pub record: Record,
    /// The etcd lease the key is attached to (0 for none).
    pub lease: i64,
}

/// One change seen on the watch, at `revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The instance key was written.
    Put {
        /// Service name.
        service: String,
        /// Instance id.
        id: String,
        /// What it now holds.
        entry: Entry,
        /// The write's revision.
        revision: i64,
    },
    /// The instance key was deleted (deregistration, or its lease ran out).
    Delete {
        /// Service name.
        service: String,
        /// Instance id.
        id: String,
        /// The deletion's revision.
        revision: i64,
    },
}

/// The view, its bookkeeping and the revision it reflects.
#[derive(Debug)]
pub struct Mirror {
    /// Everything mutable; held only for short, non-async sections.
    state: Mutex<State>,
    /// The etcd revision the view reflects; writers wait on it to read their own writes.
    applied: watch::Sender<i64>,
    /// Most services kept; emptied ones beyond it are forgotten, oldest first.
    max_services: usize,
}

#[derive(Debug)]
struct State {
    /// Services by name, including emptied ones (so their index is kept).
    services: BTreeMap<String, Service>,
    /// The index unknown services report: the first load's revision, raised past the index
    /// of every forgotten service.
    floor: u64,
    /// Carries the latest index to readers waiting on services that do not exist yet.
    changes: watch::Sender<u64>,
}

#[derive(Debug)]
struct Service {
    /// Instances by id.
    instances: BTreeMap<String, Entry>,
    /// The current snapshot; blocking readers subscribe to it.
    published: watch::Sender<Arc<Snapshot>>,
}

impl Service {
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

    fn index(&self) -> u64 {
        self.published.borrow().index
    }

    /// Publishes the current instances at `revision` (never below the current index + 1,
    /// so waiters always see the index move).
    fn publish(&self, revision: u64) -> u64 {
        let index = revision.max(self.index() + 1);
        let instances: Vec<InstanceView> = self
            .instances
            .iter()
            .map(|(id, entry)| entry.record.view(id))
            .collect();
        self.published
            .send_replace(Arc::new(Snapshot { index, instances }));
        index
    }

    fn views(&self) -> Vec<InstanceView> {
        self.published.borrow().instances.clone()
    }
}

/// What a blocking reader found; see the memory store's `Look`.
enum Look {
    Changed(Arc<Snapshot>),
    WaitService(watch::Receiver<Arc<Snapshot>>),
    WaitStore(watch::Receiver<u64>),
}

impl Mirror {
    /// An empty view that has seen no revision yet.
    pub fn new(max_services: usize) -> Self {
        let (changes, _) = watch::channel(0);
        let (applied, _) = watch::channel(0);
        Self {
            state: Mutex::new(State {
                services: BTreeMap::new(),
                floor: 0,
                changes,
            }),
            applied,
            max_services: max_services.max(1),
        }
    }

    /// Replaces the view with `instances`, a full read at `revision`. Services whose set
    /// differs from before move to index `revision`; the others keep theirs. The first load
    /// also sets the index of unknown services.
    pub fn load(&self, instances: Vec<(String, String, Entry)>, revision: i64) {
        let revision_index = to_index(revision);
        let mut fresh: BTreeMap<String, BTreeMap<String, Entry>> = BTreeMap::new();
        for (service, id, entry) in instances {
            fresh.entry(service).or_default().insert(id, entry);
        }
        let mut state = self.lock();
        if *self.applied.borrow() == 0 {
            state.floor = state.floor.max(revision_index);
        }
        let names: Vec<String> = state
            .services
            .keys()
            .chain(fresh.keys())
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut latest = None;
        for name in names {
            let instances = fresh.remove(&name).unwrap_or_default();
            // A new name comes with instances, so it is published at `revision` below.
            let service = state
                .services
                .entry(name)
                .or_insert_with(|| Service::new(0));
            let before = service.views();
            service.instances = instances;
            let after: Vec<InstanceView> = service
                .instances
                .iter()
                .map(|(id, entry)| entry.record.view(id))
                .collect();
            if before != after {
                latest = Some(service.publish(revision_index));
            }
        }
        state.evict(self.max_services);
        if let Some(index) = latest {
            state.changes.send_replace(index);
        }
        drop(state);
        self.advance(revision);
    }

    /// Applies watch events in order. Returns how many services changed visibly.
    pub fn apply(&self, changes: Vec<Change>) -> usize {
        let mut state = self.lock();
        let mut touched: BTreeMap<String, i64> = BTreeMap::new();
        let mut last = 0;
        for change in changes {
            match change {
                Change::Put {
                    service,
                    id,
                    entry,
                    revision,
                } => {
                    last = last.max(revision);
                    let floor = state.floor;
                    let known = state
                        .services
                        .entry(service.clone())
                        .or_insert_with(|| Service::new(floor));
                    let visible = known
                        .instances
                        .get(&id)
                        .is_none_or(|old| !old.record.same_view(&entry.record));
                    known.instances.insert(id, entry);
                    if visible {
                        touched.insert(service, revision);
                    }
                }
                Change::Delete {
                    service,
                    id,
                    revision,
                } => {
                    last = last.max(revision);
                    let removed = state
                        .services
                        .get_mut(&service)
                        .and_then(|known| known.instances.remove(&id));
                    if removed.is_some() {
                        touched.insert(service, revision);
                    }
                }
            }
        }
        let mut latest = None;
        for (name, revision) in &touched {
            if let Some(service) = state.services.get(name) {
                latest = Some(service.publish(to_index(*revision)));
            }
        }
        state.evict(self.max_services);
        if let Some(index) = latest {
            state.changes.send_replace(index);
        }
        drop(state);
        self.advance(last);
        touched.len()
    }

    /// The revision the view reflects (0 before the first load).
    pub fn applied(&self) -> i64 {
        *self.applied.borrow()
    }

    /// Waits until the view reflects `revision`, at most `limit`; whether it does.
    pub async fn wait_applied(&self, revision: i64, limit: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        let reached = tokio::time::timeout(limit, rx.wait_for(|applied| *applied >= revision));
        matches!(reached.await, Ok(Ok(_)))
    }

    /// The entry for one instance, if the view has it.
    pub fn entry(&self, service: &str, id: &str) -> Option<Entry> {
        self.lock()
            .services
            .get(service)
            .and_then(|known| known.instances.get(id))
            .cloned()
    }

    /// `(instances of service, services with instances)`, for the limits.
    pub fn counts(&self, service: &str) -> (usize, usize) {
        let state = self.lock();
        let instances = state
            .services
            .get(service)
            .map_or(0, |known| known.instances.len());
        let live = state
            .services
            .values()
            .filter(|known| !known.instances.is_empty())
            .count();
        (instances, live)
    }

    /// Names of services with at least one instance, sorted.
    pub fn services(&self) -> Vec<String> {
        self.lock()
            .services
            .iter()
            .filter(|(_, known)| !known.instances.is_empty())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The service's current snapshot.
    pub fn snapshot(&self, service: &str) -> Arc<Snapshot> {
        self.lock().snapshot(service)
    }

    /// Waits until the service's index differs from `index` or `deadline` passes; as
    /// [`MemoryStore::wait_for_change`](crate::store::MemoryStore::wait_for_change).
    pub async fn wait_for_change(
        &self,
        service: &str,
        index: u64,
        deadline: Instant,
    ) -> Arc<Snapshot> {
        // Each pass either returns or waits for a change notification; the deadline bounds
        // the whole loop.
        loop {
            // The guard must be gone before awaiting: look first, then wait.
            let look = self.lock().look(service, index);
            let woke = match look {
                Look::Changed(snapshot) => return snapshot,
                Look::WaitService(mut rx) => tokio::time::timeout_at(deadline, rx.changed()).await,
                Look::WaitStore(mut rx) => tokio::time::timeout_at(deadline, rx.changed()).await,
            };
            if woke.is_err() {
                return self.snapshot(service);
            }
        }
    }

    /// Records that the view reflects `revision` (it never goes back).
    pub fn advance(&self, revision: i64) {
        self.applied.send_if_modified(|applied| {
            if revision > *applied {
                *applied = revision;
                true
            } else {
                false
            }
        });
    }

    /// Locks the state; a panic while it was held cannot leave it in a state worse than
    /// refusing every request, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn snapshot(&self, service: &str) -> Arc<Snapshot> {
        match self.services.get(service) {
            Some(known) => Arc::clone(&known.published.borrow()),
            None => Arc::new(Snapshot {
                index: self.floor,
                instances: Vec::new(),
            }),
        }
    }

    fn look(&self, service: &str, index: u64) -> Look {
        match self.services.get(service) {
            Some(known) => {
                let rx = known.published.subscribe();
                let current = Arc::clone(&rx.borrow());
                if current.index == index {
                    Look::WaitService(rx)
                } else {
                    Look::Changed(current)
                }
            }
            None if self.floor == index => Look::WaitStore(self.changes.subscribe()),
            None => Look::Changed(self.snapshot(service)),
        }
    }

    /// Forgets emptied services, oldest index first, while there are more than `max`.
    fn evict(&mut self, max: usize) {
        // Each pass removes one service or stops.
        while self.services.len() > max {
            let victim = self
                .services
                .iter()
                .filter(|(_, known)| known.instances.is_empty())
                .min_by_key(|(_, known)| known.index())
                .map(|(name, _)| name.clone());
            let Some(evicted) = victim.and_then(|name| self.services.remove(&name)) else {
                return;
            };
            // Dropping the entry wakes its readers, who then wait on the store-wide channel.
            self.floor = self.floor.max(evicted.index());
        }
    }
}

/// An etcd revision as an index (revisions are positive).
fn to_index(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Metadata;

    fn entry(address: &str, lease: i64) -> Entry {
        Entry {
            record: Record {
                address: address.into(),
                metadata: Metadata::new(),
                ttl_secs: 10,
                lease_sha256: format!("{lease:064x}"),
            },
            lease,
        }
    }

    fn put(service: &str, id: &str, address: &str, lease: i64, revision: i64) -> Change {
        Change::Put {
            service: service.into(),
            id: id.into(),
            entry: entry(address, lease),
            revision,
        }
    }

    #[test]
    fn indexes_are_revisions_of_visible_changes_only() {
        let mirror = Mirror::new(100);
        mirror.load(vec![("a".into(), "1".into(), entry("http://h:1", 7))], 10);
        assert_eq!(mirror.applied(), 10);
        assert_eq!(mirror.snapshot("a").index, 10);
        assert_eq!(
            mirror.snapshot("unknown").index,
            10,
            "unknown services report the first load"
        );

        assert_eq!(mirror.apply(vec![put("a", "2", "http://h:2", 8, 11)]), 1);
        assert_eq!(mirror.snapshot("a").index, 11);
        // A re-registration with a new lease but the same address and metadata.
        assert_eq!(mirror.apply(vec![put("a", "2", "http://h:2", 9, 12)]), 0);
        assert_eq!(mirror.snapshot("a").index, 11);
        assert_eq!(mirror.entry("a", "2").unwrap().lease, 9);
        assert_eq!(mirror.applied(), 12);

        let deleted = Change::Delete {
            service: "a".into(),
            id: "1".into(),
            revision: 13,
        };
        assert_eq!(mirror.apply(vec![deleted]), 1);
        let snapshot = mirror.snapshot("a");
        assert_eq!(snapshot.index, 13);
        assert_eq!(snapshot.instances.len(), 1);
        assert_eq!(mirror.services(), ["a"]);
        assert_eq!(mirror.counts("a"), (1, 1));
    }

    #[test]
    fn a_reload_moves_only_services_that_differ() {
        let mirror = Mirror::new(100);
        mirror.load(
            vec![
                ("a".into(), "1".into(), entry("http://h:1", 1)),
                ("b".into(), "1".into(), entry("http://h:1", 2)),
            ],
            5,
        );
        // While disconnected: b/1 went away and c/1 appeared.
        mirror.load(
            vec![
                ("a".into(), "1".into(), entry("http://h:1", 1)),
                ("c".into(), "1".into(), entry("http://h:3", 3)),
            ],
            9,
        );
        assert_eq!(mirror.snapshot("a").index, 5);
        assert_eq!(mirror.snapshot("b").index, 9);
        assert!(mirror.snapshot("b").instances.is_empty());
        assert_eq!(mirror.snapshot("c").index, 9);
        assert_eq!(mirror.services(), ["a", "c"]);
        assert_eq!(mirror.snapshot("never").index, 5);
    }

    #[test]
    fn emptied_services_are_forgotten_beyond_the_bound_without_going_backwards() {
        let mirror = Mirror::new(1);
        mirror.load(Vec::new(), 1);
        mirror.apply(vec![put("a", "1", "http://h:1", 1, 2)]);
        mirror.apply(vec![Change::Delete {
            service: "a".into(),
            id: "1".into(),
            revision: 3,
        }]);
        mirror.apply(vec![put("b", "1", "http://h:1", 2, 4)]);
        assert!(mirror.snapshot("a").index >= 3);
        assert_eq!(mirror.services(), ["b"]);
    }

    #[tokio::test]
    async fn waiters_wake_on_visible_changes_and_on_new_services() {
        let mirror = Arc::new(Mirror::new(100));
        mirror.load(Vec::new(), 3);
        let deadline = Instant::now() + Duration::from_secs(10);
        let waiter = {
            let mirror = Arc::clone(&mirror);
            tokio::spawn(async move { mirror.wait_for_change("a", 3, deadline).await })
        };
        tokio::task::yield_now().await;
        mirror.apply(vec![put("other", "1", "http://h:1", 1, 4)]);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "another service's change does not answer"
        );
        mirror.apply(vec![put("a", "1", "http://h:1", 2, 5)]);
        let snapshot = waiter.await.unwrap();
        assert_eq!(snapshot.index, 5);
        assert!(mirror.wait_applied(5, Duration::from_millis(10)).await);
        assert!(!mirror.wait_applied(6, Duration::from_millis(10)).await);
    }
}
