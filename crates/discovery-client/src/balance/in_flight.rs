//! [`InFlight`]: how many requests one instance has been sent and has not answered yet.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests in flight to one instance, shared by every clone: raised by
/// [`start`](InFlight::start) when a request is sent there and lowered when the guard it
/// returns is dropped, so an attempt that is answered, times out or is cancelled (its future
/// dropped) counts down all the same.
///
/// The balancer reads it to prefer the instances with fewer requests waiting: an instance
/// that has stopped answering keeps its count up and stops receiving new requests once it
/// holds more than the others, long before the first timeout opens its breaker. Relaxed
/// atomics and no lock: the count only steers the choice of instance.
#[derive(Debug, Clone, Default)]
pub(crate) struct InFlight {
    /// The count; shared by clones and by the guards.
    count: Arc<AtomicUsize>,
}

impl InFlight {
    /// A counter at zero.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Requests in flight right now.
    #[inline]
    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Counts one more request in flight until the returned guard is dropped.
    pub(crate) fn start(&self) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            count: Arc::clone(&self.count),
        }
    }
}

/// One request counted in an [`InFlight`]; dropping it counts the request out.
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard is kept"]
pub(crate) struct InFlightGuard {
    /// The count to lower on drop.
    count: Arc<AtomicUsize>,
}

impl Drop for InFlightGuard {
    #[inline]
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}
