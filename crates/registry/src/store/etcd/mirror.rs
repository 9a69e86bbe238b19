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
//! Waiting works as in the memory store: both publish each service's [`Snapshot`] through
//! the same table (the `published` module).
//!
//! ## Expiries
//!
//! [`Mirror::apply`] reports the instances that left because their etcd lease ran out, and
//! the watch counts them ([`lease_expired`](crate::store_metrics::lease_expired)). etcd
//! reports an expiry as a plain deletion, the same as a deregistration's, so a
//! deregistration deletes the key in one transaction with a put of a marker (see
//! [`record`](super::record)): the two events share a revision, and etcd never splits one
//! revision's events across watch responses. A deletion is an expiry when no marker for its
//! instance came at its revision ([`Change::Delete`]'s `expired`) and the entry removed had
//! an etcd lease (a key without one never expires). Re-registration overwrites the key, so
//! it is no deletion at all; a key overwritten with something that is not a record leaves
//! the view but is no expiry either. A key deleted by hand (`etcdctl del`) counts as an
//! expiry, as nothing tells it apart.
//!
//! Every registry process follows the same etcd and counts every expiry its watch sees, so
//! each one's counter is the whole etcd's; deletions that happened while its watch was
//! compacted past (after which it reloads instead) are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::reaper::Watched;
use super::record::Record;
use crate::store::published::{self, PublishedService, PublishedServices, View};
use crate::store::{Expired, InstanceView, Snapshot};

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
    /// The instance key was deleted (deregistration, or its lease ran out), or overwritten
    /// with something that is not a record.
    Delete {
        /// Service name.
        service: String,
        /// Instance id.
        id: String,
        /// The deletion's revision.
        revision: i64,
        /// Whether etcd may have deleted it because its lease ran out: a deletion with no
        /// deregistration marker at the same revision.
        expired: bool,
    },
}

/// What [`Mirror::apply`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// How many services changed visibly.
    pub changed: usize,
    /// The instances removed because their etcd lease ran out, in order.
    pub expired: Vec<Expired>,
}

/// The view, its bookkeeping and the revision it reflects.
#[derive(Debug)]
pub struct Mirror {
    /// Services by name, including emptied ones (so their index is kept); held only for
    /// short, non-async sections. The floor, which unknown services report, is the first
    /// load's revision, raised past the index of every forgotten service.
    state: Mutex<PublishedServices<Entry>>,
    /// The etcd revision the view reflects; writers wait on it to read their own writes.
    applied: watch::Sender<i64>,
    /// Most services kept; emptied ones beyond it are forgotten, oldest first.
    max_services: usize,
}

impl View for Entry {
    fn view(&self, id: &str) -> InstanceView {
        self.record.view(id)
    }
}

/// Publishes the service's instances at `revision` (never below its current index + 1, so
/// waiters always see the index move), and returns the index published.
fn publish(service: &PublishedService<Entry>, revision: u64) -> u64 {
    let index = revision.max(service.index() + 1);
    service.publish(index);
    index
}

impl Mirror {
    /// An empty view that has seen no revision yet.
    pub fn new(max_services: usize) -> Self {
        let (applied, _) = watch::channel(0);
        Self {
            state: Mutex::new(PublishedServices::new()),
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
            state.raise_floor(revision_index);
        }
        let names: BTreeSet<String> = state.names().chain(fresh.keys()).cloned().collect();
        let mut latest = None;
        for name in names {
            let instances = fresh.remove(&name).unwrap_or_default();
            // A new name comes with instances, so it is published at `revision` below.
            let service = state.get_or_insert(&name, 0);
            service.instances = instances;
            if service.is_stale() {
                latest = Some(publish(service, revision_index));
            }
        }
        evict(&mut state, self.max_services);
        if let Some(index) = latest {
            state.notify(index);
        }
        drop(state);
        self.advance(revision);
    }

