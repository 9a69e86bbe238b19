//! [`Balancer`] by itself over a hand-driven `Discover` stream of breaker-guarded in-test
//! services, on paused time.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use http::StatusCode;
use tokio::time::Instant;
use tower::discover::Change;
use tower::{Layer, Service, ServiceExt};

use super::*;
use crate::breaker::{BreakerConfig, BreakerLayer, BreakerService};
use crate::events::Event;
use crate::events::EventBus;
use crate::test_metrics::{TestRecorder, key};
use crate::{Error, Instance};

type Answer = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<http::Response<Bytes>, Infallible>> + Send>,
>;
type Endpoint = BreakerService<
    tower::util::BoxCloneService<http::Request<()>, http::Response<Bytes>, Infallible>,
>;
type Changes = mpsc::UnboundedSender<Result<Change<String, Endpoint>, Error>>;
type Tested = Balancer<mpsc::UnboundedReceiver<Result<Change<String, Endpoint>, Error>>>;

/// Instance `n` at `http://instance-n`, answering its number with the status in `status`.
fn endpoint(n: u16, status: &Arc<AtomicU16>) -> (String, Endpoint) {
    let address = format!("http://instance-{n}");
    let status = Arc::clone(status);
    let inner = tower::service_fn(move |_: http::Request<()>| -> Answer {
        let code = status.load(Ordering::SeqCst);
        Box::pin(async move {
            let mut answer = http::Response::new(Bytes::from(n.to_string()));
            *answer.status_mut() = StatusCode::from_u16(code).expect("status");
            Ok(answer)
        })
    });
    let config = BreakerConfig {
        policy: crate::FailurePolicy::ConsecutiveFailures(1),
        retest_delay: Duration::from_secs(30),
        ..BreakerConfig::default()
    };
    let layer = BreakerLayer::new("ratings", &Instance::new(n.to_string(), &address), config);
    (
        address,
        layer.layer(tower::util::BoxCloneService::new(inner)),
    )
}

/// A balancer with instances 1..=n; returns it, the change sender, and each one's status.
fn balancer(n: u16) -> (Tested, Changes, Vec<Arc<AtomicU16>>) {
    let (tx, rx) = mpsc::unbounded();
    let mut statuses = Vec::new();
    for i in 1..=n {
        let status = Arc::new(AtomicU16::new(200));
        let (address, svc) = endpoint(i, &status);
        tx.unbounded_send(Ok(Change::Insert(address, svc)))
            .expect("send");
        statuses.push(status);
    }
    (Balancer::new("ratings", rx), tx, statuses)
}

async fn call(rr: &mut Tested) -> Result<http::Response<Bytes>, Error> {
    rr.ready().await?.call(http::Request::new(())).await
}

async fn who(rr: &mut Tested) -> String {
    let answer = call(rr).await.expect("answer");
    String::from_utf8(answer.into_body().to_vec()).expect("utf-8")
}

