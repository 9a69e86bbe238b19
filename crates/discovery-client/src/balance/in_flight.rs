//! [`InFlight`]: how many requests one instance has been sent and has not answered yet.

use std::borrow::Borrow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::stripe::{self, Padded};

/// Requests in flight to one instance, shared by every clone: raised by
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
/// The count is kept per thread (per group of threads, each group's count on cache lines of
/// its own), and the balancer reads the calling thread's ([`get_local`](InFlight::get_local)):
/// each thread passes over the instances where *its* requests are waiting. A stalled instance
/// holds the requests of every thread that sent it some, so every thread stops sending it
/// more; and no thread writes, on the hot path, a line another thread writes, so picking
/// scales with cores (see docs/BENCHMARKS.md). [`get`](InFlight::get) adds up all threads.
///
/// ```
/// use discovery_client::balance::InFlight;
///
/// let in_flight = InFlight::new();
/// let first = in_flight.start();
/// let second = in_flight.clone().start(); // clones share the count
/// assert_eq!(in_flight.get(), 2);
/// assert_eq!(in_flight.get_local(), 2); // both started on this thread
/// drop(first);
/// drop(second);
/// assert_eq!(in_flight.get(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct InFlight {
    /// The count, per group of threads; an `Arc` so that guards outlive a borrow of the
    /// endpoint they count for.
    counts: Arc<[Padded<AtomicUsize>]>,
}

impl Default for InFlight {
    fn default() -> Self {
        Self::new()
    }
}

impl InFlight {
    /// A counter at zero.
    pub fn new() -> Self {
        Self {
            counts: stripe::striped(|| AtomicUsize::new(0)).into(),
        }
    }

    /// Requests in flight right now, started from any thread.
    pub fn get(&self) -> usize {
        self.counts
            .iter()
            .map(|count| count.0.load(Ordering::Relaxed))
            .sum()
    }

    /// Requests in flight right now that were started from the calling thread (or a thread
    /// sharing its group, when there are more threads than groups).
    #[inline]
    pub fn get_local(&self) -> usize {
        self.counts[stripe::current()].0.load(Ordering::Relaxed)
    }

    /// Counts one more request in flight until the returned guard is dropped. The guard
    /// holds a clone of the counter, so it can outlive any borrow (a request future).
    pub fn start(&self) -> InFlightGuard {
        InFlightGuardOf::new(self.clone())
    }

    /// [`start`](InFlight::start) with a guard that borrows the counter instead of cloning
    /// it (cloning writes the `Arc`'s reference count, a line every thread shares).
    ///
    /// ```
    /// use discovery_client::balance::InFlight;
    ///
    /// let in_flight = InFlight::new();
    /// let guard = in_flight.start_ref();
    /// assert_eq!(in_flight.get(), 1);
    /// drop(guard);
    /// assert_eq!(in_flight.get(), 0);
    /// ```
    pub fn start_ref(&self) -> InFlightRef<'_> {
        InFlightGuardOf::new(self)
    }
}

/// One request counted in an [`InFlight`], holding the counter as `C`: an owned clone
/// ([`InFlightGuard`]) or a borrow ([`InFlightRef`]). Dropping it counts the request out, in
/// the same thread's count it was counted in, whichever thread drops it.
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard is kept"]
pub struct InFlightGuardOf<C: Borrow<InFlight>> {
    /// The counter to lower on drop.
    in_flight: C,
    /// The group of threads it was counted in.
    stripe: usize,
}

/// A guard holding a clone of its counter, from [`InFlight::start`].
pub type InFlightGuard = InFlightGuardOf<InFlight>;

/// A guard borrowing its counter, from [`InFlight::start_ref`].
pub type InFlightRef<'a> = InFlightGuardOf<&'a InFlight>;

impl<C: Borrow<InFlight>> InFlightGuardOf<C> {
    #[inline]
    fn new(in_flight: C) -> Self {
        let stripe = stripe::current();
        in_flight.borrow().counts[stripe]
            .0
            .fetch_add(1, Ordering::Relaxed);
        Self { in_flight, stripe }
    }
}

impl<C: Borrow<InFlight>> Drop for InFlightGuardOf<C> {
    #[inline]
    fn drop(&mut self) {
        self.in_flight.borrow().counts[self.stripe]
            .0
            .fetch_sub(1, Ordering::Relaxed);
    }
}
