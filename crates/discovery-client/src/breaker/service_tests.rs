//! [`BreakerService`] by itself, on paused time, against small in-test services.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::task::noop_waker_ref;
use http::StatusCode;
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::*;
use crate::classify::{Attempt, Classify, Outcome};
use crate::events::{Event, EventBus};
use crate::test_metrics::{TestRecorder, key};
use crate::{Error, Instance};

const ADDRESS: &str = "http://127.0.0.1:8001";
const RETEST: Duration = Duration::from_secs(30);

/// An instance that answers with the status in `status`, counts its calls, and, while
/// `hold` is set, waits for `release` before answering.
#[derive(Debug, Default)]
struct Upstream {
    status: AtomicU16,
    hits: AtomicUsize,
    hold: std::sync::atomic::AtomicBool,
    release: Notify,
}

impl Upstream {
    fn new(status: u16) -> Arc<Self> {
        let upstream = Self::default();
        upstream.status.store(status, Ordering::SeqCst);
        Arc::new(upstream)
    }

    fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
struct Fake(Arc<Upstream>);

impl Service<http::Request<()>> for Fake {
    type Response = http::Response<Bytes>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        let upstream = Arc::clone(&self.0);
        Box::pin(async move {
            upstream.hits.fetch_add(1, Ordering::SeqCst);
            if upstream.hold.load(Ordering::SeqCst) {
                upstream.release.notified().await;
            }
            let mut answer = http::Response::new(Bytes::from_static(b"{}"));
            *answer.status_mut() =
                StatusCode::from_u16(upstream.status.load(Ordering::SeqCst)).expect("status");
            Ok(answer)
        })
    }
}

fn config() -> BreakerConfig {
    BreakerConfig {
        policy: crate::FailurePolicy::ConsecutiveFailures(1),
        retest_delay: RETEST,
        ..BreakerConfig::default()
    }
}

/// A breaker service around `upstream`, publishing to a fresh bus.
fn guarded(upstream: &Arc<Upstream>) -> (BreakerService<Fake>, broadcast::Receiver<Event>) {
    let bus = EventBus::new(64);
    let events = bus.subscribe();
    let layer =
        BreakerLayer::new("ratings", &Instance::new("1", ADDRESS), config()).events(bus.clone());
    (layer.layer(Fake(Arc::clone(upstream))), events)
}

async fn call(svc: &mut BreakerService<Fake>) -> Result<http::Response<Bytes>, Error> {
    svc.ready().await?.call(http::Request::new(())).await
}

fn poll_ready_now(svc: &mut BreakerService<Fake>) -> Poll<Result<(), Error>> {
    let mut cx = Context::from_waker(noop_waker_ref());
    svc.poll_ready(&mut cx)
}

fn opened() -> Event {
    Event::BreakerOpened {
        service: "ratings".into(),
        address: ADDRESS.into(),
    }
}

#[tokio::test(start_paused = true)]
async fn poll_ready_never_errors_or_waits_in_any_state() {
    let upstream = Upstream::new(500);
    let (mut svc, _events) = guarded(&upstream);
    assert!(matches!(poll_ready_now(&mut svc), Poll::Ready(Ok(()))));
    let _ = call(&mut svc).await;
    assert_eq!(svc.breaker().state(), BreakerState::Open);
    assert!(
        matches!(poll_ready_now(&mut svc), Poll::Ready(Ok(()))),
        "open"
    );
    tokio::time::advance(RETEST).await;
    tokio::task::yield_now().await;
    assert_eq!(svc.breaker().state(), BreakerState::Retest);
    assert!(
        matches!(poll_ready_now(&mut svc), Poll::Ready(Ok(()))),
        "retest"
    );
    // With the probe out, still ready: the refusal comes from `call`.
    let mut prober = svc.clone();
    assert!(prober.try_acquire(Instant::now()));
    assert!(
        matches!(poll_ready_now(&mut svc), Poll::Ready(Ok(()))),
        "probe out"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_is_turned_away_at_once_while_open_without_reaching_the_instance() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let upstream = Upstream::new(503);
    let (mut svc, mut events) = guarded(&upstream);
    let answer = call(&mut svc).await.expect("a 503 is still an answer");
    assert_eq!(answer.status(), 503);
    assert_eq!(events.try_recv().expect("event"), opened());
    let started = Instant::now();
    for _ in 0..3 {
        let refused = call(&mut svc).await.unwrap_err();
        assert_eq!(
            refused,
            Error::CircuitOpen {
                address: ADDRESS.into()
            }
        );
    }
    assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
    assert_eq!(
        upstream.hits(),
        1,
        "no request reached the instance while open"
    );
    let labels = [("service", "ratings"), ("instance", ADDRESS)];
    let outcome = |o: &'static str| {
        let mut l = labels.to_vec();
        l.push(("outcome", o));
        recorder.counter(&key("discovery_client_requests_total", &l))
    };
    assert_eq!(outcome("failure"), 1, "{:?}", recorder.keys());
    assert_eq!(outcome("rejected"), 3);
    assert_eq!(
        recorder.gauge(&key("discovery_client_breaker_state", &labels)),
        Some(2.0)
    );
}

