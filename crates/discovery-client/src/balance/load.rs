//! [`Load`]: what the picker knows of one instance: its requests in flight, how fast it has
//! been answering, and since when its share ramps up (slow start).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How quickly an estimate forgets an instance that is not sampled: it decays toward zero
/// with this time constant (linkerd's default for peak-EWMA), so an instance that was slow
/// and has had no traffic since is offered a share again, even to a client that calls
/// rarely.
pub(crate) const DECAY: Duration = Duration::from_secs(10);

/// How long a latency window lasts at least: the estimate remembers the quickest answer for
/// one to two of these.
pub(crate) const WINDOW: Duration = Duration::from_millis(500);

/// How many answers a latency window holds at least: at a low rate of calls a window lasts
/// until it has these, so that one late answer (a busy moment of the client's, a garbage
/// collection of the instance's) is not the estimate.
pub(crate) const WINDOW_ANSWERS: u64 = 8;

/// How many answers an instance must have given (besides those left out) before its estimate
/// counts: until then it has a full share. One answer is a poor estimate: a busy moment of
/// the client's can make it several times the instance's usual time, and the share that
/// follows (a few percent) would take tens of turns to correct.
pub(crate) const TRUSTED_AFTER: u64 = 4;

/// The requests one instance has been sent and has not answered yet, and a moving estimate
/// of how long it takes to answer; shared by every clone.
///
/// - The in-flight count is raised by [`start`](Load::start) and lowered when the guard it
///   returns is dropped, so an attempt that is answered, times out or is cancelled counts
///   down all the same. An instance that has stopped answering keeps its count up, and the
///   picker passes it over once it holds more than the others, long before a timeout opens
///   its breaker.
/// - The latency estimate is its quickest recent answer: the least time among its answers
///   of the current window and the one before (a window lasts [`WINDOW`] and holds
///   [`WINDOW_ANSWERS`] answers, at least). Waiting in queues (the
///   client's own, a burst of calls) delays some answers but rarely all of them, so
///   healthy instances are not told apart by chance, while an instance that is slow on
///   every answer (a gray failure) shows within one or two windows, and one
///   quick answer shows its recovery at once. Failures are left out (they are the
///   breaker's business), and so are the first answer and every attempt sent before it
///   came: they waited for the first connection's set-up (a TCP, maybe a TLS, handshake).
///   There is no estimate until [`TRUSTED_AFTER`] answers have counted, and it decays
///   toward zero over [`DECAY`] while no answer comes.
/// - The ramp starts when the instance is first seen, and again when its breaker closes.
///
/// Relaxed atomics and no lock: these figures only steer the choice of instance.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Requests in flight.
    in_flight: AtomicUsize,
    /// The quickest answer of the current window, in nanoseconds (`u64::MAX`: none yet).
    quickest: AtomicU64,
    /// The quickest answer of the window before (`u64::MAX`: none).
    quickest_before: AtomicU64,
    /// When the current window opened, in nanoseconds since `origin`.
    window_from: AtomicU64,
    /// Answers in the current window.
    window_answers: AtomicU64,
    /// Answers counted in the estimate since the instance was first seen (up to
    /// [`TRUSTED_AFTER`]: only whether there are that many matters).
    answers: AtomicU64,
    /// When the last answer came, in nanoseconds since `origin`, plus one; 0: never.
    sampled_at: AtomicU64,
    /// When its first answer came, in nanoseconds since `origin`, plus one; 0: not yet.
    /// Answers to attempts sent before then are left out of the estimate.
    warm_from: AtomicU64,
    /// Credit toward its next turn, while its share is less than a full one: see
    /// [`take_turn`](Load::take_turn).
    credit: AtomicU64,
    /// When the share began to ramp up, in nanoseconds since `origin`.
    ramp_from: AtomicU64,
    /// When the instance was first seen: the reference for the instants above.
    origin: Instant,
}

