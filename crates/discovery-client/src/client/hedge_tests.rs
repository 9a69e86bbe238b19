//! Hedged requests against real HTTP servers on loopback port 0 (real time: the fakes answer
//! over sockets, which paused time would skip past).

use std::sync::atomic::Ordering;

use super::tests::{
    FAIL, Fake, HANG, OK, Rating, SLOW, SLOW_FAIL, client, fakes, next_breaker_event,
};
use super::*;
use crate::breaker::BreakerState;

/// The per-attempt timeout of these tests: long enough that waiting for it is unmistakable.
const TIMEOUT: Duration = Duration::from_millis(1000);
/// The hedge delay of these tests.
const HEDGE: Duration = Duration::from_millis(50);
/// Generous bound for "about the hedge delay plus a loopback answer", far below `TIMEOUT`.
const QUICK: Duration = Duration::from_millis(400);

fn hits(fakes: &[Arc<Fake>]) -> Vec<usize> {
    fakes
        .iter()
        .map(|f| f.hits.load(Ordering::SeqCst))
        .collect()
}

/// Sends `method` until a call reaches `fakes[0]` (at most four calls: round-robin over two
/// instances); returns that call's result, how long it took, and the hits of every fake just
/// before it.
async fn call_until_first_is_hit(
    c: &ServiceClient,
    fakes: &[Arc<Fake>],
    method: Method,
) -> (Result<Response, Error>, Duration, Vec<usize>) {
    for _ in 0..4 {
        let before = hits(fakes);
        let started = Instant::now();
        let result = c.send(method.clone(), "/ratings/widget", None).await;
        let took = started.elapsed();
        if hits(fakes)[0] > before[0] {
            return (result, took, before);
        }
    }
    panic!("no call reached instance 1: {:?}", hits(fakes));
}

/// Two instances, the first hanging: calls that reach it are answered by the second after
/// the hedge delay, never after the timeout.
#[tokio::test]
async fn a_hanging_instance_is_hedged_after_the_delay() {
    use crate::test_metrics::{TestRecorder, key};
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (addresses, fakes) = fakes(2).await;
    fakes[0].mode.store(HANG, Ordering::SeqCst);
    let c = client(&addresses)
        .timeout(TIMEOUT)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let (result, took, before) = call_until_first_is_hit(&c, &fakes, Method::GET).await;
    let answer = result.expect("the hedge answers");
    let rating: Rating = answer.into_json().expect("json");
    assert_eq!(rating.instance, 2, "answered by the healthy instance");
    assert!(took >= HEDGE && took < QUICK, "{took:?}");
    assert_eq!(hits(&fakes)[1], before[1] + 1, "exactly one hedge");
    // get_json too (the body check runs on the hedge's answer).
    for _ in 0..4 {
        let started = Instant::now();
        let rating: Rating = c.get_json("/ratings/widget").await.expect("rating");
        assert_eq!(rating.instance, 2);
        assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
    }
    // Those went to instance 2 unhedged: instance 1 still counts the overtaken attempt in
    // flight. One hedge in all, and it won; nothing counted as a retry.
    let counter = |name, labels: &[(&str, &str)]| recorder.counter(&key(name, labels));
    let hedges = |result| {
        counter(
            "discovery_client_hedges_total",
            &[("service", "ratings"), ("result", result)],
        )
    };
    assert_eq!((hedges("won"), hedges("lost")), (1, 0));
    assert_eq!(
        counter("discovery_client_retries_total", &[("service", "ratings")]),
        0
    );
}

