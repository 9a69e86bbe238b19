//! Round-robin choice among the instances whose breaker admits a request.
//!
//! The balancer walks the instance list from a shared cursor and takes the first instance
//! that (a) the caller has not already tried for this request and (b) whose breaker grants
//! a [`Permit`]. Instances with an open breaker are skipped without being charged a turn, so
//! traffic interleaves evenly across the healthy ones. When no instance admits a request the
//! answer is `None` at once: the caller reports "all services are down", it never waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;

use crate::Instance;
use crate::breaker::{Breaker, Permit, Transition};

/// An instance together with its breaker. Breakers are keyed by address by the owner of the
/// endpoint list, so an instance keeps its breaker across discovery refreshes.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The instance as discovery reported it.
    pub instance: Instance,
    /// The instance's breaker.
    pub breaker: Arc<Breaker>,
}

/// A round-robin cursor shared by all callers of one service.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A cursor starting at the first instance.
    pub fn new() -> Self {
        Self::default()
    }

    /// Picks the next endpoint, skipping those for which `skip` is true and those whose
    /// breaker refuses. Every breaker transition met on the way (an Open breaker whose retest
    /// delay has passed moves to Retest) is handed to `on_transition`.
    pub fn pick<'a>(
        &self,
        endpoints: &'a [Endpoint],
        now: Instant,
        skip: impl Fn(&Endpoint) -> bool,
        mut on_transition: impl FnMut(&Endpoint, Transition),
    ) -> Option<(&'a Endpoint, Permit)> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for offset in 0..n {
            let index = (start + offset) % n;
            let endpoint = &endpoints[index];
            if skip(endpoint) {
                continue;
            }
            let (permit, transition) = endpoint.breaker.try_acquire(now);
            if let Some(t) = transition {
                on_transition(endpoint, t);
            }
            if let Some(permit) = permit {
                if offset != 0 {
                    // Skipped instances are not charged a turn: continue after the chosen one.
                    self.next.store(index + 1, Ordering::Relaxed);
                }
                return Some((endpoint, permit));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
