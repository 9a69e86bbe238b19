use std::sync::{Arc, Barrier};
use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn breaker(failure_limit: u32, retest: Duration) -> Arc<Breaker> {
    Arc::new(Breaker::new(BreakerConfig {
        policy: FailurePolicy::ConsecutiveFailures(failure_limit),
        retest_delay: retest,
        ..BreakerConfig::default()
    }))
}

fn fail(b: &Arc<Breaker>, now: Instant) -> Option<Transition> {
    let (permit, _) = b.try_acquire(now);
    permit.expect("admitted").record_failure(now)
}

#[tokio::test(start_paused = true)]
async fn opens_after_failure_limit_consecutive_failures() {
    let b = breaker(3, Duration::from_secs(30));
    let now = Instant::now();
    assert_eq!(fail(&b, now), None);
    assert_eq!(fail(&b, now), None);
    // A success in between resets the count.
    b.try_acquire(now).0.expect("admitted").record_success(now);
    assert_eq!(fail(&b, now), None);
    assert_eq!(fail(&b, now), None);
    assert_eq!(b.state(), BreakerState::Closed);
    let t = fail(&b, now);
    assert_eq!(
        t,
        Some(Transition::Opened {
            retest_at: now + Duration::from_secs(30)
        })
    );
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn open_admits_nothing_until_retest_delay() {
    let b = breaker(1, Duration::from_secs(30));
    let start = Instant::now();
    fail(&b, start);
    tokio::time::advance(Duration::from_millis(29_999)).await;
    let (permit, t) = b.try_acquire(Instant::now());
    assert!(permit.is_none());
    assert_eq!(t, None);
    assert!(!b.would_permit(Instant::now()));
    tokio::time::advance(Duration::from_millis(1)).await;
    let (permit, t) = b.try_acquire(Instant::now());
    assert_eq!(t, Some(Transition::Retesting));
    let permit = permit.expect("probe admitted");
    assert!(permit.is_probe());
    assert_eq!(b.state(), BreakerState::Retest);
}

#[tokio::test(start_paused = true)]
async fn probe_success_closes_and_failure_reopens() {
    let b = breaker(1, Duration::from_secs(1));
    fail(&b, Instant::now());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(b.poll_retest(Instant::now()), Some(Transition::Retesting));
    // Probe fails: open again for another full delay.
    let now = Instant::now();
    let t = b.try_acquire(now).0.expect("probe").record_failure(now);
    assert_eq!(
        t,
        Some(Transition::Opened {
            retest_at: now + Duration::from_secs(1)
        })
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let now = Instant::now();
    let (permit, t) = b.try_acquire(now);
    assert_eq!(t, Some(Transition::Retesting));
    assert_eq!(
        permit.expect("probe").record_success(now),
        Some(Transition::Closed)
    );
    assert_eq!(b.state(), BreakerState::Closed);
    // Closed again: requests flow freely.
    assert!(b.try_acquire(now).0.is_some());
    assert!(b.try_acquire(now).0.is_some());
}

#[tokio::test(start_paused = true)]
async fn only_one_probe_at_a_time_and_dropped_probe_frees_the_slot() {
    let b = breaker(1, Duration::from_secs(1));
    fail(&b, Instant::now());
    tokio::time::advance(Duration::from_secs(1)).await;
    let now = Instant::now();
    let probe = b.try_acquire(now).0.expect("first probe");
    assert!(b.try_acquire(now).0.is_none(), "second caller must wait");
    drop(probe); // caller gave up (e.g. its future was cancelled)
    let probe = b.try_acquire(now).0.expect("slot freed");
    assert!(probe.is_probe());
}

#[tokio::test(start_paused = true)]
async fn late_results_from_an_earlier_state_are_ignored() {
    let b = breaker(1, Duration::from_secs(1));
    let now = Instant::now();
    let slow_failure = b.try_acquire(now).0.expect("admitted while closed");
    let slow_success = b.try_acquire(now).0.expect("admitted while closed");
    fail(&b, now); // opens
    assert_eq!(
        slow_failure.record_failure(now),
        None,
        "already open: no second OPEN"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let now = Instant::now();
    let probe = b.try_acquire(now).0.expect("probe");
    // A request admitted while Closed that succeeds during Retest must not close the breaker:
    // only the probe decides.
    assert_eq!(slow_success.record_success(now), None);
    assert_eq!(b.state(), BreakerState::Retest);
    assert_eq!(probe.record_success(now), Some(Transition::Closed));
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_the_retest_delay_up_to_the_cap_and_resets_on_close() {
    let b = Arc::new(Breaker::new(BreakerConfig {
        retest_delay: Duration::from_secs(1),
        backoff_multiplier: 2.0,
        max_retest_delay: Duration::from_secs(3),
        ..BreakerConfig::default()
    }));
    let mut now = Instant::now();
    let mut delays = Vec::new();
    let Some(Transition::Opened { retest_at }) = fail(&b, now) else {
        panic!("should open")
    };
    delays.push(retest_at - now);
    for _ in 0..3 {
        now = retest_at_of(&b);
        let (probe, _) = b.try_acquire(now);
        let Some(Transition::Opened { retest_at }) = probe.expect("probe").record_failure(now)
        else {
            panic!("probe failure reopens")
        };
        delays.push(retest_at - now);
    }
    let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, vec![1, 2, 3, 3]);
    now = retest_at_of(&b);
    b.try_acquire(now).0.expect("probe").record_success(now);
    let Some(Transition::Opened { retest_at }) = fail(&b, now) else {
        panic!("should open")
    };
    assert_eq!(
        retest_at - now,
        Duration::from_secs(1),
        "backoff resets after close"
    );
}

fn retest_at_of(b: &Breaker) -> Instant {
    b.retest_at().expect("open")
}

#[test]
fn jitter_stays_within_bounds() {
    let config = BreakerConfig {
        jitter: 0.5,
        ..BreakerConfig::default()
    };
    let base = Duration::from_secs(10);
    assert_eq!(config.jittered(base, 0.0), Duration::from_secs(5));
    assert_eq!(config.jittered(base, 0.5), Duration::from_secs(10));
    assert!(config.jittered(base, 0.999_999) <= Duration::from_secs(15));
    let b = Breaker::new(config);
    for _ in 0..100 {
        let now = Instant::now();
        let (p, _) = Arc::new(Breaker::new(b.config().clone())).try_acquire(now);
        if let Some(Transition::Opened { retest_at }) = p.expect("closed").record_failure(now) {
            let d = retest_at - now;
            assert!(
                d >= Duration::from_secs(15) && d <= Duration::from_secs(45),
                "{d:?}"
            );
        } else {
            panic!("should open");
        }
    }
}

#[test]
fn bad_settings_are_rejected_by_name() {
    let zero = BreakerConfig {
        policy: FailurePolicy::ConsecutiveFailures(0),
        ..BreakerConfig::default()
    };
    assert!(zero.validate().unwrap_err().contains("failure_limit"));
    let rate = |ratio, min_requests, window| BreakerConfig {
        policy: FailurePolicy::FailureRate(FailureRate {
            ratio,
            min_requests,
            window,
        }),
        ..BreakerConfig::default()
    };
    let ten = Duration::from_secs(10);
    for ratio in [0.0, -0.5, 1.01, f64::NAN, f64::INFINITY] {
        let refused = rate(ratio, 10, ten).validate().unwrap_err();
        assert!(refused.contains("ratio"), "{ratio}: {refused}");
    }
    let refused = rate(0.5, 0, ten).validate().unwrap_err();
    assert!(refused.contains("min_requests"), "{refused}");
    let refused = rate(0.5, 10, Duration::ZERO).validate().unwrap_err();
    assert!(refused.contains("window"), "{refused}");
    assert!(rate(1.0, 1, Duration::from_nanos(1)).validate().is_ok());
    let jitter = BreakerConfig {
        jitter: 1.5,
        ..BreakerConfig::default()
    };
    assert!(jitter.validate().unwrap_err().contains("jitter"));
    let backoff = BreakerConfig {
        backoff_multiplier: 0.5,
        ..BreakerConfig::default()
    };
    assert!(backoff.validate().unwrap_err().contains("multiplier"));
    assert!(BreakerConfig::default().validate().is_ok());
}

/// Fifty threads race for the probe the moment the breaker enters Retest: exactly one wins.
#[test]
fn exactly_one_probe_admitted_while_50_callers_race_in_retest() {
    for _round in 0..20 {
        let b = breaker(1, Duration::ZERO);
        let start = Instant::now();
        fail(&b, start);
        let barrier = Arc::new(Barrier::new(50));
        let handles: Vec<_> = (0..50)
            .map(|_| {
                let b = Arc::clone(&b);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    let (permit, _) = b.try_acquire(Instant::now());
                    // Hold the permit until every thread has tried.
                    permit.map(std::mem::forget).is_some()
                })
            })
            .collect();
        let admitted = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .filter(|&won| won)
            .count();
        assert_eq!(admitted, 1);
        assert_eq!(b.state(), BreakerState::Retest);
    }
}

/// The same race among tokio tasks on a multi-threaded runtime, holding permits across awaits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_probe_admitted_among_50_tasks() {
    let b = breaker(1, Duration::ZERO);
    fail(&b, Instant::now());
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let release = Arc::new(tokio::sync::Notify::new());
    for _ in 0..50 {
        let b = Arc::clone(&b);
        let tx = tx.clone();
        let release = Arc::clone(&release);
        tokio::spawn(async move {
            let (permit, _) = b.try_acquire(Instant::now());
            let won = permit.is_some();
            let _ = tx.send(won).await;
            drop(tx);
            release.notified().await;
            drop(permit);
        });
    }
    drop(tx);
    let mut admitted = 0;
    while let Some(won) = rx.recv().await {
        admitted += usize::from(won);
    }
    assert_eq!(admitted, 1);
    release.notify_waiters();
}

