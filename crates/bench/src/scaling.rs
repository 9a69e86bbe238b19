//! 2-thread scaling of hot-path operations, measured so that the machine's other load
//! cancels out: short 1-thread and 2-thread intervals alternate, each pair gives a ratio,
//! and the median ratio is reported. (Criterion measures the 1-thread and 2-thread variants
//! minutes apart; on a shared 2-core machine the second core may be busy in one and free in
//! the other.)

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use discovery_client::balance::{Endpoint, InFlight, Picker};
use discovery_client::breaker::{Breaker, BreakerConfig, Permit};
use discovery_client::budget::RetryBudget;
use discovery_client::{Instance, ServiceClient, Source, StaticDiscovery};
use tower::retry::budget::{Budget, TpsBudget};

use crate::lean;

/// The client's pick (least-pending, owned permit) over `endpoints` with in-flight `counts`:
/// the index picked and its permit. Shared by the scaling measurement and `benches/hot_path.rs`.
pub fn least_pending_pick(
    rr: &Picker,
    endpoints: &[Endpoint],
    counts: &[InFlight],
    now: tokio::time::Instant,
) -> Option<(usize, Permit)> {
    rr.pick_least_pending(
        endpoints.len(),
        |i| counts[i].get_local(),
        |i| endpoints[i].breaker.try_acquire(now).0,
    )
}

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
    let endpoints: Vec<Endpoint> = (0..3)
        .map(|i| Endpoint {
            instance: Instance::new(
                (i + 1).to_string(),
                format!("http://127.0.0.1:{}", 8001 + i),
            ),
            breaker: Arc::new(Breaker::new(BreakerConfig::default())),
        })
        .collect();
    let rr = Picker::new();
    let pick_admit_record = |_: usize| {
        let picked = rr.pick(
            &endpoints,
            tokio::time::Instant::now(),
            |_| false,
            |_, _| {},
        );
        if let Some((endpoint, permit)) = picked {
            black_box(endpoint);
            black_box(permit.record_success(tokio::time::Instant::now()));
        }
    };
    // The same with permits that borrow the breaker (no `Arc` clone): the cursor is the
    // calling thread's, so nothing written here is written by the other thread.
    let pick_borrowed = |_: usize| {
        let now = tokio::time::Instant::now();
        let picked = rr.pick_with(endpoints.len(), |i| {
            endpoints[i].breaker.try_acquire_ref(now).0
        });
        if let Some((index, permit)) = picked {
            black_box(index);
            black_box(permit.record_success(tokio::time::Instant::now()));
        }
    };
    let counts: Vec<InFlight> = (0..3).map(|_| InFlight::new()).collect();
    let least_pending = |_: usize| {
        let picked = least_pending_pick(&rr, &endpoints, &counts, tokio::time::Instant::now());
        if let Some((index, permit)) = picked {
            let in_flight = counts[index].start();
            black_box(permit.record_success(tokio::time::Instant::now()));
            drop(in_flight);
        }
    };
    // The same with the library's borrowing forms: permits that borrow the breaker and
    // in-flight guards that borrow the count (no `Arc` clone); least-pending, or two choices
    // (the client's default).
    let borrowed = |two_choices: bool| {
        let (rr, endpoints, counts) = (&rr, &endpoints, &counts);
        move |_: usize| {
            let now = tokio::time::Instant::now();
            let pending = |i: usize| counts[i].get_local();
            let admit = |i: usize| endpoints[i].breaker.try_acquire_ref(now).0;
            let picked = if two_choices {
                rr.pick_two_choices(endpoints.len(), pending, admit)
            } else {
                rr.pick_least_pending(endpoints.len(), pending, admit)
            };
            if let Some((index, permit)) = picked {
                let in_flight = counts[index].start_ref();
                black_box(permit.record_success(tokio::time::Instant::now()));
                drop(in_flight);
            }
        }
    };
    let least_pending_borrowed = borrowed(false);
    let two_choices_borrowed = borrowed(true);
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
    let borrowed = |_: usize| {
        if let (Some(permit), _) = shared.try_acquire_ref(now) {
            black_box(permit.record_success(now));
        }
    };
    let budget = TpsBudget::new(Duration::from_secs(10), 10, 0.2);
    let deposit = |_: usize| budget.deposit();
    // As the client deposits: at the call's start, read once for the whole call.
    let ours_budget = RetryBudget::new(Duration::from_secs(10), 10, 0.2);
    let ours_deposit = |_: usize| ours_budget.deposit_at(tokio::time::Instant::now());
    let lean_breakers: Vec<lean::Breaker> = (0..3).map(|_| lean::Breaker::new()).collect();
    let prototype = |_: usize| {
        if let Some(i) = lean::pick(&lean_breakers) {
            black_box(tokio::time::Instant::now());
            lean_breakers[i].record_success();
            black_box(tokio::time::Instant::now());
        }
    };
    let mut results = vec![
        measure(
            "owned, an Arc clone per call as ServiceClient holds them (not judged): pick + admit + record, round-robin (library, 3 endpoints, 2 clock reads)",
            rounds,
            interval,
            &pick_admit_record,
        ),
        measure(
            "pick + admit + record, round-robin (library, borrowed permits, 3 endpoints, 2 clock reads)",
            rounds,
            interval,
            &pick_borrowed,
        ),
        measure(
            "owned, an Arc clone per call as ServiceClient holds them (not judged): pick + admit + record, least-pending with in-flight count (library, 3 endpoints, 2 clock reads)",
            rounds,
            interval,
            &least_pending,
        ),
        measure(
            "pick + admit + record, least-pending with in-flight count (library, borrowed permits and guards, 3 endpoints, 2 clock reads)",
            rounds,
            interval,
            &least_pending_borrowed,
        ),
        measure(
            "pick + admit + record, two choices with in-flight count (library, borrowed permits and guards, 3 endpoints, 2 clock reads)",
            rounds,
            interval,
            &two_choices_borrowed,
        ),
        measure(
            "owned, an Arc clone per call as ServiceClient holds them (not judged): breaker admit + record (library, one shared breaker)",
            rounds,
            interval,
            &breaker,
        ),
        measure(
            "breaker admit + record (library, one shared breaker, borrowed permit)",
            rounds,
            interval,
            &borrowed,
        ),
        measure(
            "retry budget deposit (library RetryBudget, every call, 1 clock read)",
            rounds,
            interval,
            &ours_deposit,
        ),
        measure(
            "for comparison, not the library: tower TpsBudget deposit (the client's before)",
            rounds,
            interval,
            &deposit,
        ),
        measure(
            "PROTOTYPE, not the library: write-free pick + admit + record, 2 clock reads",
            rounds,
            interval,
            &prototype,
        ),
        measure(
            "control: each thread its own breaker",
            rounds,
            interval,
            &separate,
        ),
    ];
    drop(padding);
    match cache_hit(rounds, interval) {
        Ok(row) => results.push(row),
        Err(e) => eprintln!("  (cache hit not measured: {e})"),
    }
    results
}

