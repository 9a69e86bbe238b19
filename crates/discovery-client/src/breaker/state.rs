//! The breaker state machine and the permits that carry a request's outcome back to it.
//!
//! The state lives behind a `Mutex`, and a copy of what the common case needs (the phase,
//! whether outcomes are being counted, the generation) is published in one atomic word that
//! is written only under the lock, and only when it changes. While the breaker is Closed
//! and no failure has been counted (under the default policy, consecutive failures),
//! granting a permit is one load of that word (and a reference to the breaker for the
//! permit to hold) and recording its success is another load: no lock, and nothing written
//! to the state, so threads sharing a breaker do not wait for each other. Failures,
//! successes after a failure, every outcome under a failure-rate policy (its window counts
//! successes too), and everything outside Closed take the lock and run the state machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use super::BreakerConfig;
use super::tally::Tally;

/// The breaker's state as others see it.
///
/// ```
/// use discovery_client::breaker::{Breaker, BreakerConfig, BreakerState};
///
/// let breaker = Breaker::new(BreakerConfig::default());
/// assert_eq!(breaker.state(), BreakerState::Closed);
/// assert_eq!(BreakerState::Retest.as_str(), "retest");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Requests flow; outcomes are counted as the [`FailurePolicy`](super::FailurePolicy)
    /// says.
    Closed,
    /// No permit is granted until the retest delay has passed.
    Open,
    /// One permit at a time (the probe) is granted; its outcome closes or reopens the breaker.
    Retest,
}

impl BreakerState {
    /// The word used in logs and metrics: `closed`, `open` or `retest`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::Retest => "retest",
        }
    }
}

/// A change of state, reported to whoever caused it so it can be logged once.
///
/// ```
/// use std::sync::Arc;
/// use discovery_client::breaker::{Breaker, BreakerConfig, Transition};
/// use tokio::time::Instant;
///
/// let breaker = Arc::new(Breaker::new(BreakerConfig::default())); // opens at the first failure
/// let now = Instant::now();
/// let (permit, _) = breaker.try_acquire(now);
/// let transition = permit.unwrap().record_failure(now);
/// assert!(matches!(transition, Some(Transition::Opened { .. })));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Closed or Retest → Open. `retest_at` is when a probe will be allowed.
    Opened {
        /// The moment the breaker moves to Retest.
        retest_at: Instant,
    },
    /// Open → Retest: one probe may now go through.
    Retesting,
    /// Retest → Closed: the probe succeeded.
    Closed,
}

#[derive(Debug)]
enum Phase {
    Closed { tally: Tally },
    Open { until: Instant },
    Retest { probing: bool },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Bumped on every transition, so late results from an earlier state are ignored.
    generation: u64,
    /// How many probes in a row have failed since the breaker last closed (drives backoff).
    reopen_count: u32,
}

/// The phase bits of the published word (its low two bits); the generation is above them.
const CLOSED: u64 = 0;
/// Closed, with outcomes that must be counted under the lock, successes included
/// (consecutive failures that a success resets, or a failure-rate window).
const CLOSED_FAILING: u64 = 1;
const OPEN: u64 = 2;
const RETEST: u64 = 3;
const PHASE_BITS: u64 = 0b11;

/// The word the fast path reads for this state.
fn word_of(inner: &Inner) -> u64 {
    let phase = match &inner.phase {
        Phase::Closed { tally } if tally.is_quiet() => CLOSED,
        Phase::Closed { .. } => CLOSED_FAILING,
        Phase::Open { .. } => OPEN,
        Phase::Retest { .. } => RETEST,
    };
    (inner.generation << 2) | phase
}

/// The published word, on cache lines of its own: reading it must not contend with writes
/// to whatever would otherwise share its line (the `Arc`'s reference counts, the lock).
#[derive(Debug)]
#[repr(align(128))]
struct Published(AtomicU64);

