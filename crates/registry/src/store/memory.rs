//! The embedded in-memory store.
//!
//! All state sits behind one `std::sync::Mutex`, held only for short, non-async critical
//! sections. Each service publishes its current [`Snapshot`] at the store counter, so
//! blocking readers wake as soon as it changes (see the `published` module).
//!
//! Lease deadlines are kept in a queue ordered by time, so expiring is `O(expired)` and
//! cheap enough to run before every operation as well as from the background sweeper.
//! Expired instances are therefore never visible, even between sweeps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::published::{self, PublishedServices, View};
use super::{
    Expired, InstanceView, Lease, Metadata, Registered, Registration, Snapshot, StoreError,
    StoreLimits, log_expired,
};

/// The in-memory registry store. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct MemoryStore {
    /// Everything mutable; see [`State`].
    state: Mutex<State>,
    /// Bounds on services and instances.
    limits: StoreLimits,
    /// Chosen at random when the store is made: this store's history of registrations (see
    /// the [module docs](super) on epochs).
    epoch: u64,
}

/// The mutable part of the store.
#[derive(Debug)]
struct State {
    /// Store-wide modification counter; services take their index from it.
    counter: u64,
    /// Services and their published snapshots, including emptied ones. Its floor is the
    /// highest index of any evicted service, which unknown services report, so a service's
    /// index never goes backwards even after its entry was evicted.
    services: PublishedServices<Instance>,
    /// Lease deadlines, ordered by time: `(expires_at, seq) -> (service, id)`.
    deadlines: BTreeMap<(Instant, u64), (String, String)>,
    /// Next per-instance sequence number, making deadline keys unique.
    next_seq: u64,
}

/// One registered instance.
#[derive(Debug)]
struct Instance {
    /// Base URL of the instance.
    address: String,
    /// Metadata published with it.
    metadata: Metadata,
    /// Current lease secret.
    lease: Lease,
    /// Lease TTL, re-applied on every heartbeat.
    ttl: Duration,
    /// When the lease runs out unless renewed.
    expires_at: Instant,
    /// Unique number making this instance's key in `State::deadlines` unique.
    seq: u64,
}

