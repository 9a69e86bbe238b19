//! [`Balance`], the rule for choosing among instances, and [`Picker`], the round-robin cursor
//! that applies it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::Load;

/// How a balancer chooses among the instances whose breaker grants a permit.
///
/// Every rule goes plain round-robin while the instances are equally healthy and idle, so
/// sequential callers see 1, 2, 3, 1, 2, 3 whichever is chosen. They differ when an
/// instance is slow or under concurrent load:
///
/// ```
/// use discovery_client::Balance;
///
/// assert_eq!(Balance::default(), Balance::LatencyAware);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// Round-robin weighted by how fast each instance answers, then power of two choices
    /// by requests in flight among the instances at full weight. The default.
    ///
    /// Each instance's answer time is estimated as its quickest answer over the last half
    /// second to second: queueing (the client's own, a burst of calls) delays some answers
    /// but rarely all of them, so healthy instances are not told apart by chance. Answers
    /// that waited for an instance's first connection are left out, an instance has a full
    /// share until four answers have counted (one answer slowed by a busy moment is no
    /// estimate), and the estimate decays while the instance is not used.
    ///
    /// An instance whose estimate is within 25 % + 1 ms of the fastest instance's has a
    /// full share, so small differences between healthy instances change nothing and turns
    /// stay exactly 1, 2, 3. A slower one's share falls with the sixth power of how much
    /// slower it is (a third of a share at 1.2 times the tolerance, 2 % at 1.9 times), down
    /// to 1/256 of a full share: it keeps a trickle of calls, which is how its recovery is
    /// seen, and its share comes back with its first quick answer. Turns go round one
    /// shared cursor, and an instance with part of a share takes that part of the turns it
    /// is offered, spread evenly (a credit per instance, as in deficit round-robin):
    /// deterministic, lock-free, and exactly round-robin when the shares are equal. Among
    /// instances at full share, the one whose turn it is is compared with one other drawn
    /// at random and the one with fewer requests in flight goes, as in
    /// [`PowerOfTwoChoices`](Balance::PowerOfTwoChoices). A slower instance drawn that way
    /// goes instead when its estimate times its requests in flight plus one is less than
    /// the turn's (peak-EWMA's cost): never while the instances are idle, but under a burst
    /// the quicker instances' queues grow until it does, so a burst is spread by expected
    /// wait rather than piled onto the instances that happened to answer a little quicker.
    ///
    /// With [`slow_start`](crate::ServiceClientBuilder::slow_start), an instance's share
    /// also ramps up over a window after it appears or its breaker closes.
    #[default]
    LatencyAware,
    /// Power of two choices: the instance whose round-robin turn it is, or one other chosen
    /// at random, whichever has fewer requests in flight (the turn's on a tie). An instance
    /// that stops answering (paused, overloaded) keeps its requests outstanding and gets no
    /// new ones once it holds more than the others, instead of only when a timeout opens
    /// its breaker; yet a burst of answers from one instance does not send every next
    /// request there, as [`LeastPending`](Balance::LeastPending) does. What Envoy's
    /// `LEAST_REQUEST` does; it does not see an instance that is slow but not loaded.
    PowerOfTwoChoices,
    /// Round-robin among the instances with the fewest requests in flight: every pick goes
    /// to the least loaded instance. Keeps the most even counts, at the price of sending
    /// the next requests together to whichever instance just answered a batch.
    LeastPending,
    /// Plain round-robin: every instance in turn, however many requests it holds and
    /// however slow it is.
    RoundRobin,
}

