//! A client that is not running for a while (its process frozen by a CPU quota) does not
//! blame the instances for it, on paused time: `tokio::time::advance` is the freeze, during
//! which no task runs and at whose end every due timer fires at once.
//!
//! The fake instances answer in 5 ms, and the answer reaches the attempt one poll later, as
//! hyper hands an answer from the connection's task to the caller's: so an attempt whose
//! timer is due when the client runs again sees its timer before its answer, as a real
//! starved client does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

use super::*;
use crate::breaker::BreakerState;

/// A cgroup quota of 40 ms per second freezes the process for the rest of the second.
const FREEZE: Duration = Duration::from_millis(960);

/// Three instances answering in 5 ms, and a client of them (hedging as said) whose answers
/// arrive one poll after the instance gave them.
fn healthy_three(hedging: Hedging) -> (ServiceClient, Vec<FakeRatings>) {
    let (transport, fakes) = instances(3);
    // Healthy: each answers in 5 ms.
    set_all(&fakes, after(5, Behaviour::Ratings));
    let handed_over = transport
        .map_future(|answer| async move {
            let answer = answer.await;
            tokio::task::yield_now().await;
            answer
        })
        .map_response(|answer: http::Response<Bytes>| answer.map(Full::new));
    let c = ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(fakes.iter().map(|f| f.url.clone())))
        .transport(handed_over)
        .timeout(TIMEOUT)
        .retest_delay(RETEST)
        .hedging(hedging)
        .build()
        .expect("client");
    (c, fakes)
}

fn states(c: &ServiceClient) -> Vec<BreakerState> {
    c.instances().iter().map(|i| i.state).collect()
}

/// Starts `n` calls on `c` and lets each send its first attempt.
async fn in_flight(
    c: &ServiceClient,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<Rating, Error>>> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get_json::<Rating>("/ratings/widget").await })
        })
        .collect();
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    calls
}

async fn answers(
    calls: Vec<tokio::task::JoinHandle<Result<Rating, Error>>>,
) -> Vec<Result<Rating, Error>> {
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.expect("call task"));
    }
    answers
}

/// The client is frozen for 960 ms with 30 attempts in flight to three healthy instances:
/// every timer fires 660 ms late. The answers are in (the attempts get a short grace when
/// their timer fires late), no breaker opens and every call is answered.
#[tokio::test(start_paused = true)]
async fn a_frozen_client_opens_no_breaker_and_reads_the_answers_that_came_meanwhile() {
    let (c, fakes) = healthy_three(Hedging::default());
    discovered(&c).await;
    let mut events = c.subscribe();
    let calls = in_flight(&c, 30).await;
    assert_eq!(hits(&fakes), [10, 10, 10]);
    tokio::time::advance(FREEZE).await;
    for answer in answers(calls).await {
        answer.expect("answered");
    }
    assert_eq!(states(&c), [BreakerState::Closed; 3]);
    assert!(events.try_recv().is_err(), "no breaker event");
    assert_eq!(hits(&fakes), [10, 10, 10], "not one retry");
}

/// The client is frozen until just after the attempts' timers were due: they fire 5 ms late
/// (too little for a grace) and time out. The client ran for 0 ms of their 300: the timeouts
/// are not held against the instances, and the calls are retried elsewhere.
#[tokio::test(start_paused = true)]
async fn timeouts_of_a_frozen_client_are_not_held_against_instances() {
    let (c, fakes) = healthy_three(Hedging::default());
    discovered(&c).await;
    let mut events = c.subscribe();
    let calls = in_flight(&c, 3).await;
    tokio::time::advance(TIMEOUT + Duration::from_millis(5)).await;
    for answer in answers(calls).await {
        answer.expect("answered by a retry");
    }
    assert_eq!(states(&c), [BreakerState::Closed; 3]);
    assert!(events.try_recv().is_err(), "no breaker event");
    assert_eq!(
        hits(&fakes).iter().sum::<usize>(),
        6,
        "each call retried once"
    );
}

