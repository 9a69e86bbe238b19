//! Hot-path micro-benchmarks: what the client does per request besides the HTTP exchange.
//!
//! - `breaker`: admit one request and record its success on a closed breaker (ours, and the
//!   `failsafe` and `recloser` crates doing the same work); `ours` takes the owned permit
//!   (an `Arc` clone), as the balancer and the breaker middleware do, `ours_borrowed` the
//!   permit that borrows the breaker;
//! - `pick`: round-robin pick over 3 endpoints (which takes the breaker's permit); and
//!   `least_pending`, the client's pick (fewest in flight first, round-robin among equals),
//!   counting the request in flight and out again: with nothing else in flight (the scan
//!   stops at the first idle endpoint) and `busy`, with 10 requests held on each endpoint
//!   (the scan reads all 3 counts);
//! - `pick_admit_record`: pick over 3 endpoints, then record success, reading the clock
//!   before each as the client does; `least_pending` also counts the request in flight;
//! - `cache_hit`: `ServiceClient::get_json_cached` answered from the fresh cache (lookup and
//!   JSON decode of a ratings answer);
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

use bench::lean;
use bench::scaling::{least_pending_pick, ready_now};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use discovery_client::balance::{Endpoint, InFlight, Picker};
use discovery_client::breaker::{Breaker, BreakerConfig};
use discovery_client::{Instance, ServiceClient, Source, StaticDiscovery};
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

fn endpoints(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| Endpoint {
            instance: Instance::new(
                (i + 1).to_string(),
                format!("http://127.0.0.1:{}", 8001 + i),
            ),
            breaker: Arc::new(Breaker::new(BreakerConfig::default())),
        })
        .collect()
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
        let op = || {
            let (permit, _) = ours.try_acquire_ref(now);
            black_box(permit.expect("closed breaker admits").record_success(now));
        };
        group.bench_with_input(
            BenchmarkId::new("ours_borrowed", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| on_threads(t, iters, &op)),
        );

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

fn balancer(c: &mut Criterion) {
    let endpoints = endpoints(3);
    let rr = Picker::new();
    let mut group = c.benchmark_group("pick");
    let now = Instant::now();
    group.bench_function(BenchmarkId::new("ours", 1), |b| {
        b.iter(|| {
            let picked = rr.pick(black_box(&endpoints), now, |_| false, |_, _| {});
            black_box(picked.map(|(e, _permit)| e.instance.id.len()))
        })
    });
    let counts: Vec<InFlight> = (0..3).map(|_| InFlight::new()).collect();
    let least_pending = || {
        let (index, permit) =
            least_pending_pick(&rr, &endpoints, &counts, now).expect("an endpoint admits");
        let in_flight = counts[index].start();
        black_box((permit, in_flight))
    };
    group.bench_function(BenchmarkId::new("least_pending", 1), |b| {
        b.iter(least_pending)
    });
    let held: Vec<_> = counts
        .iter()
        .flat_map(|c| (0..10).map(|_| c.start()))
        .collect();
    group.bench_function(BenchmarkId::new("least_pending_busy", 1), |b| {
        b.iter(least_pending)
    });
    drop(held);
    group.finish();

    let mut group = c.benchmark_group("pick_admit_record");
    let op = || {
        let (endpoint, permit) = rr
            .pick(black_box(&endpoints), Instant::now(), |_| false, |_, _| {})
            .expect("an endpoint admits");
        black_box(endpoint);
        black_box(permit.record_success(Instant::now()));
    };
    let op_least_pending = || {
        let (index, permit) = least_pending_pick(&rr, &endpoints, &counts, Instant::now())
            .expect("an endpoint admits");
        let in_flight = counts[index].start();
        black_box(permit.record_success(Instant::now()));
        drop(in_flight);
    };
    for threads in [1, 2] {
        group.bench_with_input(BenchmarkId::new("ours", threads), &threads, |b, &t| {
            b.iter_custom(|iters| on_threads(t, iters, &op))
        });
        group.bench_with_input(
            BenchmarkId::new("least_pending", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| on_threads(t, iters, &op_least_pending)),
        );
    }
    group.finish();

    let mut group = c.benchmark_group("clock");
    group.bench_function(BenchmarkId::new("tokio_instant_now", 1), |b| {
        b.iter(|| black_box(Instant::now()))
    });
    group.finish();
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)] // decoded as the client's users would; fields are read by black_box only
struct Rating {
    item_id: String,
    rating: u8,
    instance: u16,
}