/// While Closed, granting permits and recording successes never takes the lock (another
/// thread holds it throughout); a failure does.
#[test]
fn closed_grants_and_records_successes_without_the_lock() {
    let b = breaker(3, Duration::from_secs(30));
    let now = Instant::now();
    let held = b.hold_lock();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..1000 {
                let (permit, t) = b.try_acquire(now);
                assert_eq!(t, None);
                assert_eq!(permit.expect("closed").record_success(now), None);
            }
            assert!(b.would_permit(now));
            assert_eq!(b.state(), BreakerState::Closed);
            done_tx.send(()).expect("send");
        });
        let done = done_rx.recv_timeout(Duration::from_secs(10));
        drop(held);
        assert!(done.is_ok(), "the fast path waited for the lock");
    });
    // A failure is counted under the lock; admission stays lock-free while Closed, and the
    // next success resets the count (so two more failures do not open it).
    fail(&b, now);
    fail(&b, now);
    assert_eq!(b.state(), BreakerState::Closed);
    b.try_acquire(now).0.expect("closed").record_success(now);
    assert_eq!(fail(&b, now), None);
    assert_eq!(fail(&b, now), None);
    assert!(matches!(fail(&b, now), Some(Transition::Opened { .. })));
}

/// Fifty threads race for a permit the moment the breaker enters Retest, while others record
/// successes of requests permitted while Closed: exactly one probe, and the late successes
/// change nothing.
#[test]
fn exactly_one_probe_while_50_callers_race_and_earlier_permits_record() {
    for _round in 0..20 {
        let b = breaker(1, Duration::ZERO);
        let start = Instant::now();
        let stale: Vec<Permit> = (0..10)
            .map(|_| b.try_acquire(start).0.expect("closed"))
            .collect();
        fail(&b, start);
        let barrier = Barrier::new(50 + stale.len());
        let admitted = std::thread::scope(|scope| {
            for permit in stale {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    assert_eq!(permit.record_success(Instant::now()), None);
                });
            }
            let handles: Vec<_> = (0..50)
                .map(|_| {
                    let (b, barrier) = (&b, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        // Kept until every thread has tried (a dropped probe frees the slot).
                        b.try_acquire(Instant::now()).0
                    })
                })
                .collect();
            let permits: Vec<Permit> = handles
                .into_iter()
                .filter_map(|h| h.join().expect("thread"))
                .collect();
            permits.len()
        });
        assert_eq!(admitted, 1);
        assert_eq!(b.state(), BreakerState::Retest);
    }
}