impl View for Instance {
    fn view(&self, id: &str) -> InstanceView {
        InstanceView {
            id: id.to_owned(),
            address: self.address.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

impl MemoryStore {
    /// An empty store with the given limits.
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            state: Mutex::new(State {
                counter: 0,
                services: PublishedServices::new(),
                deadlines: BTreeMap::new(),
                next_seq: 0,
            }),
            limits,
            epoch: rand::random(),
        }
    }

    /// This store's epoch: random, chosen when it was made (see the [module docs](super)).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// Registers an instance, or re-registers an existing id, issuing a new lease.
    ///
    /// Re-registering a live id (at any address) requires its current lease in
    /// `presented`, else [`StoreError::LeaseHeld`] with the time left on that lease: no one
    /// else can take over, and then deregister, another's registration. A restarted
    /// instance that kept its lease (see the client's lease file) presents it and takes
    /// its entry back at once; one that lost it waits for the old lease to run out. The old
    /// lease stops working once a new one is issued. The service index moves only if the
    /// address or metadata changed or the id is new.
    pub fn register(
        &self,
        registration: Registration,
        presented: Option<&str>,
    ) -> Result<Registered, StoreError> {
        let outcome = self
            .with_state(|state, now| state.register(&registration, presented, now, self.limits));
        if let Ok(registered) = &outcome {
            tracing::info!(
                service = %registration.service,
                instance = %registration.id,
                address = %registration.address,
                ttl_secs = registered.ttl.as_secs(),
                created = registered.created,
                changed = registered.changed,
                "instance registered"
            );
        }
        outcome
    }

    /// Renews an instance's lease for another TTL; returns that TTL.
    ///
    /// [`StoreError::UnknownInstance`] if the id is not live (the instance should
    /// re-register), [`StoreError::LeaseMismatch`] if `presented` is not its current lease.
    pub fn heartbeat(
        &self,
        service: &str,
        id: &str,
        presented: Option<&str>,
    ) -> Result<Duration, StoreError> {
        let outcome = self.with_state(|state, now| state.heartbeat(service, id, presented, now));
        if outcome.is_ok() {
            tracing::debug!(service, instance = id, "heartbeat");
        }
        outcome
    }

    /// Removes an instance; its lease must be `presented`.
    ///
    /// Errors as for [`MemoryStore::heartbeat`].
    pub fn deregister(
        &self,
        service: &str,
        id: &str,
        presented: Option<&str>,
    ) -> Result<(), StoreError> {
        let outcome = self.with_state(|state, _| state.deregister(service, id, presented));
        outcome.map(|address| {
            tracing::info!(service, instance = id, %address, "instance deregistered");
        })
    }

    /// Names of services with at least one live instance, sorted.
    pub fn services(&self) -> Vec<String> {
        self.with_state(|state, _| state.services.live().cloned().collect())
    }

    /// The service's current instance set. An unknown service has no instances and
    /// index 0 (or, once services have been evicted to make room, the highest evicted
    /// index, so no index ever goes backwards).
    pub fn snapshot(&self, service: &str) -> Arc<Snapshot> {
        self.with_state(|state, _| state.services.snapshot(service))
    }

    /// Waits until the service's index differs from `index`, or until `deadline`, and
    /// returns the snapshot current at that moment.
    ///
    /// Returns at once if the index already differs: normally it is higher (something
    /// changed since the caller looked), and a lower one means the registry restarted,
    /// which the caller must also hear about rather than stall. Wakes on a change without
    /// polling. Cancel-safe: dropping the future just stops waiting.
    pub async fn wait_for_change(
        &self,
        service: &str,
        index: u64,
        deadline: Instant,
    ) -> Arc<Snapshot> {
        published::wait_for_change(
            || self.with_state(|state, _| state.services.look(service, index)),
            || self.snapshot(service),
            deadline,
        )
        .await
    }

    /// Removes every instance whose lease has run out, moving the index of each affected
    /// service, and returns how many were removed. Called by the sweeper; every other
    /// method also expires first, so callers never see a lapsed instance.
    pub fn expire(&self) -> usize {
        let now = Instant::now();
        let expired = self.lock().expire(now);
        log_expired(&expired);
        expired.len()
    }

    /// Runs `op` on the state at the current time, after expiring lapsed leases (which are
    /// logged once the lock is released).
    fn with_state<R>(&self, op: impl FnOnce(&mut State, Instant) -> R) -> R {
        let now = Instant::now();
        let mut state = self.lock();
        let expired = state.expire(now);
        let result = op(&mut state, now);
        drop(state);
        log_expired(&expired);
        result
    }

    /// Locks the state. A panic while the lock was held cannot leave it half-updated in a
    /// way that matters more than refusing all further requests would, so poisoning is
    /// ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(StoreLimits::default())
    }
}

impl State {
    /// Moves the counter and publishes the service's new snapshot at it.
    fn bump(&mut self, service: &str) {
        self.counter += 1;
        if let Some(entry) = self.services.get(service) {
            entry.publish(self.counter);
        }
        self.services.notify(self.counter);
    }

