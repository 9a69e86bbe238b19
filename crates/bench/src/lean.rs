//! A prototype, not the library: the Closed-state path of a breaker and balancer that write
//! no shared memory while all is well. It exists to size, next to the real thing, what the
//! library's current design costs on the hot path (a `Mutex` per breaker taken twice per call,
//! an `Arc` clone per permit, one shared round-robin cursor).
//!
//! The breaker is one atomic word (a not-Closed bit and the consecutive-failure count):
//! admitting reads it; recording a success reads it and writes only if failures had been
//! counted. The round-robin cursor is per thread. Failures and state transitions would take
//! a slow path (a lock), which this does not model.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Set while the breaker is Open or Retesting.
const NOT_CLOSED: u64 = 1 << 32;

/// The Closed-state half of a breaker in one atomic word.
#[derive(Debug, Default)]
pub struct Breaker {
    word: AtomicU64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits when Closed, without writing.
    pub fn admit(&self) -> bool {
        self.word.load(Ordering::Acquire) & NOT_CLOSED == 0
    }

    /// Records a success: a write only when failures had been counted.
    pub fn record_success(&self) {
        let word = self.word.load(Ordering::Acquire);
        if word != 0 && word & NOT_CLOSED == 0 {
            let _ = self
                .word
                .compare_exchange(word, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

thread_local! {
    static CURSOR: Cell<usize> = const { Cell::new(0) };
}

/// Round-robin from a per-thread cursor: the index of the first admitting breaker.
pub fn pick(breakers: &[Breaker]) -> Option<usize> {
    let n = breakers.len();
    let start = CURSOR.with(|c| {
        let v = c.get();
        c.set(v.wrapping_add(1));
        v
    });
    (0..n)
        .map(|o| (start + o) % n)
        .find(|&i| breakers[i].admit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_round_robin_among_closed_breakers() {
        let breakers: Vec<Breaker> = (0..3).map(|_| Breaker::new()).collect();
        breakers[1].word.store(NOT_CLOSED, Ordering::Relaxed);
        let picks: Vec<usize> = (0..4).filter_map(|_| pick(&breakers)).collect();
        assert!(picks.iter().all(|&i| i != 1), "{picks:?}");
        breakers[0].word.store(2, Ordering::Relaxed);
        breakers[0].record_success();
        assert_eq!(breakers[0].word.load(Ordering::Relaxed), 0);
    }
}