    /// Applies watch events in order. Returns how many services changed visibly and which
    /// instances expired.
    pub fn apply(&self, changes: Vec<Change>) -> Applied {
        let mut state = self.lock();
        let mut touched: BTreeMap<String, i64> = BTreeMap::new();
        let mut expired = Vec::new();
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
                    let floor = state.floor();
                    let known = state.get_or_insert(&service, floor);
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
                    expired: lease_ran_out,
                } => {
                    last = last.max(revision);
                    let Some(removed) = state
                        .get_mut(&service)
                        .and_then(|known| known.instances.remove(&id))
                    else {
                        continue;
                    };
                    // A key without a lease cannot expire.
                    if lease_ran_out && removed.lease != 0 {
                        expired.push(Expired {
                            service: service.clone(),
                            id,
                            address: removed.record.address,
                        });
                    }
                    touched.insert(service, revision);
                }
            }
        }
        let mut latest = None;
        for (name, revision) in &touched {
            if let Some(service) = state.get(name) {
                latest = Some(publish(service, to_index(*revision)));
            }
        }
        evict(&mut state, self.max_services);
        if let Some(index) = latest {
            state.notify(index);
        }
        drop(state);
        self.advance(last);
        Applied {
            changed: touched.len(),
            expired,
        }
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
            .get(service)
            .and_then(|known| known.instances.get(id))
            .cloned()
    }

    /// The instance keys a registry's sweep expires: records a registry made (with a
    /// lease digest and a TTL), on an etcd lease.
    pub fn watched(&self) -> Vec<Watched> {
        let state = self.lock();
        let mut keys = Vec::new();
        for service in state.live() {
            let Some(known) = state.get(service) else {
                continue;
            };
            for (id, entry) in &known.instances {
                let record = &entry.record;
                if entry.lease != 0 && record.ttl_secs > 0 && !record.lease_sha256.is_empty() {
                    keys.push(Watched {
                        service: service.clone(),
                        id: id.clone(),
                        lease: entry.lease,
                        ttl: Duration::from_secs(record.ttl_secs),
                    });
                }
            }
        }
        keys
    }

    /// `(instances of service, services with instances)`, for the limits.
    pub fn counts(&self, service: &str) -> (usize, usize) {
        let state = self.lock();
        let instances = state.get(service).map_or(0, |known| known.instances.len());
        (instances, state.live().count())
    }

    /// Names of services with at least one instance, sorted.
    pub fn services(&self) -> Vec<String> {
        self.lock().live().cloned().collect()
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
        // The guard is gone when `look` returns, before any waiting.
        published::wait_for_change(
            || self.lock().look(service, index),
            || self.snapshot(service),
            deadline,
        )
        .await
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
    fn lock(&self) -> MutexGuard<'_, PublishedServices<Entry>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Forgets emptied services, oldest index first, while there are more than `max`.
fn evict(state: &mut PublishedServices<Entry>, max: usize) {
    // Each pass removes one service or stops.
    while state.len() > max && state.evict_oldest_emptied() {}
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

    fn delete(service: &str, id: &str, revision: i64, expired: bool) -> Change {
        Change::Delete {
            service: service.into(),
            id: id.into(),
            revision,
            expired,
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

        assert_eq!(
            mirror
                .apply(vec![put("a", "2", "http://h:2", 8, 11)])
                .changed,
            1
        );
        assert_eq!(mirror.snapshot("a").index, 11);
        // A re-registration with a new lease but the same address and metadata.
        assert_eq!(
            mirror
                .apply(vec![put("a", "2", "http://h:2", 9, 12)])
                .changed,
            0
        );
        assert_eq!(mirror.snapshot("a").index, 11);
        assert_eq!(mirror.entry("a", "2").unwrap().lease, 9);
        assert_eq!(mirror.applied(), 12);

        assert_eq!(mirror.apply(vec![delete("a", "1", 13, false)]).changed, 1);
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
        mirror.apply(vec![delete("a", "1", 3, false)]);
        mirror.apply(vec![put("b", "1", "http://h:1", 2, 4)]);
        assert!(mirror.snapshot("a").index >= 3);
        assert_eq!(mirror.services(), ["b"]);
    }

    #[test]
    fn only_deletions_of_leased_instances_without_a_marker_are_expiries() {
        let mirror = Mirror::new(100);
        mirror.load(
            vec![
                ("a".into(), "1".into(), entry("http://h:1", 1)),
                ("a".into(), "2".into(), entry("http://h:2", 2)),
                ("a".into(), "3".into(), entry("http://h:3", 0)),
            ],
            5,
        );
        let applied = mirror.apply(vec![
            // Its lease ran out.
            delete("a", "1", 6, true),
            // Deregistered: a marker came at its revision.
            delete("a", "2", 7, false),
            // No lease, so deleted by hand rather than expired.
            delete("a", "3", 8, true),
            // Not in the view: nothing left, so nothing expired.
            delete("a", "9", 9, true),
        ]);
        assert_eq!(
            applied.expired,
            [Expired {
                service: "a".into(),
                id: "1".into(),
                address: "http://h:1".into(),
            }]
        );
        assert_eq!(applied.changed, 1);
        assert!(mirror.snapshot("a").instances.is_empty());
        // The same deletion seen again (a resumed watch) removes nothing and counts nothing.
        assert_eq!(
            mirror.apply(vec![delete("a", "1", 6, true)]),
            Applied::default()
        );
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
