//! Hot-path micro-benchmarks: what the client itself runs per call, and its parts.
//!
//! - `client`: `ServiceClient::get_json` over a transport that answers at once, in memory
//!   (request, pick, permit, attempt with its timeout, judging, decoding, recording: the
//!   client's whole per-call work without the network); `get_json_two_choices` the same
//!   with `Balance::PowerOfTwoChoices`, to see what latency-aware picking costs;
//! - `breaker`: acquire a permit and record its success on a closed breaker (ours, and the
//!   `failsafe` and `recloser` crates doing the same work);
//! - `cache_hit`: `ServiceClient::get_json_cached` answered from the fresh cache (lookup and
//!   JSON decode of a ratings answer);
//! - `budget`: the retry budget's deposit (ours, given the call's start as the client does;
//!   tower's `TpsBudget` for comparison);
//! - `moka_get`: moka's lookup of one hot key, inside every cache hit;
//! - `clock`: one `tokio::time::Instant::now()`, for scale.
//!
//! Each runs on 1 thread and on 2 threads sharing the same structure (the parameter), as one
//! client shared by all request tasks is. With 2 threads a criterion "iteration" is one
//! operation on each thread, so 2-thread scaling = 2 × t(1 thread) / t(2 threads).
//! `breaker_separate` gives each thread its own breaker: how this machine scales when
//! nothing is shared. `bench --scenario micro` turns the results into a table.

#![allow(clippy::expect_used, clippy::unwrap_used)] // benchmark set-up: a failure is a bench failure

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use bench::instant::InstantClient;
use bench::scaling::ready_now;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use discovery_client::Balance;
use discovery_client::breaker::{Breaker, BreakerConfig};
use tokio::time::Instant;

/// Runs `op` `iters` times on each of `threads` threads started together; the wall time
/// from the common start until the last thread is done.
fn on_threads(threads: usize, iters: u64, op: &(impl Fn() + Sync)) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    for _ in 0..iters {
                        op();
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = std::time::Instant::now();
        for handle in handles {
            handle.join().expect("bench thread");
        }
        start.elapsed()
    })
}

