//! [`InFlight`]: how many requests one instance has been sent and has not answered yet.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests in flight to one instance: one counter, shared by every clone, raised by
/// [`start`](InFlight::start) when a request is sent there and lowered when the
/// [`InFlightGuard`] it returns is dropped, so an attempt that is answered, times out or is
/// cancelled (its future dropped) counts down all the same.
///
/// The balancer reads it to prefer the instances with fewer requests waiting: an instance
/// that has stopped answering keeps its count up, and stops receiving new requests once it
/// holds more than the others, long before the first timeout opens its breaker. Relaxed
/// atomics and no lock: the count only steers the choice of instance and orders no other
/// memory; a reading that is a moment stale costs at most one less-than-ideal pick.
///
/// ```
/// use discovery_client::balance::InFlight;
///
/// let in_flight = InFlight::new();
/// let first = in_flight.start();
/// let second = in_flight.clone().start(); // clones share the count
/// assert_eq!(in_flight.get(), 2);
/// drop(first);
/// drop(second);
/// assert_eq!(in_flight.get(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    /// The count; an `Arc` so that guards outlive a borrow of the endpoint they count for.
    count: Arc<AtomicUsize>,
}

impl InFlight {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests in flight right now.
    pub fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Counts one more request in flight until the returned guard is dropped.
    pub fn start(&self) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            in_flight: self.clone(),
        }
    }
}

/// One request counted in an [`InFlight`]; dropping it counts the request out.
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard is kept"]
pub struct InFlightGuard {
    /// The counter to lower on drop.
    in_flight: InFlight,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.in_flight.count.fetch_sub(1, Ordering::Relaxed);
    }
}