/// One instance really paused: while the client is frozen its timeout is not held against
/// it; once the client runs, its next timeout opens its breaker, as without the monitor.
#[tokio::test(start_paused = true)]
async fn a_paused_instance_still_opens_its_breaker_when_the_client_is_running() {
    let (c, fakes) = healthy_three(Hedging::Off);
    fakes[0].set(Behaviour::Hang);
    discovered(&c).await;
    let mut events = c.subscribe();
    let calls = in_flight(&c, 3).await;
    tokio::time::advance(FREEZE).await;
    for answer in answers(calls).await {
        answer.expect("answered");
    }
    assert_eq!(states(&c), [BreakerState::Closed; 3], "frozen: excused");
    // The client runs: the next attempt on instance 1 times out after 300 ms and opens it;
    // the call is retried on another instance.
    let held = fakes[0].hits();
    let took = loop {
        let sent = Instant::now();
        c.get_json::<Rating>("/ratings/widget")
            .await
            .expect("answered");
        if fakes[0].hits() > held {
            break sent.elapsed();
        }
    };
    assert_eq!(took, TIMEOUT + Duration::from_millis(5));
    assert_eq!(next_event(&mut events).await, opened(&fakes[0].url));
    assert_eq!(
        states(&c),
        [
            BreakerState::Open,
            BreakerState::Closed,
            BreakerState::Closed
        ]
    );
}

/// Every instance refusing connections, right after a freeze: every breaker opens at once
/// and the next call is `AllInstancesDown` at once.
#[tokio::test(start_paused = true)]
async fn every_instance_refusing_after_a_freeze_is_all_down_at_once() {
    let (c, fakes) = healthy_three(Hedging::default());
    discovered(&c).await;
    let calls = in_flight(&c, 3).await;
    tokio::time::advance(FREEZE).await;
    answers(calls).await;
    drop(fakes); // nothing answers at their addresses any more
    let started = Instant::now();
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert!(matches!(error, Error::Http { .. }), "{error:?}");
    assert_eq!(states(&c), [BreakerState::Open; 3]);
    assert_eq!(
        c.get_json::<Rating>("/ratings/widget").await.unwrap_err(),
        all_down()
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// Three instances whose connections, while `failing` is set, take as long as the attempt's
/// timeout to fail (as a connector with its own timeout equal to the attempt's does), and
/// answer at once otherwise.
fn slow_failing_three(failing: &Arc<AtomicBool>) -> ServiceClient {
    let (_, fakes) = instances(3);
    let failing = Arc::clone(failing);
    let transport = tower::service_fn(move |_: http::Request<Bytes>| {
        let failing = failing.load(Ordering::SeqCst);
        async move {
            if !failing {
                let body = Bytes::from_static(br#"{"item_id":"widget","rating":4,"instance":1}"#);
                return Ok(http::Response::new(Full::new(body)));
            }
            tokio::time::sleep(TIMEOUT).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "tcp connect error: connection timed out",
            ))
        }
    });
    ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(fakes.iter().map(|f| f.url.clone())))
        .transport(transport)
        .timeout(TIMEOUT)
        .retest_delay(RETEST)
        .hedging(Hedging::Off)
        .build()
        .expect("client")
}

#[tokio::test(start_paused = true)]
async fn a_transport_error_seen_past_the_deadline_of_a_frozen_client_is_excused_too() {
    let failing = Arc::new(AtomicBool::new(true));
    let c = slow_failing_three(&failing);
    discovered(&c).await;
    let calls = in_flight(&c, 6).await;
    // Frozen past the attempts' deadlines and the connector's, whichever is seen first; the
    // instances are reachable again by the time the calls retry.
    tokio::time::advance(FREEZE).await;
    failing.store(false, Ordering::SeqCst);
    for call in calls {
        call.await.expect("no panic").expect("answered on a retry");
    }
    assert_eq!(states(&c), [BreakerState::Closed; 3], "no breaker opened");
    // The same failure while the client runs is the instance's: a timeout, whose breaker
    // opened (and, the retest delay passed while the call retried, is in Retest by now).
    failing.store(true, Ordering::SeqCst);
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert_ne!(states(&c), [BreakerState::Closed; 3], "its breaker opened");
}