fn breakers(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker");
    let now = Instant::now();
    for threads in [1, 2] {
        let ours = Arc::new(Breaker::new(BreakerConfig::default()));
        let op = || {
            let (permit, _) = ours.try_acquire(now);
            black_box(permit.expect("closed breaker admits").record_success(now));
        };
        group.bench_with_input(BenchmarkId::new("ours", threads), &threads, |b, &t| {
            b.iter_custom(|iters| on_threads(t, iters, &op))
        });

        let failsafe = failsafe::Config::new()
            .failure_policy(failsafe::failure_policy::consecutive_failures(
                1,
                failsafe::backoff::constant(Duration::from_secs(30)),
            ))
            .build();
        let op = || {
            assert!(black_box(failsafe.is_call_permitted()));
            failsafe.on_success();
        };
        group.bench_with_input(BenchmarkId::new("failsafe", threads), &threads, |b, &t| {
            b.iter_custom(|iters| on_threads(t, iters, &op))
        });

        let recloser = recloser::Recloser::custom()
            .error_rate(0.5)
            .closed_len(1)
            .open_wait(Duration::from_secs(30))
            .build();
        let op = || {
            black_box(recloser.call(|| Ok::<(), ()>(()))).expect("closed recloser admits");
        };
        group.bench_with_input(BenchmarkId::new("recloser", threads), &threads, |b, &t| {
            b.iter_custom(|iters| on_threads(t, iters, &op))
        });
    }
    group.finish();

    // Control: two threads, each with its own breaker (nothing shared). A padding
    // allocation between the two keeps them off one cache line (no false sharing).
    let mut group = c.benchmark_group("breaker_separate");
    let first = Arc::new(Breaker::new(BreakerConfig::default()));
    let padding = vec![0u8; 1024];
    let second = Arc::new(Breaker::new(BreakerConfig::default()));
    black_box(&padding);
    let mine = [first, second];
    group.bench_function(BenchmarkId::new("ours", 2), |b| {
        b.iter_custom(|iters| {
            let barrier = Barrier::new(3);
            std::thread::scope(|scope| {
                let handles: Vec<_> = mine
                    .iter()
                    .map(|breaker| {
                        let barrier = &barrier;
                        scope.spawn(move || {
                            barrier.wait();
                            for _ in 0..iters {
                                let (permit, _) = breaker.try_acquire(now);
                                black_box(permit.expect("admits").record_success(now));
                            }
                        })
                    })
                    .collect();
                barrier.wait();
                let start = std::time::Instant::now();
                for handle in handles {
                    handle.join().expect("bench thread");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn client(c: &mut Criterion) {
    let mut group = c.benchmark_group("client");
    let instant = InstantClient::new().expect("instant client");
    let op = || {
        black_box(instant.get_json());
    };
    for threads in [1, 2] {
        group.bench_with_input(BenchmarkId::new("get_json", threads), &threads, |b, &t| {
            b.iter_custom(|iters| on_threads(t, iters, &op))
        });
    }
    // The same call with the picking rule before latency-aware picking became the default.
    let two_choices = InstantClient::with_balance(Balance::PowerOfTwoChoices).expect("client");
    let op = || {
        black_box(two_choices.get_json());
    };
    group.bench_with_input(BenchmarkId::new("get_json_two_choices", 1), &1, |b, &t| {
        b.iter_custom(|iters| on_threads(t, iters, &op))
    });
    group.finish();

    let mut group = c.benchmark_group("clock");
    group.bench_function(BenchmarkId::new("tokio_instant_now", 1), |b| {
        b.iter(|| black_box(Instant::now()))
    });
    group.finish();
}

fn cache(c: &mut Criterion) {
    let instant = InstantClient::new().expect("instant client");
    let op = || {
        black_box(instant.cache_hit());
    };
    let mut group = c.benchmark_group("cache_hit");
    for threads in [1, 2] {
        group.bench_with_input(BenchmarkId::new("ours", threads), &threads, |b, &t| {
            b.iter_custom(|iters| on_threads(t, iters, &op))
        });
    }
    group.finish();
}

/// Shared state `ServiceClient` touches on every call besides the breaker: the retry budget
/// (one per client, a deposit on every call) and the moka cache's lookup for a hot key.
/// The budget is the library's `RetryBudget`, given the call's start as the client does
/// (`ours_deposit_at`), and tower's `TpsBudget` for comparison.
fn shared_state(c: &mut Criterion) {
    use discovery_client::budget::RetryBudget;
    use tower::retry::budget::{Budget, TpsBudget};
    // The client's budget: 10 s window, 10 retries/s floor, 20 % of requests.
    let budget = TpsBudget::new(Duration::from_secs(10), 10, 0.2);
    let op = || budget.deposit();
    let ours = RetryBudget::new(Duration::from_secs(10), 10, 0.2);
    let now = Instant::now();
    let op_ours_at = || ours.deposit_at(black_box(now));
    let mut group = c.benchmark_group("budget");
    for threads in [1, 2] {
        group.bench_with_input(
            BenchmarkId::new("tower_tps_deposit", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| on_threads(t, iters, &op)),
        );
        group.bench_with_input(
            BenchmarkId::new("ours_deposit_at", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| on_threads(t, iters, &op_ours_at)),
        );
    }
    group.finish();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cache: moka::future::Cache<String, bytes::Bytes> = moka::future::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(Duration::from_secs(3600))
        .build();
    let body = bytes::Bytes::from_static(br#"{"item_id":"widget","rating":4,"instance":1}"#);
    runtime.block_on(cache.insert("/ratings/widget".to_string(), body));
    let op = || {
        let hit = ready_now(cache.get("/ratings/widget")).expect("a moka hit is ready at once");
        black_box(hit.expect("present"));
    };
    let mut group = c.benchmark_group("moka_get");
    for threads in [1, 2] {
        group.bench_with_input(BenchmarkId::new("same_key", threads), &threads, |b, &t| {
            b.iter_custom(|iters| on_threads(t, iters, &op))
        });
    }
    group.finish();
}

criterion_group!(hot_path, breakers, client, cache, shared_state);
criterion_main!(hot_path);