/// A per-instance circuit breaker. Cheap to share behind an [`Arc`]; all methods take the
/// current time so tests can drive it on paused tokio time. While it is Closed with no
/// failure counted, granting a permit and recording its success read one atomic word each
/// and take no lock (the permit holds a reference to the breaker); failures, the other
/// states and every outcome under [`FailurePolicy::FailureRate`](super::FailurePolicy)
/// take a lock.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use discovery_client::breaker::{Breaker, BreakerConfig, BreakerState, FailurePolicy};
/// use tokio::time::Instant;
///
/// let breaker = Arc::new(Breaker::new(BreakerConfig {
///     policy: FailurePolicy::ConsecutiveFailures(2),
///     retest_delay: Duration::from_secs(30),
///     ..BreakerConfig::default()
/// }));
/// let now = Instant::now();
/// for _ in 0..2 {
///     let (permit, _) = breaker.try_acquire(now);
///     permit.expect("closed: granted").record_failure(now);
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
/// assert!(!breaker.would_permit(now));
/// assert!(breaker.would_permit(now + Duration::from_secs(30)), "time for the probe");
/// ```
#[derive(Debug)]
pub struct Breaker {
    /// Phase and generation as of the last change, for the lock-free common case; written
    /// only with `inner` locked.
    published: Published,
    /// When it opens and how long it stays open.
    config: BreakerConfig,
    /// The state machine.
    inner: Mutex<Inner>,
}

impl Breaker {
    /// A closed breaker with these settings (a failure-rate window starts now).
    pub fn new(config: BreakerConfig) -> Self {
        let inner = Inner {
            phase: Phase::Closed {
                tally: Tally::new(&config.policy, Instant::now()),
            },
            generation: 0,
            reopen_count: 0,
        };
        Self {
            published: Published(AtomicU64::new(word_of(&inner))),
            config,
            inner: Mutex::new(inner),
        }
    }

