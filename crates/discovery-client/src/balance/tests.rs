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
    eps[0]
        .breaker
        .try_acquire(now)
        .0
        .expect("closed")
        .record_failure(now);
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
        ep.breaker
            .try_acquire(now)
            .0
            .expect("closed")
            .record_failure(now);
    }
    assert!(rr.pick(&eps, now, |_| false, |_, _| {}).is_none());
    assert!(rr.pick(&[], now, |_| false, |_, _| {}).is_none());
}

#[tokio::test(start_paused = true)]
async fn retest_admits_one_probe_and_reports_the_transition() {
    let rr = Picker::new();
    let eps = endpoints(1);
    let now = Instant::now();
    eps[0]
        .breaker
        .try_acquire(now)
        .0
        .expect("closed")
        .record_failure(now);
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
