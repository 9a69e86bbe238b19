//! A cap on blocking queries per client (per peer IP address), beside the global cap.
//!
//! The global cap (`--max-blocking-queries`) keeps the number of parked requests bounded;
//! this one keeps a single client from taking all of them, so one runaway watcher cannot
//! starve everyone else. Each parked query holds a [`ClientPermit`]; dropping it (the query
//! answered, or its connection went away) gives the slot back, and a client's entry is
//! removed when its last permit goes, so the table holds only clients with queries parked
//! (at most `--max-blocking-queries` entries).
//!
//! Requests whose peer address is unknown (in-process tests through `oneshot`, which have
//! no socket) are bounded by the global cap only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Parked blocking queries per peer IP.
#[derive(Debug)]
pub(crate) struct PerClientLimit {
    /// Most queries one peer may have parked at once.
    max: usize,
    /// Parked queries per peer; only peers with at least one are present.
    parked: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One parked query's slot; gives it back when dropped.
#[derive(Debug)]
pub(crate) struct ClientPermit {
    /// The peer the slot belongs to.
    peer: IpAddr,
    /// The table to give it back to.
    parked: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerClientLimit {
    /// A limit of `max` parked queries per peer.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            parked: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The configured limit.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Takes a slot for `peer`, or `None` if it already has `max` queries parked.
    pub(crate) fn try_acquire(&self, peer: IpAddr) -> Option<ClientPermit> {
        let mut parked = lock(&self.parked);
        let count = parked.entry(peer).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientPermit {
            peer,
            parked: Arc::clone(&self.parked),
        })
    }

    /// How many queries `peer` has parked right now.
    #[cfg(test)]
    pub(crate) fn parked(&self, peer: IpAddr) -> usize {
        lock(&self.parked).get(&peer).copied().unwrap_or(0)
    }
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        let mut parked = lock(&self.parked);
        if let Some(count) = parked.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                parked.remove(&self.peer);
            }
        }
    }
}

/// Every update under this lock is a single counter change, so a poisoned lock still holds
/// consistent counts.
fn lock(parked: &Mutex<HashMap<IpAddr, usize>>) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
    parked.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn each_peer_has_its_own_slots_and_they_come_back() {
        let limit = PerClientLimit::new(2);
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let first = limit.try_acquire(a).unwrap();
        let second = limit.try_acquire(a).unwrap();
        assert!(limit.try_acquire(a).is_none(), "a third slot for a");
        let other = limit.try_acquire(b).unwrap();
        assert_eq!((limit.parked(a), limit.parked(b)), (2, 1));
        drop(first);
        assert_eq!(limit.parked(a), 1);
        let again = limit.try_acquire(a).unwrap();
        drop((second, again, other));
        assert!(lock(&limit.parked).is_empty(), "idle peers are forgotten");
    }
}
