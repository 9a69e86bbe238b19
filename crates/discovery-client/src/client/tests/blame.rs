//! Blaming an instance only for what it did, on paused time: a body of the caller's wrong
//! type opens no breaker, and a call that times out everywhere opens at most one.

use tokio::time::Instant;

use super::*;
use crate::breaker::BreakerState::{self, Closed, Open};
use crate::test_metrics::{TestRecorder, key};

/// The hedge delay of these tests.
const HEDGE: Duration = Duration::from_millis(50);

/// A type the ratings answer is not: valid JSON, but no `price` field.
#[derive(Debug, Deserialize)]
struct Price {
    #[allow(dead_code)]
    price: f64,
}

fn states(c: &ServiceClient) -> Vec<BreakerState> {
    c.instances().iter().map(|i| i.state).collect()
}

/// Breakers opened on `address` so far.
fn opened_on(recorder: &TestRecorder, address: &str) -> u64 {
    recorder.counter(&key(
        "discovery_client_breaker_transitions_total",
        &[
            ("service", "ratings"),
            ("instance", address),
            ("to", "open"),
        ],
    ))
}

/// Attempts on `address` counted as failures.
fn failures_on(recorder: &TestRecorder, address: &str) -> u64 {
    recorder.counter(&key(
        "discovery_client_requests_total",
        &[
            ("service", "ratings"),
            ("instance", address),
            ("outcome", "failure"),
        ],
    ))
}