/// A full share, in the fixed point shares are counted in.
const FULL: u64 = 1 << 16;
/// An estimate within this factor of the fastest one, plus [`SLACK_NANOS`], is a full share.
const TOLERANCE: f64 = 1.25;
/// The absolute part of the tolerance, in nanoseconds: differences in answer time below a
/// millisecond are noise (scheduling, a new connection), not a slow instance.
const SLACK_NANOS: f64 = 1_000_000.0;
/// How steeply a slower instance's share falls: with the sixth power of the ratio.
const STEEPNESS: i32 = 6;
/// The least share of a slow instance, against a full one: its trickle of calls.
const MIN_WEIGHT: f64 = 1.0 / 256.0;
/// The least share at the start of a slow-start ramp (Envoy's default `min_weight_percent`).
pub(crate) const MIN_RAMP: f64 = 0.1;

/// The share an instance whose estimate is `latency` gets when the fastest one's is `best`,
/// against a full share of 1.
#[inline]
fn latency_weight(latency: Option<f64>, best: f64) -> f64 {
    // Not answered yet: a full share until it has.
    let Some(latency) = latency else { return 1.0 };
    let threshold = best * TOLERANCE + SLACK_NANOS;
    if latency <= threshold {
        1.0
    } else {
        (threshold / latency).powi(STEEPNESS).max(MIN_WEIGHT)
    }
}

/// The round-robin cursor of one service, and the [`Balance`] rules over it.
///
/// [`pick`](Picker::pick) offers candidates `0..n` to an `acquire` function (a breaker's
/// permit, typically) and returns the first that grants one. Candidates that refuse are
/// passed over without being charged a turn, so traffic interleaves evenly across the ones
/// that grant; `acquire` is asked at most once per candidate, and only about the one that
/// would be chosen, so a permit (which may be a Retest breaker's single probe) is only ever
/// taken by the instance that gets the request.
///
/// One turn for all threads: sequential calls go 1, 2, 3, 1, 2, 3 exactly, from whichever
/// threads they are made.
#[derive(Debug, Default)]
pub(crate) struct Picker {
    /// The next turn.
    next: AtomicUsize,
    /// The slow-start window, if shares ramp up.
    slow_start: Option<Duration>,
}

impl Picker {
    /// A cursor starting at the first candidate, without slow start.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The same, with shares ramping up over `window` after an instance appears or its
    /// breaker closes ([`Balance::LatencyAware`] only).
    pub(crate) fn with_slow_start(window: Option<Duration>) -> Self {
        Self {
            next: AtomicUsize::new(0),
            slow_start: window,
        }
    }

