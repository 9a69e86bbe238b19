//! [`RetryBudget`]: how many retries a client may make, as a share of its requests.
//!
//! Retries are allowed up to `retry_percent` of the requests made over the last `window`,
//! plus a floor of `min_per_sec` retries for every second of the window, so that a client
//! making few requests can still retry while a sick service is not hammered with three
//! attempts per request. [`ServiceClient`](crate::ServiceClient) uses a 10 s window and a
//! floor of 10 retries per second: at most 100 + 20 % of the requests of the last 10 s
//! with the default `retry_budget(0.2)`. These are the documented semantics of tower's
//! [`TpsBudget`](tower::retry::budget::TpsBudget), with the fraction kept exactly (tower
//! rounds 1 / `retry_percent` down to a whole number of requests per retry, so 0.3 there
//! allows a third), and it implements tower's [`Budget`] for tower's retry middleware.
//!
//! The algorithm, with no lock:
//!
//! - Counts are kept per second, in rings of 16 one-word counters (one ring for requests, one
//!   for retries); each word holds the second it counts (since the budget was made) and the
//!   count, so a counter whose second has left the window is simply ignored and reused when
//!   its slot comes round again. Nothing is reset by a timer. The window moves in whole
//!   seconds: a request counts in the second it was made and the `window - 1` seconds after
//!   it.
//! - Requests ([`deposit_at`](RetryBudget::deposit_at), on every call) are counted with one
//!   compare-and-swap on the current second's request counter.
//! - Retries ([`withdraw_at`](RetryBudget::withdraw_at), only after a failed attempt) sum
//!   the window's requests and retries, and take a retry with a compare-and-swap on the
//!   current second's retry counter, so concurrent withdrawals in the same second never
//!   overdraw the budget.
//!
//! ```
//! use std::time::Duration;
//! use discovery_client::budget::RetryBudget;
//! use tokio::time::Instant;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // No floor, one retry per two requests.
//! let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.5);
//! let now = Instant::now();
//! assert!(!budget.withdraw_at(now), "nothing deposited yet");
//! budget.deposit_at(now);
//! budget.deposit_at(now);
//! assert!(budget.withdraw_at(now));
//! assert!(!budget.withdraw_at(now), "one retry per two requests");
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower::retry::budget::Budget;

/// Seconds one ring holds, and so the longest window.
const SLOTS: usize = 16;
/// `retry_percent` is kept in millionths, so that 0.3 means exactly 30 %.
const PPM: u128 = 1_000_000;

/// Per-second counters of one kind (requests, or retries), on cache lines of
/// their own.
#[repr(align(128))]
struct Ring([AtomicU64; SLOTS]);

/// A counter word: the second it counts in the high half, the count in the low half.
fn pack(second: u32, count: u32) -> u64 {
    (u64::from(second) << 32) | u64::from(count)
}

fn second_of(word: u64) -> u32 {
    (word >> 32) as u32
}

fn count_of(word: u64) -> u32 {
    // The low half of the word, by construction.
    (word & u64::from(u32::MAX)) as u32
}