#[tokio::test(start_paused = true)]
async fn a_body_of_another_type_is_the_callers_decode_error_and_opens_no_breaker() {
    let (transport, fakes) = instances(2);
    let c = client(&transport, &fakes).build().expect("client");
    let error = c.get_json::<Price>("/ratings/widget").await.unwrap_err();
    assert!(
        matches!(&error, Error::Decode { address, wrong_type: true, .. } if *address == fakes[0].url),
        "{error:?}"
    );
    assert!(!error.is_instance_failure());
    assert_eq!(
        hits(&fakes),
        [1, 0],
        "not retried: every instance would answer the same"
    );
    assert_eq!(states(&c), [Closed, Closed]);
    // The service is still there for the next (correct) calls, on both instances.
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(instance_of(&c).await, 1);
    assert_eq!(c.instances()[0].failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_is_not_json_still_opens_the_breaker() {
    let (transport, fakes) = instances(2);
    fakes[0].set(Behaviour::Garbage);
    let c = client(&transport, &fakes).build().expect("client");
    // Whatever type the caller asks for, garbage is the instance's failure, retried.
    let error = c.get_json::<Price>("/ratings/widget").await.unwrap_err();
    assert!(
        matches!(&error, Error::Decode { address, wrong_type: true, .. } if *address == fakes[1].url),
        "instance 2's well-formed answer is the caller's error: {error:?}"
    );
    assert_eq!(hits(&fakes), [1, 1]);
    assert_eq!(states(&c), [Open, Closed]);
}

/// The hedged-over attempt is judged by the same rule: its answer of the caller's wrong type
/// opens nothing either.
#[tokio::test(start_paused = true)]
async fn a_hedged_over_answer_of_another_type_opens_no_breaker() {
    let (transport, fakes) = instances(2);
    fakes[0].set(after(100, Behaviour::Ratings));
    let c = client(&transport, &fakes)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let started = Instant::now();
    let error = c.get_json::<Price>("/ratings/widget").await.unwrap_err();
    assert!(
        matches!(&error, Error::Decode { address, .. } if *address == fakes[1].url),
        "the hedge's answer: {error:?}"
    );
    assert_eq!(started.elapsed(), HEDGE);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fakes[0].in_flight(), 0, "the overtaken attempt has ended");
    assert_eq!(c.instances()[0].requests, 1, "and was judged");
    assert_eq!(states(&c), [Closed, Closed]);
}

/// One call slow by nature (600 ms against a 300 ms timeout), hedged: it times out on both
/// instances, and only the first timeout opens a breaker. The service is not taken out.
#[tokio::test(start_paused = true)]
async fn a_call_that_times_out_on_every_instance_opens_one_breaker() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (transport, fakes) = instances(2);
    set_all(&fakes, after(600, Behaviour::Ratings));
    let c = client(&transport, &fakes)
        .hedge_after(HEDGE)
        .build()
        .expect("client");
    let started = Instant::now();
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert!(
        matches!(&error, Error::Timeout { address, .. } if *address == fakes[1].url),
        "{error:?}"
    );
    assert_eq!(
        started.elapsed(),
        HEDGE + TIMEOUT,
        "the hedge's own timeout"
    );
    assert_eq!(hits(&fakes), [1, 1]);
    assert_eq!(states(&c), [Open, Closed]);
    let (one, two) = (fakes[0].url.as_str(), fakes[1].url.as_str());
    assert_eq!(
        (opened_on(&recorder, one), opened_on(&recorder, two)),
        (1, 0)
    );
    // Both timeouts are counted; only the breaker is spared.
    assert_eq!(
        (failures_on(&recorder, one), failures_on(&recorder, two)),
        (1, 1)
    );
    assert_eq!(c.instances()[1].failures, 1);
    // A quick call is answered by instance 2 at once.
    set_all(&fakes, Behaviour::Ratings);
    let started = Instant::now();
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// Without hedging, the retries of a slow call time out too, and spare their breakers.
#[tokio::test(start_paused = true)]
async fn the_retries_of_a_call_that_timed_out_spare_their_breakers() {
    let (transport, fakes) = instances(3);
    set_all(&fakes, after(600, Behaviour::Ratings));
    let c = client(&transport, &fakes)
        .hedging(Hedging::Off)
        .retest_delay(Duration::from_secs(30))
        .build()
        .expect("client");
    let started = Instant::now();
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert_eq!(
        started.elapsed(),
        3 * TIMEOUT,
        "three attempts, one after the other"
    );
    assert_eq!(hits(&fakes), [1, 1, 1]);
    assert_eq!(states(&c), [Open, Closed, Closed]);
}

/// The seed's walkthrough: a paused instance, the only one that timed out in its call,
/// still opens its breaker when the retry elsewhere is answered.
#[tokio::test(start_paused = true)]
async fn a_paused_instance_alone_timing_out_still_opens_its_breaker() {
    let (transport, fakes) = instances(2);
    fakes[0].set(Behaviour::Hang);
    let c = client(&transport, &fakes)
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    let started = Instant::now();
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(states(&c), [Open, Closed]);
}

/// A hedged-over attempt of a call that timed out already spares its breaker too: the
/// call's first timeout opened one, and that is all it opens.
#[tokio::test(start_paused = true)]
async fn a_hedged_over_timeout_after_the_calls_first_spares_its_breaker() {
    let (transport, fakes) = instances(4);
    for fake in &fakes[..3] {
        fake.set(Behaviour::Hang);
    }
    let c = client(&transport, &fakes)
        .hedge_after(HEDGE)
        .max_retries(3)
        .build()
        .expect("client");
    let started = Instant::now();
    // 1 at 0 ms, hedged on 2 at 50; 1 times out at 300 (opens), 2 at 350; the retry on 3 at
    // 350 is hedged on 4 at 400, which answers.
    assert_eq!(instance_of(&c).await, 4);
    assert_eq!(started.elapsed(), TIMEOUT + 2 * HEDGE);
    assert_eq!(fakes[2].in_flight(), 1, "3's attempt runs on, detached");
    tokio::time::sleep(TIMEOUT).await;
    assert_eq!(fakes[2].in_flight(), 0);
    assert_eq!(c.instances()[2].failures, 1, "its timeout is counted");
    assert_eq!(states(&c), [Open, Closed, Closed, Closed]);
}
