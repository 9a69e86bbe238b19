//! The [`Store`] trait: what the HTTP layer needs from a store, whichever one it is.
//!
//! Writes are async because a distributed store answers over the network; reads of the
//! current set (`services`, `snapshot`) are not, because every store serves them from memory
//! (the etcd store from a watched mirror of its keys). The methods return boxed futures so
//! the HTTP layer can hold any store as `Arc<dyn Store>`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{MemoryStore, Registered, Registration, Snapshot, StoreError};

/// A boxed, `Send` future borrowing the store, as [`Store`] methods return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A registry store. Its semantics are [`MemoryStore`]'s, which documents each operation:
/// the same errors for the same situations, an index that moves only on visible changes,
/// blocking reads that wake as soon as the set changes.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Registers or re-registers an instance; see [`MemoryStore::register`].
    fn register<'a>(
        &'a self,
        registration: Registration,
        presented: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Registered, StoreError>>;

    /// Renews an instance's lease; see [`MemoryStore::heartbeat`].
    fn heartbeat<'a>(
        &'a self,
        service: &'a str,
        id: &'a str,
        presented: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Duration, StoreError>>;

    /// Removes an instance; see [`MemoryStore::deregister`].
    fn deregister<'a>(
        &'a self,
        service: &'a str,
        id: &'a str,
        presented: Option<&'a str>,
    ) -> StoreFuture<'a, Result<(), StoreError>>;

    /// Services with at least one live instance, sorted; see [`MemoryStore::services`].
    fn services(&self) -> Vec<String>;

    /// A service's current set; see [`MemoryStore::snapshot`].
    fn snapshot(&self, service: &str) -> Arc<Snapshot>;

    /// Waits until the service's index differs from `index` or `deadline` passes; see
    /// [`MemoryStore::wait_for_change`].
    fn wait_for_change<'a>(
        &'a self,
        service: &'a str,
        index: u64,
        deadline: Instant,
    ) -> StoreFuture<'a, Arc<Snapshot>>;

    /// Removes lapsed leases now and says how many; called by the sweeper. The etcd store
    /// looks up, in etcd, the leases of instances it has not heard from for their TTL.
    fn expire(&self) -> StoreFuture<'_, usize>;

    /// Which history of registrations this store serves (see the [module docs](super) on
    /// epochs): the same number for as long as registrations and indexes carry on from
    /// one answer to the next, a different one when they may have been lost.
    fn epoch(&self) -> u64;
}

impl Store for MemoryStore {
    fn register<'a>(
        &'a self,
        registration: Registration,
        presented: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Registered, StoreError>> {
        let outcome = MemoryStore::register(self, registration, presented);
        Box::pin(std::future::ready(outcome))
    }

    fn heartbeat<'a>(
        &'a self,
        service: &'a str,
        id: &'a str,
        presented: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Duration, StoreError>> {
        let outcome = MemoryStore::heartbeat(self, service, id, presented);
        Box::pin(std::future::ready(outcome))
    }

    fn deregister<'a>(
        &'a self,
        service: &'a str,
        id: &'a str,
        presented: Option<&'a str>,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        let outcome = MemoryStore::deregister(self, service, id, presented);
        Box::pin(std::future::ready(outcome))
    }

    fn services(&self) -> Vec<String> {
        MemoryStore::services(self)
    }

    fn snapshot(&self, service: &str) -> Arc<Snapshot> {
        MemoryStore::snapshot(self, service)
    }

    fn wait_for_change<'a>(
        &'a self,
        service: &'a str,
        index: u64,
        deadline: Instant,
    ) -> StoreFuture<'a, Arc<Snapshot>> {
        Box::pin(MemoryStore::wait_for_change(self, service, index, deadline))
    }

    fn expire(&self) -> StoreFuture<'_, usize> {
        Box::pin(std::future::ready(MemoryStore::expire(self)))
    }

    fn epoch(&self) -> u64 {
        MemoryStore::epoch(self)
    }
}