    /// Each candidate's share of the turns at `now` under `balance`, against a full one
    /// (`1.0`): what [`Balance::LatencyAware`] gives it for its answer time and slow-start
    /// ramp; a full share each under the other rules.
    pub(crate) fn shares<'l>(
        &self,
        balance: Balance,
        n: usize,
        load: impl Fn(usize) -> &'l Load,
        now: Instant,
    ) -> Vec<f64> {
        if balance != Balance::LatencyAware {
            return vec![1.0; n];
        }
        let weights = Weights::at(self.slow_start, n, &load, now);
        (0..n)
            .map(|i| weights.share(load(i)) as f64 / FULL as f64)
            .collect()
    }

    /// Picks by `balance` among candidates `0..n`, whose loads are `load`, at `now`; the
    /// index chosen and what `acquire` granted it, or `None` at once when no candidate
    /// grants anything.
    pub(crate) fn pick<'l, T>(
        &self,
        balance: Balance,
        n: usize,
        load: impl Fn(usize) -> &'l Load,
        now: Instant,
        acquire: impl FnMut(usize) -> Option<T>,
    ) -> Option<(usize, T)> {
        if n == 0 {
            return None;
        }
        let pending = |i: usize| load(i).in_flight();
        let cursor = &self.next;
        match balance {
            Balance::LatencyAware => self.weighted(n, load, now, acquire),
            Balance::PowerOfTwoChoices => {
                let start = cursor.fetch_add(1, Ordering::Relaxed);
                two_choices(cursor, start, n, pending, acquire)
            }
            Balance::LeastPending | Balance::RoundRobin => {
                let start = cursor.fetch_add(1, Ordering::Relaxed);
                let key = |i: usize| match balance {
                    Balance::RoundRobin => 0,
                    _ => pending(i),
                };
                let (index, granted, offset) = fewest_first(start, n, key, 0, acquire, Vec::new())?;
                pass_over(cursor, offset, index);
                Some((index, granted))
            }
        }
    }

    /// [`Balance::LatencyAware`]: turns by the candidates' shares, then two
    /// choices by requests in flight among full shares; if the one chosen refuses, the
    /// others, largest share first, then fewest in flight, then in turn.
    fn weighted<'l, T>(
        &self,
        n: usize,
        load: impl Fn(usize) -> &'l Load,
        now: Instant,
        mut acquire: impl FnMut(usize) -> Option<T>,
    ) -> Option<(usize, T)> {
        let weights = Weights::at(self.slow_start, n, &load, now);
        let share = |i: usize| weights.share(load(i));
        let best = weights.best;
        let cursor = &self.next;
        // The instance with the largest weight has a full share and takes its turn: at most
        // one round of turns is needed; two bound it against concurrent pickers.
        let mut turn = None;
        for _ in 0..2 * n {
            let index = cursor.fetch_add(1, Ordering::Relaxed) % n;
            if load(index).take_turn(share(index), FULL) {
                turn = Some(index);
                break;
            }
        }
        let turn = turn.unwrap_or_else(|| (0..n).max_by_key(|&i| share(i)).unwrap_or(0));
        // Two choices: the turn's instance or one other drawn at random. Among full shares,
        // by requests in flight. A slower instance (a partial share for its answer time,
        // not for a ramp) goes instead once its expected wait is the shorter: its estimate
        // times its requests in flight plus one, against the turn's. Idle, that never
        // happens (it is slower); under a burst, the fast instances' queues grow until it
        // does, so a burst is not piled onto the instances that were a little quicker.
        let mut chosen = turn;
        let pending = load(turn).in_flight();
        if pending > 0 && n > 1 {
            let other = (turn + rand::random_range(1..n)) % n;
            let wait =
                |i: usize| load(i).latency(now).unwrap_or(best) * (load(i).in_flight() + 1) as f64;
            let ramping = |i: usize| {
                self.slow_start
                    .is_some_and(|window| load(i).ramp(window, now) < 1.0)
            };
            let takes_it = if share(other) == FULL {
                load(other).in_flight() < pending
            } else {
                !ramping(other) && wait(other) < wait(turn)
            };
            if takes_it {
                chosen = other;
            }
        }
        if let Some(granted) = acquire(chosen) {
            return Some((chosen, granted));
        }
        let key = |i: usize| (FULL - share(i), load(i).in_flight());
        let refused = vec![(chosen + n - turn) % n];
        let (index, granted, offset) = fewest_first(turn, n, key, (0, 0), acquire, refused)?;
        if offset != 0 {
            // Passed over without being charged: the next turn is the one after it.
            cursor.fetch_add(offset, Ordering::Relaxed);
        }
        Some((index, granted))
    }
}

/// How [`Balance::LatencyAware`] weighs the candidates at one moment.
#[derive(Debug, Clone, Copy)]
struct Weights {
    /// The fastest candidate's latency estimate, in nanoseconds (infinite: none has one).
    best: f64,
    /// The largest weight: shares are against it, so instances ramping up together are
    /// all full.
    top: f64,
    /// The slow-start window, if shares ramp up.
    slow_start: Option<Duration>,
    /// The moment weighed.
    now: Instant,
}