#[tokio::test(start_paused = true)]
async fn the_retest_timer_moves_open_to_retest_on_time_by_itself_then_a_probe_closes() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let upstream = Upstream::new(500);
    let (mut svc, mut events) = guarded(&upstream);
    let _ = call(&mut svc).await;
    assert_eq!(events.recv().await.expect("event"), opened());
    tokio::time::advance(RETEST - Duration::from_millis(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(svc.breaker().state(), BreakerState::Open, "not yet");
    assert!(events.try_recv().is_err(), "no event before the delay");
    // No request comes along: the timer alone moves it.
    let retesting = tokio::time::timeout(Duration::from_millis(5), events.recv())
        .await
        .expect("RETEST in time")
        .expect("event");
    assert_eq!(
        retesting,
        Event::BreakerRetesting {
            service: "ratings".into(),
            address: ADDRESS.into()
        }
    );
    assert_eq!(svc.breaker().state(), BreakerState::Retest);
    upstream.set(200);
    call(&mut svc).await.expect("probe answered");
    assert_eq!(
        events.try_recv().expect("event"),
        Event::BreakerClosed {
            service: "ratings".into(),
            address: ADDRESS.into()
        }
    );
    assert_eq!(svc.breaker().state(), BreakerState::Closed);
    let labels = [("service", "ratings"), ("instance", ADDRESS)];
    assert_eq!(
        recorder.gauge(&key("discovery_client_breaker_state", &labels)),
        Some(0.0)
    );
    for to in ["open", "retest", "closed"] {
        let mut l = labels.to_vec();
        l.push(("to", to));
        assert_eq!(
            recorder.counter(&key("discovery_client_breaker_transitions_total", &l)),
            1,
            "to {to}"
        );
    }
    assert_eq!(
        recorder.samples(&key("discovery_client_request_duration_seconds", &labels)),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_single_probe_goes_through_in_retest_while_concurrent_callers_are_turned_away() {
    let upstream = Upstream::new(500);
    let (mut svc, _events) = guarded(&upstream);
    let _ = call(&mut svc).await;
    tokio::time::advance(RETEST).await;
    tokio::task::yield_now().await;
    assert_eq!(svc.breaker().state(), BreakerState::Retest);
    upstream.set(200);
    upstream.hold.store(true, Ordering::SeqCst);
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move { call(&mut svc).await })
        })
        .collect();
    // Let every caller reach the breaker; the probe is now held at the instance.
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(upstream.hits(), 2, "the opening call and exactly one probe");
    upstream.release.notify_waiters();
    let mut answered = 0;
    let mut refused = 0;
    for caller in callers {
        match caller.await.expect("task") {
            Ok(_) => answered += 1,
            Err(Error::CircuitOpen { .. }) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((answered, refused), (1, 19));
    assert_eq!(svc.breaker().state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn acquire_holds_the_probe_for_the_next_call_and_release_gives_it_back() {
    let upstream = Upstream::new(500);
    let (mut svc, _events) = guarded(&upstream);
    let _ = call(&mut svc).await;
    tokio::time::advance(RETEST).await;
    let now = Instant::now();
    let mut first = svc.clone();
    let mut second = svc.clone();
    assert!(first.try_acquire(now), "the probe");
    assert!(first.try_acquire(now), "asking again keeps the same permit");
    assert!(!second.try_acquire(now), "one probe at a time");
    first.release();
    assert!(
        second.try_acquire(now),
        "released: the next caller may probe"
    );
    upstream.set(200);
    // The call uses the permit taken ahead.
    let answer = second
        .call(http::Request::new(()))
        .await
        .expect("probe answered");
    assert_eq!(answer.status(), 200);
    assert_eq!(svc.breaker().state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn four_xx_never_trips_and_the_classifier_is_pluggable() {
    let upstream = Upstream::new(404);
    let (mut svc, _events) = guarded(&upstream);
    for _ in 0..5 {
        let answer = call(&mut svc).await.expect("answer");
        assert_eq!(answer.status(), 404);
    }
    assert_eq!(svc.breaker().state(), BreakerState::Closed);

    #[derive(Debug)]
    struct TooManyRequestsFails;
    impl Classify for TooManyRequestsFails {
        fn classify(&self, attempt: Attempt<'_>) -> Outcome {
            match attempt {
                Attempt::Answered { status, .. } if status.as_u16() == 429 => Outcome::Failure,
                _ => Outcome::Success,
            }
        }
    }
    let upstream = Upstream::new(429);
    let layer = BreakerLayer::new("ratings", &Instance::new("1", ADDRESS), config())
        .classifier(TooManyRequestsFails);
    let mut svc = layer.layer(Fake(Arc::clone(&upstream)));
    let _ = call(&mut svc).await;
    assert_eq!(svc.breaker().state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn breakers_are_kept_by_address_and_closed_ones_of_departed_instances_forgotten() {
    let breakers = Breakers::new("ratings", config());
    let a = breakers.layer(&Instance::new("1", "http://a"));
    let b = breakers.layer(&Instance::new("2", "http://b"));
    assert!(Arc::ptr_eq(
        a.breaker(),
        breakers.layer(&Instance::new("1", "http://a")).breaker()
    ));
    let now = Instant::now();
    b.breaker()
        .try_acquire(now)
        .0
        .expect("closed")
        .record_failure(now);
    breakers.forget_departed(|_| false);
    assert!(
        !Arc::ptr_eq(a.breaker(), &breakers.breaker("http://a")),
        "closed and departed: a clean breaker next time"
    );
    assert!(
        Arc::ptr_eq(b.breaker(), &breakers.breaker("http://b")),
        "open breakers are kept so a flapping instance stays open"
    );
}

/// A leaf service of the user's own: its errors reach the breaker through `BoxError`. An
/// `io::Error` (or `Error::http`) is the instance's failure and opens the breaker; an error
/// of some other kind is `Error::Middleware`, which is not.
#[tokio::test(start_paused = true)]
async fn a_leaf_reports_transport_failures_by_io_error_or_error_http() {
    #[derive(Debug, thiserror::Error)]
    #[error("quota of the day used up")]
    struct Quota;

    type Failing =
        tower::util::BoxCloneSyncService<http::Request<()>, http::Response<Bytes>, tower::BoxError>;
    let leaf = |make: fn() -> tower::BoxError| -> Failing {
        tower::util::BoxCloneSyncService::new(tower::service_fn(move |_: http::Request<()>| {
            std::future::ready(Err::<http::Response<Bytes>, _>(make()))
        }))
    };
    /// What a case calls its leaf's error, and whether it should open the breaker.
    type Case = (&'static str, fn() -> tower::BoxError, bool);
    let cases: [Case; 4] = [
        (
            "io",
            || std::io::Error::from(std::io::ErrorKind::ConnectionReset).into(),
            true,
        ),
        (
            "io, wrapped",
            || Box::new(std::io::Error::other(Quota)),
            true,
        ),
        ("Error::http", || Error::http(ADDRESS, &Quota).into(), true),
        ("other", || Quota.into(), false),
    ];
    for (name, make, opens) in cases {
        let layer = BreakerLayer::new("ratings", &Instance::new("1", ADDRESS), config());
        let mut svc = layer.layer(leaf(make));
        let error = svc
            .ready()
            .await
            .expect("ready")
            .call(http::Request::new(()))
            .await
            .expect_err("fails");
        assert_eq!(error.is_instance_failure(), opens, "{name}: {error:?}");
        let state = if opens {
            BreakerState::Open
        } else {
            BreakerState::Closed
        };
        assert_eq!(svc.breaker().state(), state, "{name}: {error:?}");
        match (opens, &error) {
            (true, Error::Http { address, .. }) => assert_eq!(address, ADDRESS),
            (false, Error::Middleware(message)) => assert_eq!(message, "quota of the day used up"),
            _ => panic!("{name}: {error:?}"),
        }
    }
}

/// A 429 is back-pressure, not a failure: the breaker stays closed however many there are.
#[tokio::test(start_paused = true)]
async fn a_push_back_never_trips_the_breaker() {
    let upstream = Upstream::new(429);
    let (mut svc, _events) = guarded(&upstream);
    for _ in 0..5 {
        let answer = call(&mut svc).await.expect("answer");
        assert_eq!(answer.status(), 429);
    }
    assert_eq!(svc.breaker().state(), BreakerState::Closed);
}