/// The attempt the hedge overtook is not cancelled: it keeps counting as in flight and, when
/// its timeout ends it, its failure opens the hanging instance's breaker.
#[tokio::test]
async fn the_overtaken_attempt_still_opens_its_breaker() {
    let (addresses, fakes) = fakes(2).await;
    fakes[0].mode.store(HANG, Ordering::SeqCst);
    let timeout = Duration::from_millis(300);
    let c = client(&addresses)
        .timeout(timeout)
        .retest_delay(Duration::from_secs(30))
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let mut events = c.subscribe();
    let started = Instant::now();
    let (result, took, _) = call_until_first_is_hit(&c, &fakes, Method::GET).await;
    result.expect("the hedge answers");
    assert!(took < timeout, "{took:?}");
    let endpoints = c.inner.known_endpoints().expect("endpoints");
    assert_eq!(
        endpoints[0].in_flight.get(),
        1,
        "the overtaken attempt is still in flight"
    );
    assert_eq!(endpoints[1].in_flight.get(), 0, "the hedge that won ended");
    assert_eq!(c.instances()[0].state, BreakerState::Closed);
    match next_breaker_event(&mut events).await {
        Event::BreakerOpened { address, .. } => assert_eq!(address, addresses[0]),
        other => panic!("expected instance 1 to open, got {other:?}"),
    }
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    assert_eq!(c.instances()[0].state, BreakerState::Open);
    assert_eq!(endpoints[0].in_flight.get(), 0, "the attempt ended");
    assert_eq!(c.instances()[1].state, BreakerState::Closed);
}

/// When one of the two racing attempts fails, the call waits for the other instead of
/// retrying or failing: one attempt on each instance, the slow success is the answer.
#[tokio::test]
async fn a_failure_in_the_race_waits_for_the_other_attempt() {
    let (addresses, fakes) = fakes(2).await;
    fakes[0].mode.store(SLOW_FAIL, Ordering::SeqCst);
    fakes[1].mode.store(SLOW, Ordering::SeqCst);
    let c = client(&addresses)
        .timeout(TIMEOUT)
        .retest_delay(Duration::from_secs(30))
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let started = Instant::now();
    let rating: Rating = c.get_json("/ratings/widget").await.expect("rating");
    let took = started.elapsed();
    assert_eq!(rating.instance, 2);
    assert_eq!(hits(&fakes), vec![1, 1], "one attempt each, no retry");
    assert!(
        took >= Duration::from_millis(300) && took < TIMEOUT,
        "{took:?}"
    );
    assert_eq!(c.instances()[0].state, BreakerState::Open);
    assert_eq!(c.instances()[1].state, BreakerState::Closed);
    let endpoints = c.inner.known_endpoints().expect("endpoints");
    assert_eq!(endpoints[0].in_flight.get(), 0);
    assert_eq!(endpoints[1].in_flight.get(), 0);
}

/// With the retry budget spent, an attempt on a hanging instance waits for its timeout: no
/// hedge, and no retry either.
#[tokio::test]
async fn no_hedge_once_the_budget_is_spent() {
    let (addresses, fakes) = fakes(2).await;
    for f in &fakes {
        f.mode.store(FAIL, Ordering::SeqCst);
    }
    let timeout = Duration::from_millis(300);
    let c = client(&addresses)
        .timeout(timeout)
        .failure_limit(1000)
        .retry_budget(0.0)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    // The budget's floor allows 100 retries in its 10 s window; 200 failing calls with two
    // retries each spend it.
    for _ in 0..200 {
        let _ = c.get_json::<Rating>("/ratings/widget").await;
    }
    fakes[0].mode.store(HANG, Ordering::SeqCst);
    fakes[1].mode.store(OK, Ordering::SeqCst);
    let (result, took, before) = call_until_first_is_hit(&c, &fakes, Method::GET).await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert!(took >= timeout, "{took:?}");
    assert_eq!(hits(&fakes)[1], before[1], "no hedge without budget");
}

/// Hedging off: a call that reaches the hanging instance waits for the timeout before it is
/// retried elsewhere.
#[tokio::test]
async fn without_hedging_a_hanging_instance_costs_the_timeout() {
    let (addresses, fakes) = fakes(2).await;
    fakes[0].mode.store(HANG, Ordering::SeqCst);
    let timeout = Duration::from_millis(300);
    let c = client(&addresses)
        .timeout(timeout)
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    let (result, took, before) = call_until_first_is_hit(&c, &fakes, Method::GET).await;
    result.expect("the retry answers");
    assert!(took >= timeout, "{took:?}");
    assert_eq!(
        hits(&fakes)[1],
        before[1] + 1,
        "one retry after the timeout"
    );
}