/// The ratings answer the cache holds.
#[derive(Debug, serde::Deserialize)]
struct Rating {
    item_id: String,
    rating: u8,
}

/// `ServiceClient::get_json_cached` answered from the fresh cache (moka lookup, JSON decode),
/// by one thread and by two sharing the client. Measured on a thread of its own: the client
/// is built and its cache filled (from a one-answer server on loopback) on a runtime there.
fn cache_hit(rounds: usize, interval: Duration) -> Result<Scaling, String> {
    const PATH: &str = "/ratings/widget";
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let address = one_answer_server(r#"{"item_id":"widget","rating":4,"instance":1}"#)?;
        let client = runtime.block_on(async {
            let client = ServiceClient::builder("ratings")
                .discovery(StaticDiscovery::new([format!("http://{address}")]))
                .cache_ttl(Duration::from_secs(3600))
                .build()
                .map_err(|e| format!("client: {e}"))?;
            let fill = client.get_json_cached::<Rating>(PATH).await;
            fill.map_err(|e| format!("filling the cache: {e}"))?;
            Ok::<_, String>(client)
        })?;
        let hit = |_: usize| {
            let hit = ready_now(client.get_json_cached::<Rating>(PATH));
            match hit {
                Some(Ok(cached)) if cached.source == Source::Cache => {
                    black_box((cached.value.item_id, cached.value.rating));
                }
                other => panic!("expected a cache hit, got {other:?}"),
            }
        };
        Ok(measure(
            "cache hit: get_json_cached (lookup + decode)",
            rounds,
            interval,
            &hit,
        ))
    })
    .join()
    .map_err(|_| "the cache-hit measurement panicked".to_string())?
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

/// A server on a loopback port that answers one request with `body` (JSON) on one
/// keep-alive connection, then closes it: enough to fill a cache. Its thread ends once the
/// connection does, or after 30 s.
fn one_answer_server(body: &'static str) -> Result<std::net::SocketAddr, String> {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let address = listener.local_addr().map_err(|e| format!("address: {e}"))?;
    std::thread::spawn(move || -> std::io::Result<()> {
        let (stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        // The request's head, up to the empty line (bounded: 100 lines).
        for _ in 0..100 {
            line.clear();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
        }
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )?;
        stream.flush()
    });
    Ok(address)
}