impl Ring {
    fn new() -> Self {
        Ring(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    #[inline]
    fn slot(&self, second: u32) -> &AtomicU64 {
        &self.0[second as usize % SLOTS]
    }

    /// Counts one more for `second`. A slot already counting a later second (the caller read
    /// the clock long before) means this second has left every window: nothing to count.
    #[inline]
    fn add(&self, second: u32) {
        let slot = self.slot(second);
        let mut word = slot.load(Ordering::Relaxed);
        loop {
            let count = match second_of(word) {
                s if s == second => count_of(word),
                s if s < second => 0,
                _ => return,
            };
            let new = pack(second, count.saturating_add(1));
            match slot.compare_exchange_weak(word, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }

    /// The count of one second: zero if its slot counts another.
    fn count(&self, second: u32) -> u64 {
        let word = self.slot(second).load(Ordering::Relaxed);
        if second_of(word) == second {
            u64::from(count_of(word))
        } else {
            0
        }
    }

    /// The counts of the `window` seconds ending with `second`, minus the first `skip`.
    fn sum(&self, second: u32, window: u32, skip: u32) -> u64 {
        (skip..window)
            .filter_map(|back| second.checked_sub(back))
            .map(|s| self.count(s))
            .sum()
    }
}

/// Retries allowed as a share of requests over a sliding window, plus a floor; lock-free.
/// See the [module docs](self).
pub struct RetryBudget {
    /// Second 0 of the counters.
    origin: Instant,
    /// Window length in whole seconds, 1 to 16.
    window: u32,
    /// Retries always allowed per window: the floor per second times the window.
    floor: u64,
    /// Retries allowed per request, in millionths.
    percent_ppm: u128,
    /// Requests per second.
    requests: Ring,
    /// Retries per second.
    retries: Ring,
}

impl RetryBudget {
    /// A budget allowing `retry_percent` retries per request (0.2: one retry per five
    /// requests; 0.0 to 1000.0) over the last `window` (whole seconds, 1 to 16; clamped),
    /// plus `min_per_sec` retries per second of the window.
    pub fn new(window: Duration, min_per_sec: u32, retry_percent: f32) -> Self {
        let window = window.as_secs().clamp(1, SLOTS as u64) as u32;
        let percent = f64::from(retry_percent).clamp(0.0, 1000.0);
        Self {
            origin: Instant::now(),
            window,
            floor: u64::from(min_per_sec) * u64::from(window),
            // In range by the clamp above: at most 1e9.
            percent_ppm: (percent * PPM as f64).round() as u128,
            requests: Ring::new(),
            retries: Ring::new(),
        }
    }

    /// The second of `now` since the budget was made.
    #[inline]
    fn second(&self, now: Instant) -> u32 {
        let secs = now.saturating_duration_since(self.origin).as_secs();
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    /// Counts a request made at `now` (every call makes one, whatever its attempts).
    #[inline]
    pub fn deposit_at(&self, now: Instant) {
        self.requests.add(self.second(now));
    }

    /// Takes one retry at `now` if the budget allows it: `true` if taken.
    pub fn withdraw_at(&self, now: Instant) -> bool {
        let second = self.second(now);
        let requests = self.requests.sum(second, self.window, 0);
        // What the window allows, in millionths of a retry.
        let allowed = u128::from(self.floor) * PPM + self.percent_ppm * u128::from(requests);
        // Retries of the window's earlier seconds; only the current second's can still grow.
        let earlier = u128::from(self.retries.sum(second, self.window, 1));
        let slot = self.retries.slot(second);
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let current = match second_of(word) {
                s if s == second => count_of(word),
                s if s < second => 0,
                // Another caller is a whole ring of seconds ahead: this one is stale.
                _ => return false,
            };
            if (earlier + u128::from(current) + 1) * PPM > allowed {
                return false;
            }
            let new = pack(second, current.saturating_add(1));
            match slot.compare_exchange_weak(word, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now_there) => word = now_there,
            }
        }
    }

    /// Requests and retries counted in the window ending at `now`.
    fn counts(&self, now: Instant) -> (u64, u64) {
        let second = self.second(now);
        let requests = self.requests.sum(second, self.window, 0);
        (requests, self.retries.sum(second, self.window, 0))
    }
}

impl Budget for RetryBudget {
    fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    fn withdraw(&self) -> bool {
        self.withdraw_at(Instant::now())
    }
}

impl Default for RetryBudget {
    /// The client's budget: 10 s window, 10 retries per second, 20 % of requests.
    fn default() -> Self {
        Self::new(Duration::from_secs(10), 10, 0.2)
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (requests, retries) = self.counts(Instant::now());
        f.debug_struct("RetryBudget")
            .field("window_secs", &self.window)
            .field("floor", &self.floor)
            .field("percent", &(self.percent_ppm as f64 / PPM as f64))
            .field("requests", &requests)
            .field("retries", &retries)
            .finish()
    }
}

#[cfg(test)]
mod tests;