fn cache(c: &mut Criterion) {
    const PATH: &str = "/ratings/widget";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    // A real ratings instance in this process fills the cache once.
    let client = runtime.block_on(async {
        use clap::Parser as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = ratings_service::Config::try_parse_from([
            "ratings-service",
            "--no-register",
            "--listen",
            &addr.to_string(),
        ])
        .expect("config");
        tokio::spawn(ratings_service::run(
            listener,
            config,
            std::future::pending(),
        ));
        let client = ServiceClient::builder("ratings")
            .discovery(StaticDiscovery::new([format!("http://{addr}")]))
            .cache_ttl(Duration::from_secs(3600))
            .build()
            .expect("client");
        let first = client.get_json_cached::<Rating>(PATH).await.expect("fill");
        assert_eq!(first.source, Source::Live);
        let second = client.get_json_cached::<Rating>(PATH).await.expect("hit");
        assert_eq!(second.source, Source::Cache);
        client
    });
    let handle = runtime.handle().clone();
    let mut group = c.benchmark_group("cache_hit");
    for threads in [1, 2] {
        group.bench_with_input(BenchmarkId::new("ours", threads), &threads, |b, &t| {
            b.iter_custom(|iters| {
                let barrier = Barrier::new(t + 1);
                std::thread::scope(|scope| {
                    let handles: Vec<_> = (0..t)
                        .map(|_| {
                            let (client, handle, barrier) =
                                (client.clone(), handle.clone(), &barrier);
                            scope.spawn(move || {
                                barrier.wait();
                                handle.block_on(async {
                                    for _ in 0..iters {
                                        let hit = client.get_json_cached::<Rating>(PATH).await;
                                        black_box(hit.expect("cached"));
                                    }
                                })
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
    }
    group.finish();
}

/// Pieces of per-request work in `ServiceClient::get_json` besides pick/admit/record, to
/// size them: before the hot-path work it decoded a 2xx body twice (once to judge it, once
/// to return it) and built a `Response` with the answer's headers and a clone of the
/// `Instance`; it now decodes once and builds no `Response`.
fn client_parts(c: &mut Criterion) {
    let body = br#"{"item_id":"widget","rating":4,"instance":1}"#;
    let instance = Instance::new("1", "http://127.0.0.1:8001");
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("44"),
    );
    headers.insert(
        http::header::DATE,
        http::HeaderValue::from_static("Tue, 24 Nov 2026 01:00:00 GMT"),
    );
    let mut group = c.benchmark_group("client_parts");
    group.bench_function(BenchmarkId::new("decode_rating", 1), |b| {
        b.iter(|| black_box(serde_json::from_slice::<Rating>(black_box(body)).expect("decodes")))
    });
    group.bench_function(BenchmarkId::new("clone_instance", 1), |b| {
        b.iter(|| black_box(black_box(&instance).clone()))
    });
    group.bench_function(BenchmarkId::new("clone_headers", 1), |b| {
        b.iter(|| black_box(black_box(&headers).clone()))
    });
    group.finish();
}

/// Shared state `ServiceClient` touches on every call besides the breaker: the retry budget
/// (one per client, a deposit on every call) and the moka cache's lookup for a hot key.
/// The budget is the library's `RetryBudget`, reading the clock itself as tower's does
/// (`ours_deposit`) and given the call's start as the client does (`ours_deposit_at`), and
/// tower's `TpsBudget`, which the client used before.
fn shared_state(c: &mut Criterion) {
    use discovery_client::budget::RetryBudget;
    use tower::retry::budget::{Budget, TpsBudget};
    // The client's budget: 10 s window, 10 retries/s floor, 20 % of requests.
    let budget = TpsBudget::new(Duration::from_secs(10), 10, 0.2);
    let op = || budget.deposit();
    let ours = RetryBudget::new(Duration::from_secs(10), 10, 0.2);
    let op_ours = || ours.deposit();
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
            BenchmarkId::new("ours_deposit", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| on_threads(t, iters, &op_ours)),
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

fn prototype(c: &mut Criterion) {
    let breakers: Vec<lean::Breaker> = (0..3).map(|_| lean::Breaker::new()).collect();
    let op = || {
        let i = lean::pick(black_box(&breakers)).expect("admits");
        let _now = Instant::now();
        breakers[i].record_success();
        black_box(Instant::now());
    };
    let mut group = c.benchmark_group("prototype_write_free");
    for threads in [1, 2] {
        group.bench_with_input(
            BenchmarkId::new("pick_admit_record", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| on_threads(t, iters, &op)),
        );
    }
    group.finish();
}

criterion_group!(
    hot_path,
    breakers,
    balancer,
    cache,
    client_parts,
    shared_state,
    prototype
);
criterion_main!(hot_path);
