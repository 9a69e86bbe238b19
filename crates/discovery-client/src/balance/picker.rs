//! [`Picker`]: the lock-free round-robin cursor every balancer in this crate shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;

use crate::Instance;
use crate::breaker::{Breaker, Permit, Transition};

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

/// A round-robin cursor shared by all callers of one service: one atomic counter, no lock.
///
/// [`pick_with`](Picker::pick_with) offers the candidates to an admission check in turn,
/// starting after the last one chosen; candidates that refuse are skipped without being
/// charged a turn, so traffic interleaves evenly across the ones that admit.
/// [`RoundRobin`](super::RoundRobin) and [`ServiceClient`](crate::ServiceClient) both pick
/// through it.
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
#[derive(Debug, Default)]
pub struct Picker {
    next: AtomicUsize,
}

impl Picker {
    /// A cursor starting at the first candidate.
    pub fn new() -> Self {
        Self::default()
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
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for offset in 0..n {
            let index = start.wrapping_add(offset) % n;
            if let Some(answer) = admit(index) {
                if offset != 0 {
                    // Skipped candidates are not charged a turn: continue after this one.
                    self.next.store(index.wrapping_add(1), Ordering::Relaxed);
                }
                return Some((index, answer));
            }
        }
        None
    }

    /// Picks the next endpoint, skipping those for which `skip` is true and those whose
    /// breaker refuses, and returns it with the breaker's [`Permit`]. Every breaker
    /// transition met on the way (an Open breaker whose retest delay has passed moves to
    /// Retest) is handed to `on_transition`.
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
