//! [`Roster`]: the endpoints a [`Balancer`](super::Balancer) picks from, readable from
//! outside it.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;

use super::{Balance, Load, Picker};

/// The endpoints of a [`Balancer`](super::Balancer), by key (the instance's address), with
/// their loads and shares of the picker's turns, as its last discovery change left them.
/// The gRPC channel's balancer is boxed behind the lock its calls take: status pages read
/// this instead, and never hold up a call. Cheap to clone; clones read the same balancer.
#[derive(Debug, Clone)]
pub(crate) struct Roster {
    /// What every clone reads.
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The endpoints' keys and loads, in the balancer's order; replaced on every change.
    members: Mutex<Arc<[(String, Load)]>>,
    /// The balancer's cursor, whose slow-start window the shares depend on.
    picker: Arc<Picker>,
    /// The balancer's rule.
    balance: Balance,
}

/// One endpoint, as [`Roster::shares`] gives it.
#[derive(Debug)]
pub(crate) struct Member {
    /// Its key: the instance's address.
    pub(crate) key: String,
    /// Its calls in flight and answer time.
    pub(crate) load: Load,
    /// Its share of the turns at the moment asked, against a full one (`1.0`).
    pub(crate) share: f64,
}

impl Roster {
    /// An empty roster of a balancer picking with `picker` by `balance`.
    pub(crate) fn new(picker: Arc<Picker>, balance: Balance) -> Self {
        Self {
            shared: Arc::new(Shared {
                members: Mutex::new(Arc::from([])),
                picker,
                balance,
            }),
        }
    }

    /// Replaces the endpoints with `members`.
    pub(crate) fn publish(&self, members: impl Iterator<Item = (String, Load)>) {
        *self.members() = members.collect();
    }

    /// Every endpoint now, with its share of the turns at `now`.
    pub(crate) fn shares(&self, now: Instant) -> Vec<Member> {
        let members = Arc::clone(&self.members());
        let shared = &self.shared;
        let load = |i: usize| &members[i].1;
        let shares = shared
            .picker
            .shares(shared.balance, members.len(), load, now);
        members
            .iter()
            .zip(shares)
            .map(|((key, load), share)| Member {
                key: key.clone(),
                load: load.clone(),
                share,
            })
            .collect()
    }

    fn members(&self) -> std::sync::MutexGuard<'_, Arc<[(String, Load)]>> {
        // A panic while the lock was held cannot leave the list half-changed (one store).
        self.shared
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
