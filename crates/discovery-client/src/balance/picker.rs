//! [`Picker`]: the lock-free round-robin cursor every balancer in this crate shares, and
//! [`Balance`], the choice between plain round-robin and preferring idle instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;

use crate::Instance;
use crate::breaker::{Breaker, Permit, Transition};
use crate::stripe::{self, Padded};

/// An instance together with its breaker, for [`Picker::pick`].
///
/// ```
/// use std::sync::Arc;
/// use discovery_client::balance::{Endpoint, Picker};
/// use discovery_client::breaker::{Breaker, BreakerConfig};
/// use discovery_client::Instance;
/// use tokio::time::Instant;
///
/// let endpoints: Vec<Endpoint> = (1..=2)
///     .map(|i| Endpoint {
///         instance: Instance::new(i.to_string(), format!("http://127.0.0.1:800{i}")),
///         breaker: Arc::new(Breaker::new(BreakerConfig::default())),
///     })
///     .collect();
/// let picker = Picker::new();
/// let now = Instant::now();
/// let (endpoint, permit) = picker.pick(&endpoints, now, |_| false, |_, _| {}).unwrap();
/// assert_eq!(endpoint.instance.id, "1");
/// permit.record_success(now);
/// ```
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The instance as discovery reported it.
    pub instance: Instance,
    /// The instance's breaker.
    pub breaker: Arc<Breaker>,
}

/// How a balancer chooses among the instances whose breaker admits a request.
///
/// All three count requests in flight per thread ([`InFlight::get_local`](super::InFlight::get_local))
/// and go plain round-robin when nothing is in flight, so sequential callers see 1, 2, 3,
/// 1, 2, 3 whichever is chosen. They differ under concurrent load:
///
/// ```
/// use discovery_client::balance::Balance;
///
/// assert_eq!(Balance::default(), Balance::PowerOfTwoChoices);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// Power of two choices: the instance whose round-robin turn it is, or one other chosen
    /// at random, whichever has fewer requests in flight (the turn's on a tie). An instance
    /// that stops answering (paused, overloaded) keeps its requests outstanding and gets no
    /// new ones once it holds more than the others, instead of only when a timeout opens
    /// its breaker; yet a burst of answers from one instance does not send every next
    /// request there, as [`LeastPending`](Balance::LeastPending) does. What Envoy's
    /// `LEAST_REQUEST` and linkerd do. The default: in docs/BENCHMARKS.md it had the
    /// throughput of least-pending and a shorter tail (p99 1.8 against 2.7 ms at 32
    /// callers), and reads two counts whatever the number of instances.
    #[default]
    PowerOfTwoChoices,
    /// Round-robin among the instances with the fewest requests in flight: every pick goes
    /// to the least loaded instance. Keeps the most even counts, at the price of sending
    /// the next requests together to whichever instance just answered a batch.
    LeastPending,
    /// Plain round-robin: every admitting instance in turn, however many requests it holds.
    RoundRobin,
}

impl Balance {
    /// What the picker compares for an instance with this count of requests in flight: the
    /// calling thread's count, or nothing at all (every instance ties, which is plain
    /// round-robin).
    pub(crate) fn load(self, in_flight: &super::InFlight) -> usize {
        match self {
            Balance::PowerOfTwoChoices | Balance::LeastPending => in_flight.get_local(),
            Balance::RoundRobin => 0,
        }
    }
}

/// The round-robin cursor of one service: no lock, and on the hot path no memory that
/// another thread writes.
///
/// [`pick_with`](Picker::pick_with) offers the candidates to an admission check in turn,
/// starting after the last one chosen; candidates that refuse are skipped without being
/// charged a turn, so traffic interleaves evenly across the ones that admit.
/// [`pick_least_pending`](Picker::pick_least_pending) offers the candidates with the fewest
/// requests in flight first, in that same turn among equals.
/// [`RoundRobin`](super::RoundRobin) and [`ServiceClient`](crate::ServiceClient) both pick
/// through it.
///
/// The turn is kept per thread (one cursor per group of threads, each on cache lines
/// of its own): calls made from one thread, such as every call of a current-thread runtime,
/// go 1, 2, 3, 1, 2, 3 exactly, and each thread of a multi-threaded runtime goes round the
/// instances in that order on its own, so every instance gets its share from every thread.
/// Two threads calling at once do not contend for one counter, which is what lets picking
/// scale with cores (a cursor shared by all threads scaled 1.36× on 2 threads in
/// docs/BENCHMARKS.md; one per thread, 2×). What this gives up is one order across threads:
/// two calls from different threads may both go to instance 1.
///
/// ```
/// use discovery_client::balance::Picker;
///
/// let picker = Picker::new();
/// let healthy = [true, false, true];
/// let picks: Vec<usize> = (0..4)
///     .filter_map(|_| picker.pick_with(3, |i| healthy[i].then_some(())))
///     .map(|(i, ())| i)
///     .collect();
/// assert_eq!(picks, [0, 2, 0, 2]);
/// ```
#[derive(Debug)]
pub struct Picker {
    /// The next turn, per stripe of threads.
    next: Box<[Padded<AtomicUsize>]>,
}