    fn expire(&mut self, now: Instant) -> Vec<Expired> {
        let mut expired = Vec::new();
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (service, id) = entry.remove();
            let removed = self
                .services
                .get_mut(&service)
                .and_then(|entry| entry.instances.remove(&id));
            if let Some(instance) = removed {
                expired.push(Expired {
                    service,
                    id,
                    address: instance.address,
                });
            }
        }
        let affected: BTreeSet<String> = expired.iter().map(|e| e.service.clone()).collect();
        for service in affected {
            self.bump(&service);
        }
        expired
    }

    fn register(
        &mut self,
        registration: &Registration,
        presented: Option<&str>,
        now: Instant,
        limits: StoreLimits,
    ) -> Result<Registered, StoreError> {
        let Registration {
            service,
            id,
            address,
            metadata,
            ttl,
        } = registration;

        // Check everything before changing anything.
        match self.services.get(service) {
            Some(entry) => match entry.instances.get(id) {
                // Lapsed leases were expired just before, so this one is alive: only its
                // holder may register the id again.
                Some(current) if !presented.is_some_and(|p| current.lease.matches(p)) => {
                    return Err(StoreError::LeaseHeld {
                        retry_after: Some(current.expires_at.saturating_duration_since(now)),
                    });
                }
                Some(_) => {}
                None if entry.instances.len() >= limits.max_instances_per_service => {
                    return Err(StoreError::TooManyInstances {
                        limit: limits.max_instances_per_service,
                    });
                }
                None => {}
            },
            None => self.make_room_for_service(limits.max_services)?,
        }

        let lease = Lease::generate();
        let expires_at = now + *ttl;
        let floor = self.services.floor();
        let entry = self.services.get_or_insert(service, floor);
        let (created, changed) = match entry.instances.get_mut(id) {
            Some(current) => {
                let changed = current.address != *address || current.metadata != *metadata;
                let key = self.deadlines.remove(&(current.expires_at, current.seq));
                current.address.clone_from(address);
                current.metadata.clone_from(metadata);
                current.lease = lease.clone();
                current.ttl = *ttl;
                current.expires_at = expires_at;
                let key = key.unwrap_or_else(|| (service.clone(), id.clone()));
                self.deadlines.insert((expires_at, current.seq), key);
                (false, changed)
            }
            None => {
                let seq = self.next_seq;
                self.next_seq += 1;
                entry.instances.insert(
                    id.clone(),
                    Instance {
                        address: address.clone(),
                        metadata: metadata.clone(),
                        lease: lease.clone(),
                        ttl: *ttl,
                        expires_at,
                        seq,
                    },
                );
                self.deadlines
                    .insert((expires_at, seq), (service.clone(), id.clone()));
                (true, true)
            }
        };
        if changed {
            self.bump(service);
        }
        Ok(Registered {
            lease,
            ttl: *ttl,
            created,
            changed,
        })
    }

    /// Ensures a new service fits, evicting the emptied service with the oldest index if
    /// the table is full.
    fn make_room_for_service(&mut self, max_services: usize) -> Result<(), StoreError> {
        if self.services.len() < max_services || self.services.evict_oldest_emptied() {
            Ok(())
        } else {
            Err(StoreError::TooManyServices {
                limit: max_services,
            })
        }
    }

    fn heartbeat(
        &mut self,
        service: &str,
        id: &str,
        presented: Option<&str>,
        now: Instant,
    ) -> Result<Duration, StoreError> {
        let instance = self
            .services
            .get_mut(service)
            .and_then(|entry| entry.instances.get_mut(id))
            .ok_or_else(|| unknown(service, id))?;
        if !presented.is_some_and(|p| instance.lease.matches(p)) {
            return Err(StoreError::LeaseMismatch);
        }
        let old_key = (instance.expires_at, instance.seq);
        instance.expires_at = now + instance.ttl;
        let value = self
            .deadlines
            .remove(&old_key)
            .unwrap_or_else(|| (service.to_owned(), id.to_owned()));
        self.deadlines
            .insert((instance.expires_at, instance.seq), value);
        Ok(instance.ttl)
    }

    /// Removes the instance and returns the address it had.
    fn deregister(
        &mut self,
        service: &str,
        id: &str,
        presented: Option<&str>,
    ) -> Result<String, StoreError> {
        let entry = self
            .services
            .get_mut(service)
            .ok_or_else(|| unknown(service, id))?;
        let instance = entry
            .instances
            .get(id)
            .ok_or_else(|| unknown(service, id))?;
        if !presented.is_some_and(|p| instance.lease.matches(p)) {
            return Err(StoreError::LeaseMismatch);
        }
        let key = (instance.expires_at, instance.seq);
        let address = entry
            .instances
            .remove(id)
            .map(|instance| instance.address)
            .unwrap_or_default();
        self.deadlines.remove(&key);
        self.bump(service);
        Ok(address)
    }
}

fn unknown(service: &str, id: &str) -> StoreError {
    StoreError::UnknownInstance {
        service: service.to_owned(),
        id: id.to_owned(),
    }
}

#[cfg(test)]
mod tests;