async fn sequence(rr: &mut Tested, times: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..times {
        seen.push(who(rr).await);
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn interleaves_across_discovered_endpoints() {
    let (mut rr, _tx, _) = balancer(3);
    assert_eq!(sequence(&mut rr, 6).await, ["1", "2", "3", "1", "2", "3"]);
    assert_eq!(rr.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn skips_endpoints_whose_breaker_is_open_and_says_all_down_at_once() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (rr, _tx, statuses) = balancer(3);
    let bus = EventBus::new(16);
    let mut events = bus.subscribe();
    let mut rr = rr.events(bus);
    statuses[1].store(500, Ordering::SeqCst);
    let first = sequence(&mut rr, 3).await;
    assert_eq!(first, ["1", "2", "3"], "2 answered 500 once and opened");
    let after = sequence(&mut rr, 4).await;
    assert_eq!(
        after,
        ["1", "3", "1", "3"],
        "2 is skipped, the rest stay even"
    );
    for status in &statuses {
        status.store(500, Ordering::SeqCst);
    }
    let _ = sequence(&mut rr, 2).await; // 1 and 3 fail once each and open
    let started = Instant::now();
    let error = call(&mut rr).await.unwrap_err();
    assert_eq!(
        error,
        Error::AllInstancesDown {
            service: "ratings".into()
        }
    );
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no waiting for a breaker"
    );
    assert_eq!(
        events.try_recv().expect("event"),
        Event::AllInstancesDown {
            service: "ratings".into()
        }
    );
    assert_eq!(
        recorder.counter(&key(
            "discovery_client_all_down_total",
            &[("service", "ratings")]
        )),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn passes_over_an_endpoint_that_pushed_back_for_its_wait_and_says_overloaded() {
    let (mut rr, _tx, statuses) = balancer(3);
    statuses[1].store(429, Ordering::SeqCst);
    let first = call(&mut rr).await.expect("answer");
    assert_eq!(first.body().as_ref(), b"1");
    let pushed = call(&mut rr).await.expect("the 429 itself is the answer");
    assert_eq!(pushed.status(), StatusCode::TOO_MANY_REQUESTS);
    let started = Instant::now();
    // A 429 without `Retry-After`: left alone for a second, its breaker closed.
    statuses[1].store(200, Ordering::SeqCst);
    assert_eq!(sequence(&mut rr, 4).await, ["3", "1", "3", "1"]);
    tokio::time::sleep_until(started + Duration::from_millis(999)).await;
    assert_eq!(sequence(&mut rr, 2).await, ["3", "1"]);
    tokio::time::sleep_until(started + Duration::from_secs(1)).await;
    assert_eq!(sequence(&mut rr, 3).await, ["2", "3", "1"], "used again");
    // Every endpoint pushes back: the caller is told so, with the soonest wait.
    for status in &statuses {
        status.store(429, Ordering::SeqCst);
    }
    let _ = sequence(&mut rr, 3).await;
    tokio::time::advance(Duration::from_millis(300)).await;
    let error = call(&mut rr).await.unwrap_err();
    assert_eq!(
        error,
        Error::Overloaded {
            service: "ratings".into(),
            retry_after: Some(Duration::from_millis(700)),
        }
    );
}

#[tokio::test(start_paused = true)]
async fn follows_inserts_and_removes() {
    let (mut rr, tx, _) = balancer(3);
    assert_eq!(sequence(&mut rr, 3).await, ["1", "2", "3"]);
    tx.unbounded_send(Ok(Change::Remove("http://instance-2".into())))
        .expect("send");
    let seen = sequence(&mut rr, 4).await;
    assert!(!seen.contains(&"2".to_string()), "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "1").count(), 2, "{seen:?}");
    assert_eq!(rr.len(), 2);
    let status = Arc::new(AtomicU16::new(200));
    let (address, svc) = endpoint(4, &status);
    tx.unbounded_send(Ok(Change::Insert(address, svc)))
        .expect("send");
    let seen = sequence(&mut rr, 6).await;
    for id in ["1", "3", "4"] {
        assert_eq!(seen.iter().filter(|s| *s == id).count(), 2, "{seen:?}");
    }
    // Everything removed: all down, at once.
    for id in ["1", "3", "4"] {
        tx.unbounded_send(Ok(Change::Remove(format!("http://instance-{id}"))))
            .expect("send");
    }
    assert!(matches!(
        call(&mut rr).await,
        Err(Error::AllInstancesDown { .. })
    ));
    assert!(rr.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_pick_not_used_is_kept_for_the_next_call() {
    let (mut rr, _tx, _) = balancer(2);
    let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
    assert!(rr.poll_ready(&mut cx).is_ready());
    assert!(
        rr.poll_ready(&mut cx).is_ready(),
        "polling twice keeps the pick"
    );
    assert_eq!(sequence(&mut rr, 2).await, ["1", "2"]);
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_with_a_call_in_flight_is_passed_over_until_it_ends() {
    let (rr, _tx, _) = balancer(3);
    let mut rr = rr.balance(Balance::LeastPending);
    // A call to 1 that nobody polls yet: in flight on 1.
    let held = rr
        .ready()
        .await
        .expect("ready")
        .call(http::Request::new(()));
    assert_eq!(sequence(&mut rr, 4).await, ["2", "3", "2", "3"]);
    // Answered but the future kept: no longer in flight.
    let mut held = std::pin::pin!(held);
    let answer = held.as_mut().await.expect("answer");
    assert_eq!(answer.into_body(), "1");
    assert_eq!(sequence(&mut rr, 3).await, ["1", "2", "3"]);
    // A call dropped unanswered (cancelled) counts out as well.
    let dropped = rr
        .ready()
        .await
        .expect("ready")
        .call(http::Request::new(()));
    assert_eq!(sequence(&mut rr, 2).await, ["2", "3"]);
    drop(dropped);
    assert_eq!(sequence(&mut rr, 3).await, ["1", "2", "3"]);
}

#[tokio::test(start_paused = true)]
async fn by_default_an_endpoint_with_a_call_in_flight_gets_none_until_it_ends() {
    let (mut rr, _tx, _) = balancer(3);
    // A call to 1 that nobody polls yet: in flight on 1, and 1 loses every comparison.
    let held = rr
        .ready()
        .await
        .expect("ready")
        .call(http::Request::new(()));
    let picks = sequence(&mut rr, 30).await;
    assert!(picks.iter().all(|id| id != "1"), "{picks:?}");
    assert!(picks.iter().any(|id| id == "2") && picks.iter().any(|id| id == "3"));
    // Answered: no longer in flight, and back in turn.
    assert_eq!(held.await.expect("answer").into_body(), "1");
    let picks = sequence(&mut rr, 3).await;
    let mut sorted = picks.clone();
    sorted.sort();
    assert_eq!(sorted, ["1", "2", "3"], "{picks:?}");
}

#[tokio::test(start_paused = true)]
async fn plain_round_robin_ignores_calls_in_flight() {
    let (rr, _tx, _) = balancer(3);
    let mut rr = rr.balance(Balance::RoundRobin);
    let _held = rr
        .ready()
        .await
        .expect("ready")
        .call(http::Request::new(()));
    assert_eq!(sequence(&mut rr, 5).await, ["2", "3", "1", "2", "3"]);
}

#[tokio::test(start_paused = true)]
async fn the_first_call_waits_for_discoverys_first_endpoint() {
    let (tx, rx) = mpsc::unbounded();
    let mut rr: Tested = Balancer::new("ratings", rx);
    let started = Instant::now();
    let send_later = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (address, svc) = endpoint(1, &Arc::new(AtomicU16::new(200)));
        tx.unbounded_send(Ok(Change::Insert(address, svc)))
            .expect("send");
    };
    let (answer, ()) = tokio::join!(call(&mut rr), send_later);
    assert_eq!(
        answer.expect("answered by the first endpoint").into_body(),
        "1"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn a_discovery_that_never_answers_is_waited_for_one_second_then_all_down() {
    let (_tx, rx) = mpsc::unbounded::<Result<Change<String, Endpoint>, Error>>();
    let mut rr = Balancer::new("ratings", rx);
    let started = Instant::now();
    assert!(matches!(
        call(&mut rr).await,
        Err(Error::AllInstancesDown { .. })
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    // Waited once: later calls are answered at once.
    assert!(matches!(
        call(&mut rr).await,
        Err(Error::AllInstancesDown { .. })
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(1));

    let (_tx, rx) = mpsc::unbounded::<Result<Change<String, Endpoint>, Error>>();
    let mut rr = Balancer::new("ratings", rx).wait_for_discovery(Duration::from_millis(50));
    let started = Instant::now();
    assert!(matches!(
        call(&mut rr).await,
        Err(Error::AllInstancesDown { .. })
    ));
    assert_eq!(started.elapsed(), Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn a_discovery_error_before_any_endpoint_is_the_answer_until_endpoints_arrive() {
    let (tx, rx) = mpsc::unbounded();
    let mut rr: Tested = Balancer::new("ratings", rx);
    let unreachable = Error::Discovery("registry at http://127.0.0.1:1 unreachable".into());
    tx.unbounded_send(Err(unreachable.clone())).expect("send");
    let started = Instant::now();
    assert_eq!(call(&mut rr).await.unwrap_err(), unreachable);
    assert_eq!(started.elapsed(), Duration::ZERO, "an answer at once");
    let (address, svc) = endpoint(1, &Arc::new(AtomicU16::new(200)));
    tx.unbounded_send(Ok(Change::Insert(address, svc)))
        .expect("send");
    assert_eq!(who(&mut rr).await, "1");
    // Known endpoints stay in use through later discovery errors.
    tx.unbounded_send(Err(unreachable)).expect("send");
    assert_eq!(who(&mut rr).await, "1");
}

/// A stack as a user builds it: a discovery source through an `InstanceStream`, one breaker
/// service per instance, and the balancer. Its very first call is answered, however soon it
/// is made after building.
#[tokio::test(start_paused = true)]
async fn a_fresh_stack_over_static_discovery_answers_its_first_call() {
    for _ in 0..10 {
        let endpoints = crate::discovery::InstanceStream::new(
            "ratings",
            crate::StaticDiscovery::new(["http://instance-1", "http://instance-2"]),
        )
        .expect("in a runtime")
        .endpoints(|instance| {
            let n: u16 = instance.id.parse().expect("numbered");
            endpoint(n, &Arc::new(AtomicU16::new(200))).1
        });
        let mut rr = Balancer::new("ratings", endpoints);
        let started = Instant::now();
        assert_eq!(
            rr.ready()
                .await
                .expect("ready")
                .call(http::Request::new(()))
                .await
                .expect("answered")
                .into_body(),
            "1"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}

/// Instance `n` at `http://instance-n`, answering its number after `millis`.
fn timed_endpoint(n: u16, millis: u64) -> (String, Endpoint) {
    let address = format!("http://instance-{n}");
    let inner = tower::service_fn(move |_: http::Request<()>| -> Answer {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            Ok(http::Response::new(Bytes::from(n.to_string())))
        })
    });
    let instance = Instance::new(n.to_string(), &address);
    let layer = BreakerLayer::new("ratings", &instance, BreakerConfig::default());
    (
        address,
        layer.layer(tower::util::BoxCloneService::new(inner)),
    )
}

#[tokio::test(start_paused = true)]
async fn the_balancer_times_its_calls_and_gives_a_slow_endpoint_a_trickle() {
    let (tx, rx) = mpsc::unbounded();
    for (n, millis) in [(1, 1), (2, 20), (3, 1)] {
        let (address, svc) = timed_endpoint(n, millis);
        tx.unbounded_send(Ok(Change::Insert(address, svc)))
            .expect("send");
    }
    let mut rr: Tested = Balancer::new("ratings", rx);
    // Two answers each (the first is left out of the estimate), in turn.
    assert_eq!(sequence(&mut rr, 6).await, ["1", "2", "3", "1", "2", "3"]);
    let seen = sequence(&mut rr, 1000).await;
    let slow = seen.iter().filter(|who| *who == "2").count();
    assert!((1..=5).contains(&slow), "a trickle: {slow} of 1000");
    // Plain round-robin over the same endpoints would send it a third.
    let (tx, rx) = mpsc::unbounded();
    for (n, millis) in [(1, 1), (2, 20), (3, 1)] {
        let (address, svc) = timed_endpoint(n, millis);
        tx.unbounded_send(Ok(Change::Insert(address, svc)))
            .expect("send");
    }
    let mut plain: Tested = Balancer::new("ratings", rx).balance(Balance::RoundRobin);
    let seen = sequence(&mut plain, 300).await;
    assert_eq!(seen.iter().filter(|who| *who == "2").count(), 100);
}

/// Calls with a request carrying `tried`; the answering instance's number.
async fn call_avoiding(rr: &mut Tested, tried: &Tried) -> Result<String, Error> {
    let mut request = http::Request::new(());
    request.extensions_mut().insert(tried.clone());
    let answer = rr.ready().await?.call(request).await?;
    Ok(String::from_utf8(answer.into_body().to_vec()).expect("utf-8"))
}

#[tokio::test(start_paused = true)]
async fn a_request_carrying_its_tried_instances_goes_elsewhere_until_none_is_left() {
    let (mut rr, _tx, _) = balancer(3);
    let tried = Tried::default();
    // Round-robin would give 1, 2, 3 anyway: start the cursor on 1 again after each.
    assert_eq!(call_avoiding(&mut rr, &tried).await.expect("answer"), "1");
    assert_eq!(sequence(&mut rr, 2).await, ["2", "3"]);
    // The cursor is on 1, which this call has tried: it goes to another.
    let second = call_avoiding(&mut rr, &tried).await.expect("answer");
    assert_ne!(second, "1");
    let third = call_avoiding(&mut rr, &tried).await.expect("answer");
    assert!(third != "1" && third != second, "{second} then {third}");
    assert_eq!(tried.len(), 3);
    assert!(tried.contains("http://instance-1"));
    let error = call_avoiding(&mut rr, &tried).await.unwrap_err();
    assert!(matches!(error, Error::AllInstancesDown { .. }), "{error:?}");
    assert_eq!(tried.len(), 3);
    // Requests without the list are not steered.
    assert_eq!(sequence(&mut rr, 3).await.len(), 3);
}
