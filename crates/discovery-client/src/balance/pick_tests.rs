//! The picking rules on their own: [`Picker::pick`] over plain counts and answers.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::breaker::{Breaker, BreakerConfig, BreakerState, Transition};

fn counts(n: usize) -> Vec<Load> {
    (0..n).map(|_| Load::new(Instant::now())).collect()
}

/// Loads with these requests in flight (held by the guards returned with them).
fn holding(pending: &[usize]) -> (Vec<Load>, Vec<InFlightGuard>) {
    let loads = counts(pending.len());
    let guards = (0..pending.len())
        .flat_map(|i| (0..pending[i]).map(move |_| i))
        .map(|i| loads[i].start())
        .collect();
    (loads, guards)
}

/// Picks `times` times by `balance` over `counts` (the calling thread's), every candidate
/// granting.
fn picks(picker: &Picker, balance: Balance, counts: &[Load], times: usize) -> Vec<usize> {
    (0..times)
        .map(|_| {
            picker
                .pick(
                    balance,
                    counts.len(),
                    |i| &counts[i],
                    Instant::now(),
                    |_| Some(()),
                )
                .expect("every candidate grants")
                .0
        })
        .collect()
}

const RULES: [Balance; 4] = [
    Balance::LatencyAware,
    Balance::PowerOfTwoChoices,
    Balance::LeastPending,
    Balance::RoundRobin,
];

#[test]
fn every_rule_interleaves_ties_exactly() {
    for balance in RULES {
        let picker = Picker::new();
        let counts = counts(3);
        assert_eq!(
            picks(&picker, balance, &counts, 6),
            [0, 1, 2, 0, 1, 2],
            "idle, {balance:?}"
        );
        // Equal, non-zero counts are ties too.
        let _held: Vec<_> = counts.iter().map(Load::start).collect();
        assert_eq!(
            picks(&picker, balance, &counts, 6),
            [0, 1, 2, 0, 1, 2],
            "one each, {balance:?}"
        );
    }
}

#[test]
fn refusals_are_passed_over_without_being_charged_a_turn() {
    for balance in RULES {
        let picker = Picker::new();
        let counts = counts(3);
        let picks: Vec<usize> = (0..6)
            .map(|_| {
                picker
                    .pick(
                        balance,
                        3,
                        |i| &counts[i],
                        Instant::now(),
                        |i| (i != 0).then_some(()),
                    )
                    .expect("1 and 2 grant")
                    .0
            })
            .collect();
        assert_eq!(
            picks,
            [1, 2, 1, 2, 1, 2],
            "an even split between the others, {balance:?}"
        );
        let now = Instant::now();
        let none = picker.pick(balance, 3, |i| &counts[i], now, |_| None::<()>);
        assert!(none.is_none(), "{balance:?}");
        assert!(
            picker
                .pick(balance, 0, |i| &counts[i], now, |_| Some(()))
                .is_none()
        );
    }
}

#[test]
fn least_pending_passes_over_the_instance_with_more_in_flight() {
    let picker = Picker::new();
    let counts = counts(3);
    let _stuck = [counts[1].start(), counts[1].start()];
    let _one = counts[2].start();
    assert_eq!(
        picks(&picker, Balance::LeastPending, &counts, 4),
        [0, 0, 0, 0]
    );
    let _two = [counts[0].start(), counts[0].start()];
    // 0 and 1 hold 2 each, 2 holds 1: 2 gets it.
    assert_eq!(picks(&picker, Balance::LeastPending, &counts, 2), [2, 2]);
    // Plain round-robin ignores the counts.
    assert_eq!(picks(&picker, Balance::RoundRobin, &counts, 3).len(), 3);
    let rr: Vec<usize> = picks(&picker, Balance::RoundRobin, &counts, 6);
    assert!(
        (0..3).all(|i| rr.iter().filter(|&&p| p == i).count() == 2),
        "{rr:?}"
    );
}

#[test]
fn a_dropped_guard_counts_the_request_out() {
    let picker = Picker::new();
    let counts = counts(2);
    let guard = counts[0].start();
    let clone = counts[0].clone();
    assert_eq!(clone.in_flight(), 1, "clones share the count");
    assert_eq!(picks(&picker, Balance::LeastPending, &counts, 3), [1, 1, 1]);
    drop(guard);
    assert_eq!(counts[0].in_flight(), 0);
    let picks = picks(&picker, Balance::LeastPending, &counts, 4);
    assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 2, "{picks:?}");
}

#[test]
fn two_choices_never_takes_the_instance_with_the_most_in_flight() {
    let picker = Picker::new();
    let counts = counts(3);
    let _stuck = [counts[1].start(), counts[1].start()];
    let picks = picks(&picker, Balance::PowerOfTwoChoices, &counts, 300);
    assert!(!picks.contains(&1), "{picks:?}");
    // Its turns go to one of the others at random; the others' own turns stay theirs.
    let zeros = picks.iter().filter(|&&i| i == 0).count();
    assert!((100..=200).contains(&zeros), "{zeros} of 300 to instance 0");
}