impl Weights {
    /// The weights of candidates `0..n`, whose loads are `load`, at `now`.
    fn at<'l>(
        slow_start: Option<Duration>,
        n: usize,
        load: &impl Fn(usize) -> &'l Load,
        now: Instant,
    ) -> Self {
        let best = (0..n)
            .filter_map(|i| load(i).latency(now))
            .fold(f64::INFINITY, f64::min);
        let mut weights = Self {
            best,
            top: 1.0,
            slow_start,
            now,
        };
        // Without slow start the largest is always 1 (the fastest instance, or one not
        // answered yet, has a full share): no second pass over the instances.
        if slow_start.is_some() {
            weights.top = (0..n)
                .map(|i| weights.weight(load(i)))
                .fold(f64::MIN_POSITIVE, f64::max);
        }
        weights
    }

    /// One candidate's weight: its share for its answer time, times its ramp.
    fn weight(&self, load: &Load) -> f64 {
        let latency = latency_weight(load.latency(self.now), self.best);
        match self.slow_start {
            Some(window) => latency * load.ramp(window, self.now).max(MIN_RAMP),
            None => latency,
        }
    }

    /// One candidate's share of the turns, out of [`FULL`] (never none).
    fn share(&self, load: &Load) -> u64 {
        ((self.weight(load) / self.top * FULL as f64) as u64).clamp(1, FULL)
    }
}

/// After a pick at turn offset `offset` that landed on `index`: candidates passed over are
/// not charged a turn, so the next turn is the one after `index`.
fn pass_over(cursor: &AtomicUsize, offset: usize, index: usize) {
    if offset != 0 {
        cursor.store(index.wrapping_add(1), Ordering::Relaxed);
    }
}
/// Power of two choices: offers `acquire` the candidate whose turn it is or one other drawn
/// at random, whichever has fewer `pending` (the turn's on a tie); only if that one refuses
/// are the others offered, fewest first in turn. A candidate with more pending than every
/// other is never offered first (it loses every comparison it is in).
fn two_choices<T>(
    cursor: &AtomicUsize,
    start: usize,
    n: usize,
    pending: impl Fn(usize) -> usize,
    mut acquire: impl FnMut(usize) -> Option<T>,
) -> Option<(usize, T)> {
    // Turn offsets from `start`: 0 is the turn's candidate.
    let index = |offset: usize| start.wrapping_add(offset) % n;
    let turn = pending(index(0));
    // Nothing in flight on the turn's candidate: no other can have fewer, so neither the
    // draw nor the second count is needed (the idle case, and sequential callers).
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
    if let Some(granted) = acquire(index(offset)) {
        return Some((index(offset), granted));
    }
    let (index, granted, offset) = fewest_first(start, n, pending, 0, acquire, vec![offset])?;
    pass_over(cursor, offset, index);
    Some((index, granted))
}

/// Offers the candidates in turn from `start`, except the turn offsets in `refused`, to
/// `acquire`, least `key` first (the first in turn among equals), until one grants: the
/// index, what it granted, and its turn offset from `start`. With every key equal this is
/// plain round-robin.
///
/// One pass over the candidates in turn reads each one's key and keeps the first with the
/// least, stopping early at one whose key is `floor` (nobody beats it); only when that
/// candidate refuses (an open breaker, an instance the call already tried) is the pass
/// repeated without it.
fn fewest_first<K: Ord + Copy, T>(
    start: usize,
    n: usize,
    key: impl Fn(usize) -> K,
    floor: K,
    mut acquire: impl FnMut(usize) -> Option<T>,
    mut refused: Vec<usize>,
) -> Option<(usize, T, usize)> {
    while refused.len() < n {
        // (key, offset) of the first candidate in turn with the least key.
        let mut best: Option<(K, usize)> = None;
        for offset in (0..n).filter(|offset| !refused.contains(offset)) {
            let load = key(start.wrapping_add(offset) % n);
            if best.is_none_or(|(least, _)| load < least) {
                best = Some((load, offset));
                if load == floor {
                    break;
                }
            }
        }
        // Some candidate has not refused yet, so the pass found one.
        let (_, offset) = best?;
        let index = start.wrapping_add(offset) % n;
        match acquire(index) {
            Some(granted) => return Some((index, granted, offset)),
            None => refused.push(offset),
        }
    }
    None
}