    /// The settings this breaker runs with.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Holds the lock until the returned guard is dropped (tests of the lock-free path).
    #[cfg(test)]
    pub(super) fn hold_lock(&self) -> impl Sized + '_ {
        self.lock()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the state half-written (every update
        // is a single assignment), so a poisoned lock is still safe to use.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The published word.
    #[inline]
    fn word(&self) -> u64 {
        self.published.0.load(Ordering::Acquire)
    }

    /// Publishes the state `inner` is in, if it changed; call with the lock held, after
    /// every change.
    fn publish(&self, inner: &Inner) {
        let word = word_of(inner);
        if self.published.0.load(Ordering::Relaxed) != word {
            self.published.0.store(word, Ordering::Release);
        }
    }

    /// The current state, without moving Open to Retest.
    #[inline]
    pub fn state(&self) -> BreakerState {
        match self.word() & PHASE_BITS {
            CLOSED | CLOSED_FAILING => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::Retest,
        }
    }

    /// When an open breaker will move to Retest, if it is open.
    pub fn retest_at(&self) -> Option<Instant> {
        match self.lock().phase {
            Phase::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Moves Open to Retest if the retest delay has passed at `now`.
    pub fn poll_retest(&self, now: Instant) -> Option<Transition> {
        let mut inner = self.lock();
        let transition = Self::poll_retest_locked(&mut inner, now);
        self.publish(&inner);
        transition
    }

    fn poll_retest_locked(inner: &mut Inner, now: Instant) -> Option<Transition> {
        match inner.phase {
            Phase::Open { until } if now >= until => {
                inner.phase = Phase::Retest { probing: false };
                inner.generation += 1;
                Some(Transition::Retesting)
            }
            _ => None,
        }
    }

    /// Asks to send one request at `now`. Returns a permit when one is granted (a normal
    /// request while Closed, the single probe while Retest), and the transition this caused,
    /// if any. The permit holds a clone of the `Arc`, so it can outlive any borrow (a
    /// request future).
    #[inline]
    pub fn try_acquire(self: &Arc<Self>, now: Instant) -> (Option<Permit>, Option<Transition>) {
        let (granted, transition) = self.grant(now);
        let permit = granted.map(|(generation, probe)| Permit {
            breaker: Arc::clone(self),
            generation,
            probe,
            recorded: false,
        });
        (permit, transition)
    }

    /// Whether a permit is granted at `now`, as `(generation, probe)`: while Closed, one load
    /// of the published word; otherwise under the lock.
    #[inline]
    fn grant(&self, now: Instant) -> (Option<(u64, bool)>, Option<Transition>) {
        let word = self.word();
        if word & PHASE_BITS <= CLOSED_FAILING {
            return (Some((word >> 2, false)), None);
        }
        self.grant_locked(now)
    }

    #[inline(never)]
    fn grant_locked(&self, now: Instant) -> (Option<(u64, bool)>, Option<Transition>) {
        let mut inner = self.lock();
        let transition = Self::poll_retest_locked(&mut inner, now);
        let probe = match &mut inner.phase {
            Phase::Closed { .. } => false,
            Phase::Open { .. } | Phase::Retest { probing: true } => {
                self.publish(&inner);
                return (None, transition);
            }
            Phase::Retest { probing } => {
                *probing = true;
                true
            }
        };
        self.publish(&inner);
        (Some((inner.generation, probe)), transition)
    }

    /// Whether a permit would be granted at `now`, without taking one.
    pub fn would_permit(&self, now: Instant) -> bool {
        if self.word() & PHASE_BITS <= CLOSED_FAILING {
            return true;
        }
        match self.lock().phase {
            Phase::Closed { .. } => true,
            Phase::Open { until } => now >= until,
            Phase::Retest { probing } => !probing,
        }
    }

    fn open(&self, inner: &mut Inner, now: Instant) -> Transition {
        let base = self.config.base_delay(inner.reopen_count);
        let delay = self.config.jittered(base, rand::random::<f64>());
        let retest_at = now + delay;
        inner.phase = Phase::Open { until: retest_at };
        inner.generation += 1;
        Transition::Opened { retest_at }
    }

    #[inline]
    fn record(&self, generation: u64, success: bool, now: Instant) -> Option<Transition> {
        // A success while Closed with no failures counted, in the generation it was granted
        // in, changes nothing: no lock, no write.
        if success && self.word() == (generation << 2) | CLOSED {
            return None;
        }
        self.record_slow(generation, success, now)
    }

    #[inline(never)]
    fn record_slow(&self, generation: u64, success: bool, now: Instant) -> Option<Transition> {
        let mut inner = self.lock();
        let transition = self.record_locked(&mut inner, generation, success, now);
        self.publish(&inner);
        transition
    }

    fn record_locked(
        &self,
        inner: &mut Inner,
        generation: u64,
        success: bool,
        now: Instant,
    ) -> Option<Transition> {
        if inner.generation != generation {
            return None;
        }
        match &mut inner.phase {
            Phase::Closed { tally } => {
                if tally.record(!success, now) {
                    inner.reopen_count = 0;
                    Some(self.open(inner, now))
                } else {
                    None
                }
            }
            Phase::Open { .. } => None,
            Phase::Retest { .. } => {
                if success {
                    // The count starts afresh: a failure-rate window starts empty, now.
                    let tally = Tally::new(&self.config.policy, now);
                    inner.phase = Phase::Closed { tally };
                    inner.generation += 1;
                    inner.reopen_count = 0;
                    Some(Transition::Closed)
                } else {
                    inner.reopen_count = inner.reopen_count.saturating_add(1);
                    Some(self.open(inner, now))
                }
            }
        }
    }

    fn release_probe(&self, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation {
            if let Phase::Retest { probing } = &mut inner.phase {
                *probing = false;
            }
        }
        // Probing is not part of the published word: nothing to publish.
    }
}

/// Leave to send one request through a [`Breaker`], from [`Breaker::try_acquire`]. Record
/// its outcome with [`record_success`](Permit::record_success) or
/// [`record_failure`](Permit::record_failure); dropping it unrecorded (the caller gave up)
/// counts as neither, and frees the probe slot.
///
/// ```
/// use std::sync::Arc;
/// use discovery_client::breaker::{Breaker, BreakerConfig};
/// use tokio::time::Instant;
///
/// let breaker = Arc::new(Breaker::new(BreakerConfig::default()));
/// let now = Instant::now();
/// let (permit, _) = breaker.try_acquire(now);
/// let permit = permit.expect("closed breakers grant permits");
/// assert!(!permit.is_probe());
/// assert_eq!(permit.record_success(now), None);
/// ```
#[derive(Debug)]
#[must_use = "a permit does nothing unless its outcome is recorded"]
pub struct Permit {
    /// The breaker that granted it.
    breaker: Arc<Breaker>,
    /// The generation it was granted in: outcomes from an earlier state are ignored.
    generation: u64,
    /// Whether this is the single Retest probe.
    probe: bool,
    /// Whether its outcome was recorded (an unrecorded probe frees the slot on drop).
    recorded: bool,
}

impl Permit {
    /// Whether this request is the single Retest probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The request succeeded (or failed through the caller's fault, such as a 4xx).
    #[inline]
    pub fn record_success(self, now: Instant) -> Option<Transition> {
        self.record(true, now)
    }

    /// The request failed through the instance's fault (transport error, timeout, 5xx, bad body).
    pub fn record_failure(self, now: Instant) -> Option<Transition> {
        self.record(false, now)
    }

    /// Records the outcome; the transition it caused, if any.
    #[inline]
    pub(crate) fn record(mut self, success: bool, now: Instant) -> Option<Transition> {
        self.recorded = true;
        self.breaker.record(self.generation, success, now)
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            self.breaker.release_probe(self.generation);
        }
    }
}
