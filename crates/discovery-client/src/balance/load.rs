//! [`Load`]: what the picker knows of one instance: its requests in flight, how fast it has
//! been answering, and since when its share ramps up (slow start).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How quickly an estimate forgets an instance that is not sampled: it decays toward zero
/// with this time constant (linkerd's default for peak-EWMA), so an instance that was slow
/// and has had no traffic since is offered a share again, even to a client that calls
/// rarely.
pub(crate) const DECAY: Duration = Duration::from_secs(10);

/// The requests one instance has been sent and has not answered yet, and a moving estimate
/// of how long it takes to answer; shared by every clone.
///
/// - The in-flight count is raised by [`start`](Load::start) and lowered when the guard it
///   returns is dropped, so an attempt that is answered, times out or is cancelled counts
///   down all the same. An instance that has stopped answering keeps its count up, and the
///   picker passes it over once it holds more than the others, long before a timeout opens
///   its breaker.
/// - The latency estimate moves half-way toward each answer's time, so a slow instance
///   shows within two or three answers and a passing hiccup is forgotten as quickly. The
///   first answer is left out (it carries the connection's set-up: a TCP, maybe a TLS,
///   handshake). The estimate decays toward zero over [`DECAY`] while no answer comes.
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
    /// The latency estimate, in nanoseconds.
    latency: AtomicU64,
    /// When the estimate was last updated, in nanoseconds since `origin`, plus one; 0: never.
    sampled_at: AtomicU64,
    /// Whether the first answer (left out of the estimate) has come.
    answered: AtomicBool,
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
                latency: AtomicU64::new(0),
                sampled_at: AtomicU64::new(0),
                answered: AtomicBool::new(false),
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

    /// The latency estimate at `now`, decayed for the time since it was last updated; `None`
    /// if the instance has not answered yet.
    #[inline]
    pub(crate) fn latency(&self, now: Instant) -> Option<f64> {
        let sampled_at = self.shared.sampled_at.load(Ordering::Relaxed);
        if sampled_at == 0 {
            return None;
        }
        let estimate = self.shared.latency.load(Ordering::Relaxed) as f64;
        let age = self.nanos_at(now).saturating_sub(sampled_at - 1);
        Some(decayed(estimate, age))
    }

    /// Takes `elapsed`, one attempt's time from sending to its judged answer, into the
    /// estimate at `now`.
    pub(crate) fn observe(&self, elapsed: Duration, now: Instant) {
        if !self.shared.answered.swap(true, Ordering::Relaxed) {
            return;
        }
        let sample = elapsed.as_nanos().min(u128::from(u64::MAX / 2)) as f64;
        let next = match self.latency(now) {
            None => sample,
            Some(estimate) => (estimate + sample) / 2.0,
        };
        self.shared.latency.store(next as u64, Ordering::Relaxed);
        let at = self.nanos_at(now).saturating_add(1);
        self.shared.sampled_at.store(at, Ordering::Relaxed);
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
    async fn the_estimate_moves_half_way_and_decays_unsampled() {
        let now = Instant::now();
        let load = Load::new(now);
        assert_eq!(load.latency(now), None, "no answer yet");
        load.observe(Duration::from_millis(50), now);
        assert_eq!(load.latency(now), None, "the first answer is left out");
        load.observe(Duration::from_millis(2), now);
        assert_eq!(
            load.latency(now),
            Some(2.0 * MS),
            "the next is the estimate"
        );
        load.observe(Duration::from_millis(10), now);
        assert_eq!(load.latency(now), Some(6.0 * MS), "half-way up");
        load.observe(Duration::from_millis(2), now);
        assert_eq!(load.latency(now), Some(4.0 * MS), "half-way down");
        // Unsampled for one time constant: e^-1 of it.
        let later = now + DECAY;
        let decayed = load.latency(later).expect("estimate");
        assert!((decayed - 4.0 * MS / std::f64::consts::E).abs() < 1.0);
        assert_eq!(
            load.latency(now + Duration::from_millis(50)),
            Some(4.0 * MS)
        );
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