impl Default for Load {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl Load {
    /// An instance first seen at `now`: nothing in flight, no estimate, its ramp starting.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            shared: Arc::new(Shared {
                in_flight: AtomicUsize::new(0),
                quickest: AtomicU64::new(u64::MAX),
                quickest_before: AtomicU64::new(u64::MAX),
                window_from: AtomicU64::new(0),
                window_answers: AtomicU64::new(0),
                answers: AtomicU64::new(0),
                sampled_at: AtomicU64::new(0),
                warm_from: AtomicU64::new(0),
                credit: AtomicU64::new(0),
                ramp_from: AtomicU64::new(0),
                origin: now,
            }),
        }
    }

    /// Requests in flight right now.
    #[inline]
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one more request in flight until the returned guard is dropped.
    pub(crate) fn start(&self) -> InFlightGuard {
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard { load: self.clone() }
    }

    fn nanos_at(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.shared.origin);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// The latency estimate at `now` (its quickest recent answer, decayed for the time since
    /// its last answer), in nanoseconds; `None` until [`TRUSTED_AFTER`] answers counted.
    #[inline]
    pub(crate) fn latency(&self, now: Instant) -> Option<f64> {
        if self.shared.answers.load(Ordering::Relaxed) < TRUSTED_AFTER {
            return None;
        }
        let sampled_at = self.shared.sampled_at.load(Ordering::Relaxed);
        let quickest = self.shared.quickest.load(Ordering::Relaxed);
        let before = self.shared.quickest_before.load(Ordering::Relaxed);
        let age = self.nanos_at(now).saturating_sub(sampled_at - 1);
        Some(decayed(quickest.min(before) as f64, age))
    }

    /// Takes `elapsed`, the time from sending an attempt to its judged answer, into the
    /// estimate at `now`. Only answers count: failures are the breaker's business.
    pub(crate) fn observe(&self, elapsed: Duration, now: Instant) {
        let shared = &self.shared;
        let sample = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX - 1);
        let at = self.nanos_at(now);
        let sent = at.saturating_sub(sample);
        let warm_from = shared.warm_from.load(Ordering::Relaxed);
        if warm_from == 0 {
            shared
                .warm_from
                .store(at.saturating_add(1), Ordering::Relaxed);
            return;
        }
        if sent < warm_from - 1 {
            // Sent while the first connection was being set up: it waited for it too.
            return;
        }
        let opened = shared.window_from.load(Ordering::Relaxed);
        let answers = shared.window_answers.fetch_add(1, Ordering::Relaxed);
        if answers >= WINDOW_ANSWERS && at.saturating_sub(opened) >= WINDOW.as_nanos() as u64 {
            // The window closes: it becomes the one before, and this answer opens the next.
            // (Two threads may both close it; one of their answers is then a window's own.)
            let closed = shared.quickest.swap(sample, Ordering::Relaxed);
            shared.quickest_before.store(closed, Ordering::Relaxed);
            shared.window_from.store(at, Ordering::Relaxed);
            shared.window_answers.store(1, Ordering::Relaxed);
        } else {
            shared.quickest.fetch_min(sample, Ordering::Relaxed);
        }
        shared
            .sampled_at
            .store(at.saturating_add(1), Ordering::Relaxed);
        if shared.answers.load(Ordering::Relaxed) < TRUSTED_AFTER {
            shared.answers.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the instance takes the turn it is offered, with `share` of the turns (out of
    /// `full`). Each offer adds `share` to its credit, and it takes the turn when the credit
    /// reaches `full`, which it then pays: exactly `share / full` of its turns, spread
    /// evenly, however the share changes from one offer to the next. A full share takes
    /// every turn and touches nothing.
    #[inline]
    pub(crate) fn take_turn(&self, share: u64, full: u64) -> bool {
        if share >= full {
            return true;
        }
        let mut taken = false;
        let _ = self
            .shared
            .credit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |credit| {
                let credit = credit + share;
                taken = credit >= full;
                Some(if taken { credit - full } else { credit })
            });
        taken
    }

    /// Starts the ramp again at `now` (its breaker closed).
    pub(crate) fn restart_ramp(&self, now: Instant) {
        let at = self.nanos_at(now);
        self.shared.ramp_from.store(at, Ordering::Relaxed);
    }

    /// How far along its ramp over `window` the instance is at `now`, in `0.0..=1.0`.
    #[inline]
    pub(crate) fn ramp(&self, window: Duration, now: Instant) -> f64 {
        let from = self.shared.ramp_from.load(Ordering::Relaxed);
        let since = self.nanos_at(now).saturating_sub(from) as f64;
        (since / window.as_nanos().max(1) as f64).min(1.0)
    }
}

/// `estimate` after `age` nanoseconds without a sample.
#[inline]
fn decayed(estimate: f64, age: u64) -> f64 {
    // Within a hundredth of the time constant the decay is below 1 %: skip the exponential
    // (the common case for an instance in use).
    if age < (DECAY.as_nanos() / 100) as u64 {
        return estimate;
    }
    estimate * (-(age as f64) / DECAY.as_nanos() as f64).exp()
}

