use std::time::Duration;

use std::sync::Arc;

use tokio::time::Instant;

use super::*;
use crate::Instance;
use crate::breaker::{Breaker, Transition};
use crate::breaker::{BreakerConfig, BreakerState};

fn endpoints(n: usize) -> Vec<Endpoint> {
    (1..=n)
        .map(|i| Endpoint {
            instance: Instance::new(i.to_string(), format!("http://127.0.0.1:800{i}")),
            breaker: Arc::new(Breaker::new(BreakerConfig {
                failure_limit: 1,
                retest_delay: Duration::from_secs(30),
                ..BreakerConfig::default()
            })),
        })
        .collect()
}

/// Opens `breaker` (failure limit 1) with one recorded failure.
fn open(breaker: &Arc<Breaker>, now: Instant) {
    breaker
        .try_acquire(now)
        .0
        .expect("closed")
        .record_failure(now);
}

fn pick_ids(rr: &Picker, eps: &[Endpoint], times: usize) -> Vec<String> {
    (0..times)
        .map(|_| {
            let (ep, permit) = rr
                .pick(eps, Instant::now(), |_| false, |_, _| {})
                .expect("someone admits");
            permit.record_success(Instant::now());
            ep.instance.id.clone()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn interleaves_across_instances() {
    let rr = Picker::new();
    let eps = endpoints(3);
    assert_eq!(pick_ids(&rr, &eps, 6), ["1", "2", "3", "1", "2", "3"]);
}

#[tokio::test(start_paused = true)]
async fn skips_open_breakers_and_keeps_the_rest_even() {
    let rr = Picker::new();
    let eps = endpoints(3);
    let now = Instant::now();
    open(&eps[0].breaker, now);
    assert_eq!(eps[0].breaker.state(), BreakerState::Open);
    let ids = pick_ids(&rr, &eps, 6);
    assert!(!ids.contains(&"1".to_string()), "{ids:?}");
    let twos = ids.iter().filter(|id| *id == "2").count();
    assert_eq!(twos, 3, "even split between 2 and 3: {ids:?}");
}

#[tokio::test(start_paused = true)]
async fn none_when_every_breaker_is_open_and_no_hang() {
    let rr = Picker::new();
    let eps = endpoints(2);
    let now = Instant::now();
    for ep in &eps {
        open(&ep.breaker, now);
    }
    assert!(rr.pick(&eps, now, |_| false, |_, _| {}).is_none());
    assert!(rr.pick(&[], now, |_| false, |_, _| {}).is_none());
}

#[tokio::test(start_paused = true)]
async fn retest_admits_one_probe_and_reports_the_transition() {
    let rr = Picker::new();
    let eps = endpoints(1);
    let now = Instant::now();
    open(&eps[0].breaker, now);
    tokio::time::advance(Duration::from_secs(30)).await;
    let mut seen = Vec::new();
    let first = rr.pick(
        &eps,
        Instant::now(),
        |_| false,
        |ep, t| seen.push((ep.instance.id.clone(), t)),
    );
    let (_, probe) = first.expect("probe admitted");
    assert!(probe.is_probe());
    assert_eq!(seen, vec![("1".to_string(), Transition::Retesting)]);
    assert!(
        rr.pick(&eps, Instant::now(), |_| false, |_, _| {})
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn skip_excludes_already_tried_instances() {
    let rr = Picker::new();
    let eps = endpoints(2);
    for _ in 0..4 {
        let (ep, _) = rr
            .pick(&eps, Instant::now(), |ep| ep.instance.id == "1", |_, _| {})
            .expect("2 admits");
        assert_eq!(ep.instance.id, "2");
    }
}

/// Picks `times` times over `counts` (each thread's own), every candidate admitting: with
/// least-pending, or with two choices.
fn picks_by(rr: &Picker, counts: &[InFlight], times: usize, two_choices: bool) -> Vec<usize> {
    let pending = |i: usize| counts[i].get_local();
    (0..times)
        .map(|_| {
            let picked = if two_choices {
                rr.pick_two_choices(counts.len(), pending, |_| Some(()))
            } else {
                rr.pick_least_pending(counts.len(), pending, |_| Some(()))
            };
            picked.expect("someone admits").0
        })
        .collect()
}

fn least_pending(rr: &Picker, counts: &[InFlight], times: usize) -> Vec<usize> {
    picks_by(rr, counts, times, false)
}

fn two_choices(rr: &Picker, counts: &[InFlight], times: usize) -> Vec<usize> {
    picks_by(rr, counts, times, true)
}

#[test]
fn both_rules_interleave_ties_exactly() {
    for two_choices in [false, true] {
        let rr = Picker::new();
        let counts: Vec<InFlight> = (0..3).map(|_| InFlight::new()).collect();
        let picks = |n| picks_by(&rr, &counts, n, two_choices);
        assert_eq!(
            picks(6),
            [0, 1, 2, 0, 1, 2],
            "idle, two choices: {two_choices}"
        );
        // Equal, non-zero counts are ties too.
        let _held: Vec<_> = counts.iter().map(InFlight::start).collect();
        assert_eq!(
            picks(6),
            [0, 1, 2, 0, 1, 2],
            "one each, two choices: {two_choices}"
        );
    }
}

#[test]
fn least_pending_passes_over_the_instance_with_more_in_flight() {
    let rr = Picker::new();
    let counts: Vec<InFlight> = (0..3).map(|_| InFlight::new()).collect();
    let _stuck = [counts[1].start(), counts[1].start()];
    let _one = counts[2].start();
    assert_eq!(least_pending(&rr, &counts, 4), [0, 0, 0, 0]);
    let _two = counts[0].start();
    let _three = counts[0].start();
    // 0 and 1 hold 2 each, 2 holds 1: 2 gets it.
    assert_eq!(least_pending(&rr, &counts, 2), [2, 2]);
}

#[test]
fn a_dropped_guard_counts_the_request_out() {
    let rr = Picker::new();
    let counts: Vec<InFlight> = (0..2).map(|_| InFlight::new()).collect();
    let guard = counts[0].start();
    let clone = counts[0].clone();
    assert_eq!(clone.get(), 1, "clones share the count");
    assert_eq!(least_pending(&rr, &counts, 3), [1, 1, 1]);
    drop(guard);
    assert_eq!(counts[0].get(), 0);
    let picks = least_pending(&rr, &counts, 4);
    assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 2, "{picks:?}");
}

/// Runs `work` on a new thread whose stripe differs from `other`'s (the next thread almost
/// always does; at most `STRIPES` threads are tried).
fn on_another_stripe<T: Send>(other: usize, work: impl Fn() -> T + Sync) -> T {
    for _ in 0..crate::stripe::STRIPES {
        let answer = std::thread::scope(|scope| {
            scope
                .spawn(|| (crate::stripe::current() != other).then(&work))
                .join()
                .expect("no panic")
        });
        if let Some(answer) = answer {
            return answer;
        }
    }
    panic!("every new thread got stripe {other}");
}

#[test]
fn each_thread_goes_round_in_its_own_order() {
    let rr = Picker::new();
    let all = |i: usize| Some(i);
    let picks = |n: usize| -> Vec<usize> {
        (0..n)
            .map(|_| rr.pick_with(3, all).expect("all admit").0)
            .collect()
    };
    assert_eq!(picks(4), [0, 1, 2, 0], "this thread");
    // Another thread starts its own turn, and does not move this thread's.
    let theirs = on_another_stripe(crate::stripe::current(), || picks(4));
    assert_eq!(theirs, [0, 1, 2, 0], "another thread");
    assert_eq!(picks(2), [1, 2], "this thread again, where it left off");
}

#[test]
fn in_flight_counts_per_thread_and_out_where_it_was_counted() {
    let rr = Picker::new();
    let counts: Vec<InFlight> = (0..3).map(|_| InFlight::new()).collect();
    let here = crate::stripe::current();
    // This thread's requests wait on instance 0: this thread passes it over.
    let stuck = [counts[0].start(), counts[0].start()];
    let local = |i: usize| counts[i].get_local();
    let mine = || {
        (0..2)
            .map(|_| rr.pick_least_pending(3, local, |_| Some(())).unwrap().0)
            .collect::<Vec<_>>()
    };
    assert_eq!(mine(), [1, 2]);
    // Another thread has nothing in flight anywhere: instance 0 is as good as any to it.
    let (theirs, seen) = on_another_stripe(here, || {
        let first = rr.pick_least_pending(3, local, |_| Some(())).unwrap().0;
        (first, (counts[0].get_local(), counts[0].get()))
    });
    assert_eq!(
        theirs, 0,
        "another thread's turn, with no requests of its own waiting"
    );
    assert_eq!(seen, (0, 2), "its own count, and the total");
    // A guard dropped on another thread counts out of this thread's count.
    let [first, second] = stuck;
    std::thread::scope(|scope| scope.spawn(move || drop(first)).join().unwrap());
    assert_eq!((counts[0].get_local(), counts[0].get()), (1, 1));
    drop(second);
    assert_eq!((counts[0].get_local(), counts[0].get()), (0, 0));
    let borrowed = counts[1].start_ref();
    assert_eq!(counts[1].get(), 1, "a borrowing guard counts the same");
    drop(borrowed);
    assert_eq!(counts[1].get(), 0);
}

#[test]
fn two_choices_never_takes_the_instance_with_the_most_in_flight() {
    let rr = Picker::new();
    let counts: Vec<InFlight> = (0..3).map(|_| InFlight::new()).collect();
    let _stuck = [counts[1].start(), counts[1].start()];
    let picks = two_choices(&rr, &counts, 300);
    assert!(!picks.contains(&1), "{picks:?}");
    // Its turns go to one of the others at random; the others' own turns stay theirs.
    let zeros = picks.iter().filter(|&&i| i == 0).count();
    assert!((100..=200).contains(&zeros), "{zeros} of 300 to instance 0");
}

#[test]
fn two_choices_passes_over_a_busier_turn_only_for_a_less_busy_one() {
    let rr = Picker::new();
    let counts: Vec<InFlight> = (0..2).map(|_| InFlight::new()).collect();
    // Two instances: the other candidate is always the one whose turn it is not.
    let _one = counts[0].start();
    assert_eq!(two_choices(&rr, &counts, 4), [1, 1, 1, 1]);
    let _two = counts[1].start();
    // 1 each: ties go to the turn.
    let picks = two_choices(&rr, &counts, 4);
    assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 2, "{picks:?}");
}

#[test]
fn two_choices_asks_admit_once_per_candidate_and_falls_back_to_the_rest() {
    let rr = Picker::new();
    let counts: Vec<InFlight> = (0..3).map(|_| InFlight::new()).collect();
    for _ in 0..30 {
        // Instance 0 refuses (an open breaker): the pick still lands, asking nobody twice.
        let mut asked = Vec::new();
        let picked = rr.pick_two_choices(
            3,
            |i| counts[i].get_local(),
            |i| {
                asked.push(i);
                (i != 0).then_some(())
            },
        );
        let (index, ()) = picked.expect("1 and 2 admit");
        assert_ne!(index, 0);
        let mut unique = asked.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), asked.len(), "asked twice: {asked:?}");
        assert_eq!(
            asked.last(),
            Some(&index),
            "the last asked is the one taken"
        );
    }
    // Nobody admits: `None` at once, each asked once.
    let mut asked = Vec::new();
    let none = rr.pick_two_choices(
        3,
        |_| 0,
        |i| -> Option<()> {
            asked.push(i);
            None
        },
    );
    assert!(none.is_none());
    asked.sort_unstable();
    assert_eq!(asked, [0, 1, 2]);
}

#[test]
fn least_pending_asks_admit_only_about_the_candidate_it_takes() {
    let rr = Picker::new();
    let pending = [3, 0, 1];
    let mut asked = Vec::new();
    let picked = rr.pick_least_pending(
        3,
        |i| pending[i],
        |i| {
            asked.push(i);
            Some(i)
        },
    );
    assert_eq!(picked, Some((1, 1)));
    assert_eq!(asked, [1], "nobody else was asked for leave");
}

#[test]
fn least_pending_falls_back_fewest_first_and_asks_each_once() {
    let rr = Picker::new();
    let pending = [3, 0, 1, 2];
    let mut asked = Vec::new();
    let picked = rr.pick_least_pending(
        4,
        |i| pending[i],
        |i| {
            asked.push(i);
            (i == 0).then_some(())
        },
    );
    assert_eq!(picked, Some((0, ())));
    assert_eq!(asked, [1, 2, 3, 0]);
    asked.clear();
    let none = rr.pick_least_pending(
        4,
        |i| pending[i],
        |i| {
            asked.push(i);
            None::<()>
        },
    );
    assert_eq!(none, None);
    assert_eq!(asked, [1, 2, 3, 0], "every candidate asked exactly once");
    assert_eq!(rr.pick_least_pending(0, |_| 0, |_| Some(())), None);
}

#[tokio::test(start_paused = true)]
async fn a_busier_instance_in_retest_keeps_its_probe() {
    let rr = Picker::new();
    let eps = endpoints(2);
    let counts: Vec<InFlight> = (0..2).map(|_| InFlight::new()).collect();
    let now = Instant::now();
    open(&eps[0].breaker, now);
    // Requests admitted before it opened are still out on instance 1.
    let _old = [counts[0].start(), counts[0].start()];
    tokio::time::advance(Duration::from_secs(30)).await;
    let now = Instant::now();
    for _ in 0..3 {
        let (index, permit) = rr
            .pick_least_pending(
                2,
                |i| counts[i].get(),
                |i| eps[i].breaker.try_acquire(now).0,
            )
            .expect("2 admits");
        assert_eq!(index, 1);
        permit.record_success(now);
    }
    assert_eq!(
        eps[0].breaker.state(),
        BreakerState::Open,
        "never asked: not even moved to Retest"
    );
    let (probe, transition) = eps[0].breaker.try_acquire(now);
    assert!(probe.expect("the probe is still there").is_probe());
    assert_eq!(transition, Some(Transition::Retesting));
}
