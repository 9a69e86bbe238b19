use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower::retry::budget::Budget;

use super::*;

const WINDOW: Duration = Duration::from_secs(10);

/// Withdraws at `now` until refused; how many were granted (bounded).
fn drain(budget: &RetryBudget, now: Instant) -> usize {
    (0..100_000).take_while(|_| budget.withdraw_at(now)).count()
}

#[tokio::test(start_paused = true)]
async fn retries_are_a_share_of_requests() {
    let budget = RetryBudget::new(WINDOW, 0, 0.2);
    let now = Instant::now();
    assert!(!budget.withdraw_at(now), "no requests, no floor: no retry");
    for _ in 0..10 {
        budget.deposit_at(now);
    }
    assert_eq!(drain(&budget, now), 2, "20 % of 10 requests");
    for _ in 0..5 {
        budget.deposit_at(now);
    }
    assert_eq!(drain(&budget, now), 1, "20 % of 15 requests is 3, 2 taken");
}

#[tokio::test(start_paused = true)]
async fn the_fraction_is_kept_exactly() {
    // tower's TpsBudget turns 0.3 into "one retry per 3 requests" (33 of 100).
    let budget = RetryBudget::new(WINDOW, 0, 0.3);
    let now = Instant::now();
    for _ in 0..100 {
        budget.deposit_at(now);
    }
    assert_eq!(drain(&budget, now), 30);
    // Above 1.0: several retries per request.
    let budget = RetryBudget::new(WINDOW, 0, 2.5);
    for _ in 0..4 {
        budget.deposit_at(now);
    }
    assert_eq!(drain(&budget, now), 10);
}

#[tokio::test(start_paused = true)]
async fn the_floor_allows_retries_without_requests() {
    let budget = RetryBudget::new(WINDOW, 10, 0.0);
    let now = Instant::now();
    assert_eq!(drain(&budget, now), 100, "10 per second over 10 s");
    for _ in 0..1000 {
        budget.deposit_at(now);
    }
    assert!(
        !budget.withdraw_at(now),
        "a 0 % budget gains nothing from requests"
    );
    // Floor and share add up.
    let budget = RetryBudget::new(WINDOW, 10, 0.2);
    for _ in 0..400 {
        budget.deposit_at(now);
    }
    assert_eq!(drain(&budget, now), 100 + 80);
}

#[tokio::test(start_paused = true)]
async fn requests_and_retries_leave_the_window_after_it() {
    let budget = RetryBudget::new(WINDOW, 0, 1.0);
    for _ in 0..5 {
        budget.deposit_at(Instant::now());
    }
    tokio::time::advance(Duration::from_millis(9_999)).await;
    assert_eq!(drain(&budget, Instant::now()), 5, "still in the window");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!budget.withdraw_at(Instant::now()), "10 s later: gone");

    // Retries taken leave the window too, and the floor is whole again.
    let budget = RetryBudget::new(WINDOW, 1, 0.0);
    assert_eq!(drain(&budget, Instant::now()), 10);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(!budget.withdraw_at(Instant::now()), "spent for this window");
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(drain(&budget, Instant::now()), 10);
}

#[tokio::test(start_paused = true)]
async fn the_window_slides_second_by_second() {
    let budget = RetryBudget::new(WINDOW, 0, 1.0);
    // One request in each of 20 seconds; at any time the last 10 seconds' count.
    for second in 0..20 {
        budget.deposit_at(Instant::now());
        let (requests, _) = budget.counts(Instant::now());
        assert_eq!(requests, (second + 1).min(10), "second {second}");
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    // 16 s later (a whole ring of seconds): every slot holds a second out of the window,
    // which counts as nothing, and is reused from zero.
    tokio::time::advance(Duration::from_secs(16)).await;
    assert_eq!(budget.counts(Instant::now()), (0, 0));
    budget.deposit_at(Instant::now());
    assert_eq!(budget.counts(Instant::now()), (1, 0));
}

#[test]
fn deposits_from_many_threads_all_count_and_racing_withdrawals_never_overdraw() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let budget = Arc::new(RetryBudget::new(WINDOW, 0, 0.25));
    let now = Instant::now();
    let threads = 8;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let budget = Arc::clone(&budget);
            scope.spawn(move || {
                for _ in 0..1000 {
                    budget.deposit_at(now);
                }
            });
        }
    });
    assert_eq!(budget.counts(now), (8000, 0));
    let granted = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..1000 {
                    if budget.withdraw_at(now) {
                        granted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(
        granted.load(Ordering::Relaxed),
        2000,
        "exactly 25 % of 8000"
    );
}

#[tokio::test(start_paused = true)]
async fn works_as_a_tower_budget() {
    let budget = RetryBudget::default();
    for _ in 0..10 {
        budget.deposit();
    }
    // The default: 10/s floor over 10 s, plus 20 % of 10 requests.
    let granted = (0..1000).take_while(|_| budget.withdraw()).count();
    assert_eq!(granted, 102);
    let debug = format!("{budget:?}");
    assert!(debug.contains("requests: 10"), "{debug}");
}