/// One request counted in a [`Load`]'s in-flight count; dropping it counts the request out.
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard is kept"]
pub(crate) struct InFlightGuard {
    /// The load to lower on drop.
    load: Load,
}

impl InFlightGuard {
    /// The instance's load.
    pub(crate) fn load(&self) -> &Load {
        &self.load
    }
}

impl Drop for InFlightGuard {
    #[inline]
    fn drop(&mut self) {
        self.load.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1_000_000.0;

    #[tokio::test(start_paused = true)]
    async fn the_estimate_is_the_quickest_answer_of_two_windows_and_decays_unsampled() {
        let start = Instant::now();
        let load = Load::new(start);
        let observe = |ms: u64, at: Duration| load.observe(Duration::from_millis(ms), start + at);
        let estimate = |at: Duration| load.latency(start + at);
        let (zero, window) = (Duration::from_millis(20), WINDOW);
        assert_eq!(estimate(zero), None, "no answer yet");
        observe(50, zero);
        assert_eq!(estimate(zero), None, "the first answer is left out");
        // An attempt sent before it, while the connection was set up: left out too.
        let late = zero + Duration::from_millis(2);
        observe(12, late);
        assert_eq!(estimate(late), None, "sent before the first answer");
        let warm = Duration::from_millis(100);
        for ms in [4, 30, 9] {
            observe(ms, warm);
            assert_eq!(estimate(warm), None, "not trusted yet");
        }
        observe(5, warm);
        assert_eq!(
            estimate(warm),
            Some(4.0 * MS),
            "the quickest of the first four"
        );
        observe(2, warm);
        assert_eq!(estimate(warm), Some(2.0 * MS), "the quickest");
        // Half a second on, the window still lacks answers: it stays open until it has 8.
        for _ in 0..4 {
            observe(20, window);
        }
        assert_eq!(estimate(window), Some(2.0 * MS), "in the window still");
        // It closes with the next answer, and the one after once it has 8 answers and half
        // a second: the quickest is forgotten then.
        observe(20, window);
        assert_eq!(estimate(window), Some(2.0 * MS), "in the window before");
        for _ in 0..8 {
            observe(20, window);
        }
        observe(20, window * 2);
        let slow = estimate(window * 2);
        assert_eq!(slow, Some(20.0 * MS), "two windows of slow answers");
        // One quick answer shows at once.
        observe(3, window * 2);
        assert_eq!(estimate(window * 2), Some(3.0 * MS));
        // Unsampled for one time constant: e^-1 of it.
        let decayed = estimate(window * 2 + DECAY).expect("estimate");
        assert!((decayed - 3.0 * MS / std::f64::consts::E).abs() < 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ramp_runs_over_its_window_and_restarts() {
        let now = Instant::now();
        let load = Load::new(now);
        let window = Duration::from_secs(10);
        assert_eq!(load.ramp(window, now), 0.0);
        assert_eq!(load.ramp(window, now + Duration::from_secs(5)), 0.5);
        assert_eq!(load.ramp(window, now + Duration::from_secs(20)), 1.0);
        load.restart_ramp(now + Duration::from_secs(20));
        assert_eq!(load.ramp(window, now + Duration::from_secs(22)), 0.2);
    }

    #[test]
    fn a_partial_share_takes_that_part_of_its_turns_evenly() {
        let load = Load::new(Instant::now());
        let turns: Vec<bool> = (0..8).map(|_| load.take_turn(1, 4)).collect();
        assert_eq!(
            turns,
            [false, false, false, true, false, false, false, true]
        );
        // The share changes from one offer to the next: still exact.
        let taken = (0..1000u64)
            .filter(|k| load.take_turn(if k % 2 == 0 { 1 } else { 3 }, 4))
            .count();
        assert_eq!(taken, 500);
        assert!(
            (0..5).all(|_| load.take_turn(4, 4)),
            "a full share takes every turn"
        );
    }

    #[test]
    fn guards_count_in_flight() {
        let load = Load::new(Instant::now());
        let a = load.start();
        let b = load.clone().start();
        assert_eq!(load.in_flight(), 2);
        drop(a);
        assert_eq!(b.load().in_flight(), 1);
        drop(b);
        assert_eq!(load.in_flight(), 0);
    }
}
