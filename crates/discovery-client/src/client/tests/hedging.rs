//! Hedged attempts, on paused time: exact instants and attempt counts.

use tokio::time::Instant;

use super::*;
use crate::breaker::BreakerState;
use crate::test_metrics::{TestRecorder, key};

/// The hedge delay of these tests.
const HEDGE: Duration = Duration::from_millis(50);

fn hedges(recorder: &TestRecorder, result: &str) -> u64 {
    recorder.counter(&key(
        "discovery_client_hedges_total",
        &[("service", "ratings"), ("result", result)],
    ))
}

/// The event published when a call hedges from instance `slow` to instance `hedge`.
fn hedged(slow: &str, hedge: &str) -> Event {
    Event::Hedged {
        service: "ratings".into(),
        slow: slow.into(),
        hedge: hedge.into(),
    }
}

/// Two instances, the first hanging: the call that reaches it is answered by the second at
/// exactly the hedge delay, never after the timeout.
#[tokio::test(start_paused = true)]
async fn a_hanging_instance_is_hedged_after_the_delay() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (transport, fakes) = instances(2);
    fakes[0].set(Behaviour::Hang);
    let c = client(&transport, &fakes)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let mut events = c.subscribe();
    let started = Instant::now();
    let answer = c
        .get("/ratings/widget")
        .no_cache()
        .await
        .expect("the hedge answers");
    assert_eq!(started.elapsed(), HEDGE);
    let published = std::iter::from_fn(|| events.try_recv().ok())
        .find(|event| !matches!(event, Event::InstanceAdded { .. }));
    assert_eq!(published, Some(hedged("1", "2")), "the hedge is published");
    assert_eq!(answer.instance().id, "2");
    assert_eq!(answer.json::<Rating>().expect("json").instance, 2);
    assert_eq!(
        fakes[1].arrivals(),
        [started + HEDGE],
        "one hedge, sent at the delay"
    );
    assert_eq!(
        (hedges(&recorder, "won"), hedges(&recorder, "lost")),
        (1, 0)
    );
    let retries = key("discovery_client_retries_total", &[("service", "ratings")]);
    assert_eq!(recorder.counter(&retries), 0, "a hedge is not a retry");
}

/// The attempt the hedge overtook is not cancelled: it stays in flight on its instance and,
/// when its timeout ends it, its failure opens the instance's breaker.
#[tokio::test(start_paused = true)]
async fn the_overtaken_attempt_runs_to_its_timeout_and_opens_its_breaker() {
    let (transport, fakes) = instances(2);
    fakes[0].set(Behaviour::Hang);
    let c = client(&transport, &fakes)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let mut events = c.subscribe();
    let started = Instant::now();
    c.get("/ratings/widget")
        .no_cache()
        .await
        .expect("the hedge answers");
    assert_eq!(
        fakes[0].in_flight(),
        1,
        "the overtaken attempt is still out"
    );
    assert_eq!(c.instances()[0].state, BreakerState::Closed);
    assert_eq!(next_event(&mut events).await, hedged("1", "2"));
    assert_eq!(next_event(&mut events).await, opened(&fakes[0].url));
    assert_eq!(started.elapsed(), TIMEOUT, "at its own timeout");
    assert_eq!(fakes[0].in_flight(), 0);
    assert_eq!(c.instances()[0].state, BreakerState::Open);
    assert_eq!(c.instances()[1].state, BreakerState::Closed);
}

/// A hedged-over attempt is judged by the call's decoder too: a body that does not decode is
/// its instance's failure, even though the caller already has its answer.
#[tokio::test(start_paused = true)]
async fn the_overtaken_attempt_is_judged_by_the_calls_decoder() {
    let (transport, fakes) = instances(2);
    fakes[0].set(after(100, Behaviour::Garbage));
    let c = client(&transport, &fakes)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let mut events = c.subscribe();
    let started = Instant::now();
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(started.elapsed(), HEDGE);
    assert_eq!(next_event(&mut events).await, hedged("1", "2"));
    assert_eq!(next_event(&mut events).await, opened(&fakes[0].url));
    assert_eq!(started.elapsed(), Duration::from_millis(100));
}

/// When one of the two racing attempts fails, the call waits for the other instead of
/// retrying or failing: one attempt on each instance, and the slow success is the answer.
#[tokio::test(start_paused = true)]
async fn a_failure_in_the_race_waits_for_the_other_attempt() {
    let (transport, fakes) = instances(2);
    fakes[0].set(after(150, Behaviour::Status(500)));
    fakes[1].set(after(300, Behaviour::Ratings));
    let c = client(&transport, &fakes)
        .timeout(Duration::from_secs(1))
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let started = Instant::now();
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(started.elapsed(), HEDGE + Duration::from_millis(300));
    assert_eq!(hits(&fakes), [1, 1], "one attempt each, no retry");
    let states: Vec<_> = c.instances().iter().map(|i| i.state).collect();
    assert_eq!(states, [BreakerState::Open, BreakerState::Closed]);
    assert_eq!((fakes[0].in_flight(), fakes[1].in_flight()), (0, 0));
}

