//! [`Tried`]: the instances a call has sent attempts to, which its retries and hedges avoid.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// The endpoints (by their discovery key, the instance's address) that a call's attempts
/// were sent to, shared by those attempts. Carried in a request's extensions, it steers
/// [`Balancer`](super::Balancer): an endpoint already in it is not picked, and the one
/// picked is added. A request whose endpoints are all in it fails at once with
/// [`Error::AllInstancesDown`](crate::Error::AllInstancesDown), without the `all services
/// are down` log: the call has tried every instance, not found them all down.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tried {
    /// The addresses, in the order they were picked, and a wake-up for each addition.
    inner: Arc<(Mutex<Vec<String>>, Notify)>,
}

impl Tried {
    /// Whether `address` has been tried.
    pub(crate) fn contains(&self, address: &str) -> bool {
        self.list().iter().any(|tried| tried == address)
    }

    /// Adds `address`, picked for an attempt.
    pub(crate) fn push(&self, address: &str) {
        self.list().push(address.to_string());
        self.inner.1.notify_waiters();
    }

    /// How many attempts were given an endpoint.
    pub(crate) fn len(&self) -> usize {
        self.list().len()
    }

    #[cfg(feature = "grpc")]
    /// The address picked for attempt `n` (from 0), if it has been.
    pub(crate) fn get(&self, n: usize) -> Option<String> {
        self.list().get(n).cloned()
    }

    #[cfg(feature = "grpc")]
    /// Waits until more than `n` attempts have been given an endpoint.
    pub(crate) async fn picked_more_than(&self, n: usize) {
        // Each addition wakes every waiter; a waiter registers before it checks, so no
        // addition is missed. The loop ends: the list only grows.
        loop {
            let notified = self.inner.1.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.len() > n {
                return;
            }
            notified.await;
        }
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // A panic while the lock was held cannot leave the list half-changed (one push).
        self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