#[test]
fn two_choices_passes_over_a_busier_turn_only_for_a_less_busy_one() {
    let picker = Picker::new();
    let counts = counts(2);
    // Two instances: the other candidate is always the one whose turn it is not.
    let _one = counts[0].start();
    assert_eq!(
        picks(&picker, Balance::PowerOfTwoChoices, &counts, 4),
        [1, 1, 1, 1]
    );
    let _two = counts[1].start();
    // 1 each: ties go to the turn.
    let picks = picks(&picker, Balance::PowerOfTwoChoices, &counts, 4);
    assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 2, "{picks:?}");
}

#[test]
fn each_candidate_is_asked_at_most_once_and_the_last_asked_is_taken() {
    for balance in RULES {
        let picker = Picker::new();
        let counts = counts(3);
        let _busy = counts[2].start();
        for _ in 0..30 {
            // Instance 0 refuses (an open breaker): the pick still lands, asking nobody twice.
            let mut asked = Vec::new();
            let picked = picker.pick(
                balance,
                3,
                |i| &counts[i],
                Instant::now(),
                |i| {
                    asked.push(i);
                    (i != 0).then_some(())
                },
            );
            let (index, ()) = picked.expect("1 and 2 grant");
            assert_ne!(index, 0);
            let mut unique = asked.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(
                unique.len(),
                asked.len(),
                "asked twice: {asked:?}, {balance:?}"
            );
            assert_eq!(asked.last(), Some(&index), "{balance:?}");
        }
        // Nobody grants: `None` at once, each asked once.
        let mut asked = Vec::new();
        let (idle, _) = holding(&[0, 0, 0]);
        let none = picker.pick(
            balance,
            3,
            |i| &idle[i],
            Instant::now(),
            |i| -> Option<()> {
                asked.push(i);
                None
            },
        );
        assert!(none.is_none());
        asked.sort_unstable();
        assert_eq!(asked, [0, 1, 2], "{balance:?}");
    }
}

#[test]
fn least_pending_asks_only_about_the_candidate_it_takes_then_fewest_first() {
    let picker = Picker::new();
    let (loads, _held) = holding(&[3, 0, 1, 2]);
    let mut asked = Vec::new();
    let picked = picker.pick(
        Balance::LeastPending,
        4,
        |i| &loads[i],
        Instant::now(),
        |i| {
            asked.push(i);
            Some(i)
        },
    );
    assert_eq!(picked, Some((1, 1)));
    assert_eq!(asked, [1], "nobody else was asked for a permit");
    asked.clear();
    let picked = picker.pick(
        Balance::LeastPending,
        4,
        |i| &loads[i],
        Instant::now(),
        |i| {
            asked.push(i);
            (i == 0).then_some(())
        },
    );
    assert_eq!(picked, Some((0, ())));
    assert_eq!(asked, [1, 2, 3, 0], "fewest first");
}

#[test]
fn every_thread_shares_one_turn_and_one_count() {
    let picker = Picker::new();
    let counts = counts(3);
    let pick = || picks(&picker, Balance::LeastPending, &counts, 1)[0];
    assert_eq!(pick(), 0);
    let theirs = std::thread::scope(|scope| scope.spawn(|| (pick(), pick())).join());
    assert_eq!(
        theirs.expect("no panic"),
        (1, 2),
        "one turn for all threads"
    );
    assert_eq!(pick(), 0);
    // A request counted on another thread, and counted out on this one.
    let held = std::thread::scope(|scope| scope.spawn(|| counts[1].start()).join());
    let held = held.expect("no panic");
    assert_eq!(counts[1].in_flight(), 1);
    assert_eq!(picks(&picker, Balance::LeastPending, &counts, 2), [2, 0]);
    drop(held);
    assert_eq!(counts[1].in_flight(), 0);
}

/// An instance whose breaker is Open and whose retest time has come, still holding requests
/// from before it opened, is passed over for an idle one without being asked: its probe
/// stays for later.
#[tokio::test(start_paused = true)]
async fn a_busier_instance_in_retest_keeps_its_probe() {
    let picker = Picker::new();
    let breakers: Vec<Arc<Breaker>> = (0..2)
        .map(|_| Arc::new(Breaker::new(BreakerConfig::default())))
        .collect();
    let counts = counts(2);
    let now = Instant::now();
    breakers[0]
        .try_acquire(now)
        .0
        .expect("closed")
        .record_failure(now);
    let _old = [counts[0].start(), counts[0].start()];
    tokio::time::advance(Duration::from_secs(30)).await;
    let now = Instant::now();
    for _ in 0..3 {
        let (index, permit) = picker
            .pick(
                Balance::LeastPending,
                2,
                |i| &counts[i],
                now,
                |i| breakers[i].try_acquire(now).0,
            )
            .expect("2 grants");
        assert_eq!(index, 1);
        let _ = permit.record_success(now);
    }
    assert_eq!(
        breakers[0].state(),
        BreakerState::Open,
        "never asked: not even moved to Retest"
    );
    let (probe, transition) = breakers[0].try_acquire(now);
    assert!(probe.expect("the probe is still there").is_probe());
    assert_eq!(transition, Some(Transition::Retesting));
}