/// With the retry budget spent, an attempt on a hanging instance waits for its timeout: no
/// hedge, and no retry either.
#[tokio::test(start_paused = true)]
async fn no_hedge_once_the_budget_is_spent() {
    let (transport, fakes) = instances(2);
    set_all(&fakes, Behaviour::Status(500));
    let c = client(&transport, &fakes)
        .failure_limit(u32::MAX)
        .retry_budget(0.0)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    // The floor allows 100 retries in its 10 s window: 100 failing calls spend it.
    for _ in 0..100 {
        let _ = c.get("/ratings/widget").no_cache().await;
    }
    assert_eq!(hits(&fakes).iter().sum::<usize>(), 200);
    fakes[0].set(Behaviour::Hang);
    fakes[1].set(Behaviour::Ratings);
    let started = Instant::now();
    // Round-robin: the next call goes to instance 1.
    let result = c.get("/ratings/widget").no_cache().await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(
        hits(&fakes),
        [101, 100],
        "no hedge, no retry without budget"
    );
}

/// Hedging off: a call that reaches the hanging instance waits for the timeout before it is
/// retried elsewhere.
#[tokio::test(start_paused = true)]
async fn without_hedging_a_hanging_instance_costs_the_timeout() {
    let (transport, fakes) = instances(2);
    fakes[0].set(Behaviour::Hang);
    let c = client(&transport, &fakes)
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    let started = Instant::now();
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(
        fakes[1].arrivals(),
        [started + TIMEOUT],
        "one retry, after the timeout"
    );
}

/// A POST is not hedged, unless non-idempotent requests may be retried.
#[tokio::test(start_paused = true)]
async fn non_idempotent_requests_are_not_hedged_unless_allowed() {
    let (transport, fakes) = instances(2);
    fakes[0].set(Behaviour::Hang);
    let c = client(&transport, &fakes)
        .failure_limit(1000)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let started = Instant::now();
    let result = c.post("/ratings/widget").send().await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(fakes[1].hits(), 0, "a POST is not hedged");

    let c = client(&transport, &fakes)
        .failure_limit(1000)
        .retry_non_idempotent(true)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let started = Instant::now();
    c.post("/ratings/widget")
        .send()
        .await
        .expect("the hedge answers");
    assert_eq!(started.elapsed(), HEDGE);
    assert_eq!(fakes[1].hits(), 1, "allowed: hedged");
}

/// A hedge counts against `max_retries`: with none allowed, nothing is hedged.
#[tokio::test(start_paused = true)]
async fn a_hedge_counts_against_max_retries() {
    let (transport, fakes) = instances(2);
    fakes[0].set(Behaviour::Hang);
    let c = client(&transport, &fakes)
        .max_retries(0)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let started = Instant::now();
    let result = c.get("/ratings/widget").no_cache().await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(fakes[1].hits(), 0);
}

/// Instances that answer within the hedge delay get one request per call: no hedges.
#[tokio::test(start_paused = true)]
async fn instances_answering_within_the_delay_get_no_hedges() {
    let (transport, fakes) = instances(3);
    set_all(&fakes, after(49, Behaviour::Ratings));
    let c = client(&transport, &fakes)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    for _ in 0..30 {
        c.get_json::<Rating>("/ratings/widget")
            .await
            .expect("rating");
    }
    assert_eq!(hits(&fakes), [10, 10, 10]);
}

/// The adaptive default follows the service: two instances that always take 300 ms are
/// hedged on the first call only (the estimate starts empty, so the 50 ms minimum rules),
/// then the delay is twice their latency and no call is hedged; a fixed 50 ms delay hedges
/// every call.
#[tokio::test(start_paused = true)]
async fn adaptive_hedging_leaves_a_uniformly_slow_service_alone() {
    let (transport, fakes) = instances(2);
    set_all(&fakes, after(300, Behaviour::Ratings));
    for (hedging, expected) in [(Hedging::default(), 1), (Hedging::After(HEDGE), 4)] {
        let recorder = TestRecorder::default();
        let _guard = metrics::set_default_local_recorder(&recorder);
        let c = client(&transport, &fakes)
            .timeout(Duration::from_secs(1))
            .hedging(hedging)
            .build()
            .expect("client");
        for _ in 0..4 {
            let _: Rating = c.get_json("/ratings/widget").await.expect("rating");
        }
        let sent = hedges(&recorder, "won") + hedges(&recorder, "lost");
        assert_eq!(sent, expected, "{hedging:?}");
    }
}
