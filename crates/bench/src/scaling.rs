//! 2-thread scaling of hot-path operations, measured so that the machine's other load
//! cancels out: short 1-thread and 2-thread intervals alternate, each pair gives a ratio,
//! and the median ratio is reported. (Criterion measures the 1-thread and 2-thread variants
//! minutes apart; on a shared 2-core machine the second core may be busy in one and free in
//! the other.)

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use discovery_client::breaker::{Breaker, BreakerConfig};
use discovery_client::budget::RetryBudget;
use tower::retry::budget::{Budget, TpsBudget};

use crate::instant::InstantClient;

/// One operation's result.
#[derive(Debug, Clone)]
pub struct Scaling {
    /// What was measured.
    pub name: &'static str,
    /// Median time per operation on 1 thread, in ns.
    pub one_thread_ns: f64,
    /// Median of (2-thread throughput ÷ 1-thread throughput) over the alternations.
    pub scaling: f64,
    /// Smallest and largest ratio seen.
    pub range: (f64, f64),
}

/// Operations per second on `threads` threads running `op(thread index)` for `interval`.
fn rate(threads: usize, interval: Duration, op: &(dyn Fn(usize) + Sync)) -> f64 {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let barrier = Barrier::new(threads + 1);
    let _start = std::thread::scope(|scope| {
        for t in 0..threads {
            let (stop, done, barrier) = (&stop, &done, &barrier);
            scope.spawn(move || {
                barrier.wait();
                let mut count = 0u64;
                // Bounded by `stop` (set after `interval`) and by a count far above any rate.
                while !stop.load(Ordering::Relaxed) && count < 1_000_000_000 {
                    for _ in 0..256 {
                        op(t);
                    }
                    count += 256;
                }
                done.fetch_add(count, Ordering::Relaxed);
            });
        }
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(interval);
        stop.store(true, Ordering::Relaxed);
        start
    });
    // Threads stop within one batch of 256 after `stop`: counted over the interval.
    done.load(Ordering::Relaxed) as f64 / interval.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Measures one operation: `rounds` alternations of a 1-thread and a 2-thread interval.
pub fn measure(
    name: &'static str,
    rounds: usize,
    interval: Duration,
    op: &(dyn Fn(usize) + Sync),
) -> Scaling {
    // Warm up (caches, allocator, lazy statics).
    let _ = rate(2, interval / 2, op);
    let mut ratios = Vec::with_capacity(rounds);
    let mut singles = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let one = rate(1, interval, op);
        let two = rate(2, interval, op);
        singles.push(1e9 / one.max(1.0));
        ratios.push(two / one.max(1.0));
    }
    let range = (
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    );
    Scaling {
        name,
        one_thread_ns: median(&mut singles),
        scaling: median(&mut ratios),
        range,
    }
}

/// The operations, measured in turn.
pub fn run_all(rounds: usize, interval: Duration) -> Vec<Scaling> {
    let mut results = Vec::new();
    // The client's whole per-call work over a transport that answers at once, and a hit of
    // its cache.
    match InstantClient::new() {
        Ok(instant) => {
            let call = |_: usize| {
                black_box(instant.get_json());
            };
            let hit = |_: usize| {
                black_box(instant.cache_hit());
            };
            results.extend([
                measure(
                    "ServiceClient::get_json over an instant transport",
                    rounds,
                    interval,
                    &call,
                ),
                measure(
                    "cache hit: get_json_cached (lookup + decode)",
                    rounds,
                    interval,
                    &hit,
                ),
            ]);
        }
        Err(e) => eprintln!("  (the client's call and cache hit not measured: {e})"),
    }
    let shared = Arc::new(Breaker::new(BreakerConfig::default()));
    let now = tokio::time::Instant::now();
    let breaker = |_: usize| {
        if let (Some(permit), _) = shared.try_acquire(now) {
            black_box(permit.record_success(now));
        }
    };
    // Control: each thread its own breaker, a padding allocation between them.
    let first = Arc::new(Breaker::new(BreakerConfig::default()));
    let padding = black_box(vec![0u8; 1024]);
    let second = Arc::new(Breaker::new(BreakerConfig::default()));
    let own = [first, second];
    let separate = |t: usize| {
        if let (Some(permit), _) = own[t % 2].try_acquire(now) {
            black_box(permit.record_success(now));
        }
    };
    let budget = TpsBudget::new(Duration::from_secs(10), 10, 0.2);
    let deposit = |_: usize| budget.deposit();
    // As the client deposits: at the call's start, read once for the whole call.
    let ours_budget = RetryBudget::new(Duration::from_secs(10), 10, 0.2);
    let ours_deposit = |_: usize| ours_budget.deposit_at(tokio::time::Instant::now());
    results.extend([
        measure(
            "breaker acquire + record (library, one shared breaker)",
            rounds,
            interval,
            &breaker,
        ),
        measure(
            "retry budget deposit (library RetryBudget, every call, 1 clock read)",
            rounds,
            interval,
            &ours_deposit,
        ),
        measure(
            "for comparison, not the library: tower TpsBudget deposit",
            rounds,
            interval,
            &deposit,
        ),
        measure(
            "control: each thread its own breaker",
            rounds,
            interval,
            &separate,
        ),
    ]);
    drop(padding);
    results
}

/// Polls `future` once, with a waker that does nothing: `None` if it was not ready (a cache
/// hit is ready at once). Shared with `benches/hot_path.rs`.
pub fn ready_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}
