//! [`Balance`], the rule for choosing among instances, and [`Picker`], the round-robin cursor
//! that applies it.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::InFlight;

/// How a balancer chooses among the instances whose breaker grants a permit.
///
/// All three go plain round-robin when nothing is in flight, so sequential callers see
/// 1, 2, 3, 1, 2, 3 whichever is chosen. They differ under concurrent load:
///
/// ```
/// use discovery_client::Balance;
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
    /// `LEAST_REQUEST` and linkerd do, and the default: two counts are read per pick,
    /// whatever the number of instances.
    #[default]
    PowerOfTwoChoices,
    /// Round-robin among the instances with the fewest requests in flight: every pick goes
    /// to the least loaded instance. Keeps the most even counts, at the price of sending
    /// the next requests together to whichever instance just answered a batch.
    LeastPending,
    /// Plain round-robin: every instance in turn, however many requests it holds.
    RoundRobin,
}

impl Balance {
    /// What the picker compares for an instance: its requests in flight, or nothing at all
    /// (every instance ties, which is plain round-robin).
    #[inline]
    pub(crate) fn load(self, in_flight: &InFlight) -> usize {
        match self {
            Balance::PowerOfTwoChoices | Balance::LeastPending => in_flight.get(),
            Balance::RoundRobin => 0,
        }
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
}

impl Picker {
    /// A cursor starting at the first candidate.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Picks by `balance` among candidates `0..n`, whose requests in flight are `pending`;
    /// the index chosen and what `acquire` granted it, or `None` at once when no candidate
    /// grants anything.
    pub(crate) fn pick<T>(
        &self,
        balance: Balance,
        n: usize,
        pending: impl Fn(usize) -> usize,
        acquire: impl FnMut(usize) -> Option<T>,
    ) -> Option<(usize, T)> {
        if n == 0 {
            return None;
        }
        let cursor = &self.next;
        let start = cursor.fetch_add(1, Ordering::Relaxed);
        match balance {
            Balance::PowerOfTwoChoices => two_choices(cursor, start, n, pending, acquire),
            Balance::LeastPending | Balance::RoundRobin => {
                fewest_first(cursor, start, n, pending, acquire, Vec::new())
            }
        }
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
    fewest_first(cursor, start, n, pending, acquire, vec![offset])
}

/// Offers the candidates in turn from `start`, except the turn offsets in `refused`, to
/// `acquire`, fewest `pending` first (the first in turn among equals), until one grants.
/// With nothing pending anywhere this is plain round-robin.
///
/// One pass over the candidates in turn reads each one's count and keeps the first with the
/// fewest, stopping early at an idle one (nobody beats it); only when that candidate refuses
/// (an open breaker, an instance the call already tried) is the pass repeated without it.
fn fewest_first<T>(
    cursor: &AtomicUsize,
    start: usize,
    n: usize,
    pending: impl Fn(usize) -> usize,
    mut acquire: impl FnMut(usize) -> Option<T>,
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
        match acquire(index) {
            Some(granted) => {
                if offset != 0 {
                    // Candidates passed over are not charged a turn: continue after this one.
                    cursor.store(index.wrapping_add(1), Ordering::Relaxed);
                }
                return Some((index, granted));
            }
            None => refused.push(offset),
        }
    }
    None
}