impl Default for Picker {
    fn default() -> Self {
        Self::new()
    }
}

impl Picker {
    /// A cursor starting at the first candidate, on every thread.
    pub fn new() -> Self {
        Self {
            next: stripe::striped(|| AtomicUsize::new(0)),
        }
    }

    /// The calling thread's cursor.
    #[inline]
    fn cursor(&self) -> &AtomicUsize {
        &self.next[stripe::current()].0
    }

    /// Offers candidates `0..n`, starting at the cursor, to `admit` until one answers `Some`;
    /// returns its index and answer, or `None` at once when none does.
    pub fn pick_with<T>(
        &self,
        n: usize,
        mut admit: impl FnMut(usize) -> Option<T>,
    ) -> Option<(usize, T)> {
        if n == 0 {
            return None;
        }
        let cursor = self.cursor();
        let start = cursor.fetch_add(1, Ordering::Relaxed);
        for offset in 0..n {
            let index = start.wrapping_add(offset) % n;
            if let Some(answer) = admit(index) {
                if offset != 0 {
                    // Skipped candidates are not charged a turn: continue after this one.
                    cursor.store(index.wrapping_add(1), Ordering::Relaxed);
                }
                return Some((index, answer));
            }
        }
        None
    }

    /// Offers candidates `0..n` to `admit` fewest-`pending` first, ties in turn from the
    /// cursor, until one answers `Some`; returns its index and answer, or `None` at once when
    /// none does. With nothing pending anywhere this is exactly
    /// [`pick_with`](Picker::pick_with).
    ///
    /// `admit` is asked only about the candidate that would be chosen, and at most once per
    /// candidate; each answer it gives is either returned or was a refusal. So a breaker's
    /// leave (which may move an Open breaker to Retest and hand out its single probe) is
    /// taken only by the instance that gets the request, never taken and dropped.
    ///
    /// The algorithm: one pass over the candidates in turn order reads each one's `pending`
    /// and keeps the first with the fewest, stopping early at an idle one (nobody beats it);
    /// that candidate is offered. Only when it refuses (an open breaker, an instance the
    /// call already tried) is the pass repeated without it. The common case is therefore one
    /// pass of `n` relaxed loads (one load when the first candidate in turn is idle) and one
    /// `admit`. A full scan rather than power-of-two-choices (tower's `p2c`): with the few
    /// instances a service has (3 to 10 here) it costs a handful of nanoseconds, it always
    /// finds the least loaded instance where two random samples may both miss it, and its
    /// ties keep the exact round-robin order that sequential callers and the logs rely on.
    /// For hundreds of instances per service, sampling would become the cheaper choice.
    ///
    /// ```
    /// use discovery_client::balance::Picker;
    ///
    /// let picker = Picker::new();
    /// // Nothing in flight: plain round-robin.
    /// let idle = [0, 0, 0];
    /// let picks: Vec<usize> = (0..4)
    ///     .filter_map(|_| picker.pick_least_pending(3, |i| idle[i], |_| Some(())))
    ///     .map(|(i, ())| i)
    ///     .collect();
    /// assert_eq!(picks, [0, 1, 2, 0]);
    /// // Instance 1 holds 5 requests: it is passed over while the others hold fewer.
    /// let busy = [0, 5, 1];
    /// let picks: Vec<usize> = (0..3)
    ///     .filter_map(|_| picker.pick_least_pending(3, |i| busy[i], |_| Some(())))
    ///     .map(|(i, ())| i)
    ///     .collect();
    /// assert_eq!(picks, [0, 0, 0]);
    /// ```
    pub fn pick_least_pending<T>(
        &self,
        n: usize,
        pending: impl Fn(usize) -> usize,
        admit: impl FnMut(usize) -> Option<T>,
    ) -> Option<(usize, T)> {
        if n == 0 {
            return None;
        }
        let cursor = self.cursor();
        let start = cursor.fetch_add(1, Ordering::Relaxed);
        Self::fewest_first(cursor, start, n, pending, admit, Vec::new())
    }