/// A POST is not hedged, unless non-idempotent requests may be retried.
#[tokio::test]
async fn non_idempotent_requests_are_not_hedged_unless_allowed() {
    let (addresses, fakes) = fakes(2).await;
    fakes[0].mode.store(HANG, Ordering::SeqCst);
    let timeout = Duration::from_millis(300);
    let c = client(&addresses)
        .timeout(timeout)
        .failure_limit(1000)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let (result, took, before) = call_until_first_is_hit(&c, &fakes, Method::POST).await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert!(took >= timeout, "{took:?}");
    assert_eq!(hits(&fakes)[1], before[1], "a POST is not hedged");

    let c = client(&addresses)
        .timeout(timeout)
        .failure_limit(1000)
        .retry_non_idempotent(true)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let (result, took, before) = call_until_first_is_hit(&c, &fakes, Method::POST).await;
    result.expect("the hedge answers");
    assert!(took < timeout, "{took:?}");
    assert_eq!(hits(&fakes)[1], before[1] + 1, "allowed: hedged");
}

/// A hedge counts against `max_retries`: with none allowed, nothing is hedged.
#[tokio::test]
async fn a_hedge_counts_against_max_retries() {
    let (addresses, fakes) = fakes(2).await;
    fakes[0].mode.store(HANG, Ordering::SeqCst);
    let timeout = Duration::from_millis(300);
    let c = client(&addresses)
        .timeout(timeout)
        .max_retries(0)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let (result, took, before) = call_until_first_is_hit(&c, &fakes, Method::GET).await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert!(took >= timeout, "{took:?}");
    assert_eq!(hits(&fakes)[1], before[1]);
}

/// Instances that answer well within the hedge delay get one request per call: no hedges.
#[tokio::test]
async fn fast_instances_get_no_hedges() {
    let (addresses, fakes) = fakes(3).await;
    let c = client(&addresses)
        .timeout(TIMEOUT)
        .hedge_after(Duration::from_millis(500))
        .build()
        .expect("client");
    for _ in 0..30 {
        c.get_json::<Rating>("/ratings/widget")
            .await
            .expect("rating");
    }
    assert_eq!(hits(&fakes).iter().sum::<usize>(), 30);
}

#[tokio::test]
async fn a_zero_hedge_delay_is_a_configuration_error() {
    let error = client(&["http://127.0.0.1:1".to_string()])
        .hedge_after(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        matches!(error, Error::Config(ref m) if m.contains("hedge")),
        "{error:?}"
    );
}

/// The adaptive default follows the service: two instances that always take 300 ms are
/// hedged on the first call only (the estimate starts empty, so the 50 ms minimum rules),
/// then the delay is twice their latency and no call is hedged; a fixed 50 ms delay hedges
/// every call.
#[tokio::test]
async fn adaptive_hedging_leaves_a_uniformly_slow_service_alone() {
    use crate::test_metrics::{TestRecorder, key};
    let (addresses, fakes) = fakes(2).await;
    for fake in &fakes {
        fake.mode.store(SLOW, Ordering::SeqCst);
    }
    let hedges_after_calls = |hedging: Hedging| {
        let recorder = TestRecorder::default();
        let addresses = addresses.clone();
        async move {
            let _guard = metrics::set_default_local_recorder(&recorder);
            let c = client(&addresses)
                .timeout(TIMEOUT)
                .hedging(hedging)
                .build()
                .expect("client");
            for _ in 0..4 {
                let _: Rating = c.get_json("/ratings/widget").await.expect("rating");
            }
            let hedges = |result| {
                recorder.counter(&key(
                    "discovery_client_hedges_total",
                    &[("service", "ratings"), ("result", result)],
                ))
            };
            hedges("won") + hedges("lost")
        }
    };
    assert_eq!(hedges_after_calls(Hedging::default()).await, 1);
    assert_eq!(hedges_after_calls(Hedging::After(HEDGE)).await, 4);
}