/// Loads whose estimates are these answer times (the first answer is left out, and an
/// estimate counts after [`TRUSTED_AFTER`](super::load::TRUSTED_AFTER) more).
fn answering(millis: &[u64]) -> Vec<Load> {
    let now = Instant::now();
    let loads = counts(millis.len());
    for (load, &ms) in loads.iter().zip(millis) {
        for _ in 0..=super::load::TRUSTED_AFTER {
            load.observe(Duration::from_millis(ms), now);
        }
    }
    loads
}

#[test]
fn latency_aware_gives_a_slow_instance_its_exact_trickle() {
    let picker = Picker::new();
    // 1/256 of a full share: one turn in 256 offered, i.e. one pick in 513.
    let loads = answering(&[1, 1, 20]);
    let picks = picks(&picker, Balance::LatencyAware, &loads, 513 * 10);
    let slow = picks.iter().filter(|&&i| i == 2).count();
    assert_eq!(slow, 10, "one in 513");
    // The others alternate exactly between its turns.
    let others: Vec<usize> = picks.iter().copied().filter(|&i| i != 2).take(8).collect();
    assert_eq!(others, [0, 1, 0, 1, 0, 1, 0, 1]);
}

#[test]
fn latency_aware_shares_fall_with_the_sixth_power_of_the_slowdown() {
    // The tolerance is 1 ms + 25 % of the fastest (4 ms): 6 ms. An instance at 7 ms is 7/6
    // of that: (6 / 7)^6 of a share, about 0.4.
    let picker = Picker::new();
    let loads = answering(&[4, 6, 7]);
    let window = picks(&picker, Balance::LatencyAware, &loads, 3000);
    let count = |i: usize| window.iter().filter(|&&p| p == i).count();
    assert_eq!(
        count(0),
        count(1),
        "within the tolerance: a full share each"
    );
    let expected = (6.0f64 / 7.0).powi(6);
    let got = count(2) as f64 / count(0) as f64;
    assert!(
        (got - expected).abs() < 0.01,
        "{got:.3} of a share, expected {expected:.3}"
    );
}

#[test]
fn latency_aware_falls_back_to_the_largest_share_when_the_turn_refuses() {
    let picker = Picker::new();
    let loads = answering(&[1, 1, 20]);
    // Instance 0's breaker is open: instance 1 takes the calls, not the slow one.
    for _ in 0..50 {
        let (index, ()) = picker
            .pick(
                Balance::LatencyAware,
                3,
                |i| &loads[i],
                Instant::now(),
                |i| (i != 0).then_some(()),
            )
            .expect("1 and 2 grant");
        assert_eq!(index, 1);
    }
}

/// Picks `times` times by [`Balance::LatencyAware`] over `loads`, no call answering: every
/// pick stays in flight. How many each instance got.
fn burst(picker: &Picker, loads: &[Load], times: usize) -> Vec<usize> {
    let mut held = Vec::new();
    let mut count = vec![0; loads.len()];
    for _ in 0..times {
        let (index, ()) = picker
            .pick(
                Balance::LatencyAware,
                loads.len(),
                |i| &loads[i],
                Instant::now(),
                |_| Some(()),
            )
            .expect("every candidate grants");
        held.push(loads[index].start());
        count[index] += 1;
    }
    count
}

#[test]
fn latency_aware_spreads_a_burst_by_expected_wait() {
    // 2 ms against 5 ms: idle, the slower one has (3.5 / 5)^6, about 12 % of a share.
    // Under a burst of 200 it takes turns once 2 ms × (in flight + 1) exceeds its own
    // 5 ms × (in flight + 1): about 57 of them, not 200 × 12 / 112 ≈ 21.
    let split = burst(&Picker::new(), &answering(&[2, 5]), 200);
    assert!((50..=65).contains(&split[1]), "{split:?}");
    // A gray failure (20 times slower) still gets only what the wait makes worth it: one in
    // about 21.
    let split = burst(&Picker::new(), &answering(&[1, 20]), 200);
    assert!((7..=12).contains(&split[1]), "{split:?}");
    // Equally quick: an even split.
    let split = burst(&Picker::new(), &answering(&[3, 3]), 200);
    assert_eq!(split, [100, 100]);
}

#[tokio::test(start_paused = true)]
async fn latency_aware_does_not_spread_a_burst_onto_an_instance_ramping_up() {
    let loads = answering(&[1, 1]);
    // Instance 0 has ramped up; instance 1's breaker closed a moment ago (its ramp
    // restarted): a tenth of a share, however many calls instance 0 holds.
    tokio::time::advance(Duration::from_secs(11)).await;
    loads[1].restart_ramp(Instant::now());
    let picker = Picker::with_slow_start(Some(Duration::from_secs(10)));
    let count = burst(&picker, &loads, 220);
    // A tenth of the turns (a tenth of a share, rounded down in fixed point).
    assert!((18..=20).contains(&count[1]), "{count:?}");
}
