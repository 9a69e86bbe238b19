//! The breaker state machine and the permit that carries a request's outcome back to it.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use super::BreakerConfig;

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
    /// Requests flow; consecutive failures are counted.
    Closed,
    /// No request is admitted until the retest delay has passed.
    Open,
    /// One probe at a time is admitted; its outcome closes or reopens the breaker.
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
    Closed { failures: u32 },
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

/// A per-instance circuit breaker. Cheap to share behind an [`Arc`]; all methods take the
/// current time so tests can drive it on paused tokio time.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use discovery_client::breaker::{Breaker, BreakerConfig, BreakerState};
/// use tokio::time::Instant;
///
/// let breaker = Arc::new(Breaker::new(BreakerConfig {
///     failure_limit: 2,
///     retest_delay: Duration::from_secs(30),
///     ..BreakerConfig::default()
/// }));
/// let now = Instant::now();
/// for _ in 0..2 {
///     let (permit, _) = breaker.try_acquire(now);
///     permit.expect("closed: admitted").record_failure(now);
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
/// assert!(!breaker.would_admit(now));
/// assert!(breaker.would_admit(now + Duration::from_secs(30)), "time for the probe");
/// ```
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// A closed breaker with these settings.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                phase: Phase::Closed { failures: 0 },
                generation: 0,
                reopen_count: 0,
            }),
        }
    }

    /// The settings this breaker runs with.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the state half-written (every update
        // is a single assignment), so a poisoned lock is still safe to use.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current state, without moving Open to Retest.
    pub fn state(&self) -> BreakerState {
        match self.lock().phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::Retest { .. } => BreakerState::Retest,
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
        Self::poll_retest_locked(&mut inner, now)
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

    /// Asks to send one request at `now`. Returns a permit when admitted (a normal request
    /// while Closed, the single probe while Retest), and the transition this caused, if any.
    pub fn try_acquire(self: &Arc<Self>, now: Instant) -> (Option<Permit>, Option<Transition>) {
        let mut inner = self.lock();
        let transition = Self::poll_retest_locked(&mut inner, now);
        let probe = match &mut inner.phase {
            Phase::Closed { .. } => false,
            Phase::Open { .. } => return (None, transition),
            Phase::Retest { probing: true } => return (None, transition),
            Phase::Retest { probing } => {
                *probing = true;
                true
            }
        };
        let permit = Permit {
            breaker: Arc::clone(self),
            generation: inner.generation,
            probe,
            recorded: false,
        };
        (Some(permit), transition)
    }

    /// Whether a request would be admitted at `now`, without taking a permit.
    pub fn would_admit(&self, now: Instant) -> bool {
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

    fn record(&self, generation: u64, success: bool, now: Instant) -> Option<Transition> {
        let mut inner = self.lock();
        if inner.generation != generation {
            return None;
        }
        match inner.phase {
            Phase::Closed { ref mut failures } => {
                if success {
                    *failures = 0;
                    None
                } else {
                    *failures += 1;
                    if *failures >= self.config.failure_limit {
                        inner.reopen_count = 0;
                        Some(self.open(&mut inner, now))
                    } else {
                        None
                    }
                }
            }
            Phase::Open { .. } => None,
            Phase::Retest { .. } => {
                if success {
                    inner.phase = Phase::Closed { failures: 0 };
                    inner.generation += 1;
                    inner.reopen_count = 0;
                    Some(Transition::Closed)
                } else {
                    inner.reopen_count = inner.reopen_count.saturating_add(1);
                    Some(self.open(&mut inner, now))
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
    }
}

/// Leave to send one request through a [`Breaker`]. Record its outcome with
/// [`record_success`](Permit::record_success) or [`record_failure`](Permit::record_failure);
/// dropping it unrecorded (the caller gave up) counts as neither, and frees the probe slot.
///
/// ```
/// use std::sync::Arc;
/// use discovery_client::breaker::{Breaker, BreakerConfig};
/// use tokio::time::Instant;
///
/// let breaker = Arc::new(Breaker::new(BreakerConfig::default()));
/// let now = Instant::now();
/// let (permit, _) = breaker.try_acquire(now);
/// let permit = permit.expect("closed breakers admit");
/// assert!(!permit.is_probe());
/// assert_eq!(permit.record_success(now), None);
/// ```
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    generation: u64,
    probe: bool,
    recorded: bool,
}

impl Permit {
    /// Whether this request is the single Retest probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The breaker this permit belongs to.
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// The request succeeded (or failed through the caller's fault, such as a 4xx).
    pub fn record_success(mut self, now: Instant) -> Option<Transition> {
        self.recorded = true;
        self.breaker.record(self.generation, true, now)
    }

    /// The request failed through the instance's fault (transport error, timeout, 5xx, bad body).
    pub fn record_failure(mut self, now: Instant) -> Option<Transition> {
        self.recorded = true;
        self.breaker.record(self.generation, false, now)
    }

    /// Records the outcome; on a transition, also hands back the breaker (for the retest
    /// timer), so the common no-transition case costs no reference count.
    pub(crate) fn settle(
        mut self,
        success: bool,
        now: Instant,
    ) -> Option<(Transition, Arc<Breaker>)> {
        self.recorded = true;
        let transition = self.breaker.record(self.generation, success, now)?;
        Some((transition, Arc::clone(&self.breaker)))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            self.breaker.release_probe(self.generation);
        }
    }
}
