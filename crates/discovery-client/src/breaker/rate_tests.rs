//! [`FailurePolicy::FailureRate`] in the state machine, on paused time.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

const RETEST: Duration = Duration::from_secs(1);

fn rate_breaker(ratio: f64, min_requests: u32, window: Duration) -> Arc<Breaker> {
    Arc::new(Breaker::new(BreakerConfig {
        policy: FailurePolicy::FailureRate(FailureRate {
            ratio,
            min_requests,
            window,
        }),
        retest_delay: RETEST,
        ..BreakerConfig::default()
    }))
}

/// Records one outcome at `now`; the transition it caused.
fn outcome(b: &Arc<Breaker>, failed: bool, now: Instant) -> Option<Transition> {
    let (permit, _) = b.try_acquire(now);
    permit.expect("admitted").record(!failed, now)
}

fn opened(t: Option<Transition>) -> bool {
    matches!(t, Some(Transition::Opened { .. }))
}

#[tokio::test(start_paused = true)]
async fn opens_at_the_min_requests_th_outcome_when_the_ratio_is_reached_not_before() {
    let b = rate_breaker(0.5, 4, Duration::from_secs(10));
    let now = Instant::now();
    for _ in 0..3 {
        assert_eq!(outcome(&b, true, now), None, "fewer than min_requests");
    }
    assert_eq!(b.state(), BreakerState::Closed);
    // The fourth outcome, a success: 3 failures of 4 ≥ 0.5.
    assert_eq!(
        outcome(&b, false, now),
        Some(Transition::Opened {
            retest_at: now + RETEST
        })
    );
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn opens_when_the_ratio_is_reached_exactly_and_not_below_it() {
    let ten = Duration::from_secs(10);
    let now = Instant::now();
    // 3 of 10 against 0.3: opens at the tenth outcome.
    let b = rate_breaker(0.3, 10, ten);
    for failed in [false, false, false, false, false, false, false, true, true] {
        assert_eq!(outcome(&b, failed, now), None);
    }
    assert!(opened(outcome(&b, true, now)));
    // 2 of 10, 2 of 11, 3 of 12: below 0.3; 4 of 13 (0.307) opens.
    let b = rate_breaker(0.3, 10, ten);
    for failed in [
        false, false, false, false, false, false, false, false, true, true,
    ] {
        assert_eq!(outcome(&b, failed, now), None, "0.2");
    }
    assert_eq!(outcome(&b, false, now), None, "2 of 11");
    assert_eq!(outcome(&b, true, now), None, "3 of 12 = 0.25");
    assert!(opened(outcome(&b, true, now)), "4 of 13");
}

#[tokio::test(start_paused = true)]
async fn outcomes_older_than_the_window_no_longer_count() {
    let window = Duration::from_secs(10);
    // Three failures at the start, the fourth just before the first bucket leaves: open.
    let b = rate_breaker(0.5, 4, window);
    for _ in 0..3 {
        assert_eq!(outcome(&b, true, Instant::now()), None);
    }
    tokio::time::advance(window - Duration::from_millis(1)).await;
    assert!(opened(outcome(&b, true, Instant::now())));
    // The same, the fourth once the window has moved past the first three: one outcome.
    let b = rate_breaker(0.5, 4, window);
    for _ in 0..3 {
        assert_eq!(outcome(&b, true, Instant::now()), None);
    }
    tokio::time::advance(window).await;
    for _ in 0..3 {
        assert_eq!(outcome(&b, true, Instant::now()), None, "the old ones left");
    }
    assert!(opened(outcome(&b, true, Instant::now())));
}

/// S, S, F, S, S, F, ...: never two failures in a row, a third of calls failing.
#[tokio::test(start_paused = true)]
async fn a_one_in_three_failing_sequence_opens_a_rate_of_a_quarter_never_two_in_a_row() {
    let sequence = |n: usize| (0..n).map(|i| i % 3 == 2);
    let consecutive = Arc::new(Breaker::new(BreakerConfig {
        policy: FailurePolicy::ConsecutiveFailures(2),
        retest_delay: RETEST,
        ..BreakerConfig::default()
    }));
    for failed in sequence(300) {
        assert_eq!(outcome(&consecutive, failed, Instant::now()), None);
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    assert_eq!(consecutive.state(), BreakerState::Closed);

    let rate = rate_breaker(0.25, 10, Duration::from_secs(10));
    let mut opened_at = None;
    for (i, failed) in sequence(300).enumerate() {
        if rate.state() != BreakerState::Closed {
            break;
        }
        if opened(outcome(&rate, failed, Instant::now())) {
            opened_at = Some(i + 1);
        }
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    // Outcome 10 (a success): 3 failures of 10 ≥ 0.25.
    assert_eq!(opened_at, Some(10));
    assert_eq!(rate.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn probes_work_as_before_and_the_window_starts_empty_on_close() {
    let b = rate_breaker(0.5, 4, Duration::from_secs(10));
    for _ in 0..4 {
        outcome(&b, true, Instant::now());
    }
    assert_eq!(b.state(), BreakerState::Open);
    // One probe at a time; a failed probe reopens at once, whatever the window says.
    tokio::time::advance(RETEST).await;
    let now = Instant::now();
    let (probe, t) = b.try_acquire(now);
    assert_eq!(t, Some(Transition::Retesting));
    let probe = probe.expect("probe");
    assert!(probe.is_probe());
    assert!(b.try_acquire(now).0.is_none(), "one probe at a time");
    assert!(opened(probe.record_failure(now)));
    // A successful probe closes it.
    tokio::time::advance(RETEST).await;
    let now = Instant::now();
    let probe = b.try_acquire(now).0.expect("probe");
    assert_eq!(probe.record_success(now), Some(Transition::Closed));
    // The failures before the close (all within 10 s) are forgotten: it takes four again.
    for _ in 0..3 {
        assert_eq!(outcome(&b, true, Instant::now()), None);
    }
    assert!(opened(outcome(&b, true, Instant::now())));
}