    /// Power of two choices: offers `admit` the candidate whose turn it is (from the
    /// cursor) or one other candidate drawn at random, whichever has fewer `pending` (the
    /// turn's on a tie). Only if that one refuses are the others offered, fewest first in
    /// turn, as [`pick_least_pending`](Picker::pick_least_pending) does. With nothing
    /// pending anywhere this is exactly [`pick_with`](Picker::pick_with); `admit` is asked
    /// at most once per candidate, and only about the one that would be chosen.
    ///
    /// Against a full scan for the fewest: a candidate with more pending than both others is
    /// never offered (it loses every comparison it is in), but the least loaded one is not
    /// offered every time, so answers coming back together from one instance do not send
    /// the next requests together there. Two loads per pick, whatever `n`.
    ///
    /// ```
    /// use discovery_client::balance::Picker;
    ///
    /// let picker = Picker::new();
    /// let idle = [0, 0, 0];
    /// let picks: Vec<usize> = (0..4)
    ///     .filter_map(|_| picker.pick_two_choices(3, |i| idle[i], |_| Some(())))
    ///     .map(|(i, ())| i)
    ///     .collect();
    /// assert_eq!(picks, [0, 1, 2, 0]);
    /// // Instance 1 holds 5 requests: it loses every comparison it is in.
    /// let busy = [0, 5, 0];
    /// assert!((0..30).all(|_| {
    ///     picker.pick_two_choices(3, |i| busy[i], |_| Some(())).unwrap().0 != 1
    /// }));
    /// ```
    pub fn pick_two_choices<T>(
        &self,
        n: usize,
        pending: impl Fn(usize) -> usize,
        mut admit: impl FnMut(usize) -> Option<T>,
    ) -> Option<(usize, T)> {
        if n == 0 {
            return None;
        }
        let cursor = self.cursor();
        let start = cursor.fetch_add(1, Ordering::Relaxed);
        // Turn offsets from `start`: 0 is the turn's candidate, the other one at random.
        let index = |offset: usize| start.wrapping_add(offset) % n;
        let turn = pending(index(0));
        // Nothing in flight on the turn's candidate: no other can have fewer, so neither the
        // draw nor the second load is needed (the idle case, and sequential callers).
        let offset = if turn == 0 || n == 1 {
            0
        } else {
            let other = rand::random_range(1..n);
            if pending(index(other)) < turn {
                other
            } else {
                0
            }
        };
        if let Some(answer) = admit(index(offset)) {
            return Some((index(offset), answer));
        }
        Self::fewest_first(cursor, start, n, pending, admit, vec![offset])
    }

    /// Picks by `balance`: [`pick_two_choices`](Picker::pick_two_choices) or
    /// [`pick_least_pending`](Picker::pick_least_pending) (plain round-robin when `pending`
    /// is zero everywhere, as [`Balance::RoundRobin`] makes it).
    pub(crate) fn pick_by<T>(
        &self,
        balance: Balance,
        n: usize,
        pending: impl Fn(usize) -> usize,
        admit: impl FnMut(usize) -> Option<T>,
    ) -> Option<(usize, T)> {
        match balance {
            Balance::PowerOfTwoChoices => self.pick_two_choices(n, pending, admit),
            Balance::LeastPending | Balance::RoundRobin => {
                self.pick_least_pending(n, pending, admit)
            }
        }
    }

    /// The candidates `0..n` in turn from `start`, except the turn offsets in `refused`,
    /// offered to `admit` fewest `pending` first (see
    /// [`pick_least_pending`](Picker::pick_least_pending)).
    fn fewest_first<T>(
        cursor: &AtomicUsize,
        start: usize,
        n: usize,
        pending: impl Fn(usize) -> usize,
        mut admit: impl FnMut(usize) -> Option<T>,
        mut refused: Vec<usize>,
    ) -> Option<(usize, T)> {
        while refused.len() < n {
            // (pending, offset) of the first candidate in turn with the fewest pending.
            let mut best: Option<(usize, usize)> = None;
            for offset in (0..n).filter(|offset| !refused.contains(offset)) {
                let load = pending(start.wrapping_add(offset) % n);
                if best.is_none_or(|(least, _)| load < least) {
                    best = Some((load, offset));
                    if load == 0 {
                        break;
                    }
                }
            }
            // Some candidate has not refused yet, so the pass found one.
            let (_, offset) = best?;
            let index = start.wrapping_add(offset) % n;
            match admit(index) {
                Some(answer) => {
                    if offset != 0 {
                        // Candidates passed over are not charged a turn: continue after this one.
                        cursor.store(index.wrapping_add(1), Ordering::Relaxed);
                    }
                    return Some((index, answer));
                }
                None => refused.push(offset),
            }
        }
        None
    }

    /// Picks the next endpoint, plain round-robin, skipping those for which `skip` is true
    /// and those whose breaker refuses, and returns it with the breaker's [`Permit`]. Every
    /// breaker transition met on the way (an Open breaker whose retest delay has passed
    /// moves to Retest) is handed to `on_transition`.
    pub fn pick<'a>(
        &self,
        endpoints: &'a [Endpoint],
        now: Instant,
        skip: impl Fn(&Endpoint) -> bool,
        mut on_transition: impl FnMut(&Endpoint, Transition),
    ) -> Option<(&'a Endpoint, Permit)> {
        let (index, permit) = self.pick_with(endpoints.len(), |index| {
            let endpoint = &endpoints[index];
            if skip(endpoint) {
                return None;
            }
            let (permit, transition) = endpoint.breaker.try_acquire(now);
            if let Some(t) = transition {
                on_transition(endpoint, t);
            }
            permit
        })?;
        Some((&endpoints[index], permit))
    }
}
