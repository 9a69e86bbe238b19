//! Back-pressure, on paused time: an instance that answers 429 (or 503 with `Retry-After`)
//! is avoided for the time it asked, the call goes elsewhere, and no breaker opens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::header::RETRY_AFTER;
use tokio::time::Instant;

use super::*;
use crate::breaker::BreakerState::{self, Closed, Open};
use crate::test_metrics::{TestRecorder, key};

/// A status and a `Retry-After` to answer instead of a fake's answer.
type Rule = (u16, Option<String>);

/// What instances answer instead of their fake's answer (which still counts the hit), by
/// URL.
#[derive(Clone, Debug, Default)]
struct PushBacks(Arc<Mutex<HashMap<String, Rule>>>);

impl PushBacks {
    /// `fake` answers `status` with this `Retry-After` from now on.
    fn set(&self, fake: &FakeRatings, status: u16, retry_after: Option<&str>) {
        let rule = (status, retry_after.map(str::to_string));
        self.lock().insert(fake.url.clone(), rule);
    }

    /// `fake` answers as its fake does again.
    fn clear(&self, fake: &FakeRatings) {
        self.lock().remove(&fake.url);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Rule>> {
        self.0.lock().expect("not poisoned")
    }
}

/// A client of `fakes` as [`client`] makes one, whose answers `push_backs` may replace.
fn pushed_client(
    transport: &InMemory,
    fakes: &[FakeRatings],
    push_backs: &PushBacks,
) -> ServiceClientBuilder {
    let (memory, push_backs) = (transport.clone(), push_backs.clone());
    let transport = tower::service_fn(move |request: http::Request<Bytes>| {
        let authority = request.uri().authority().map(|a| a.to_string());
        let url = format!("http://{}", authority.unwrap_or_default());
        let rule = push_backs.lock().get(&url).cloned();
        let answer = memory.clone().oneshot(request);
        async move {
            let mut answer = answer.await?;
            if let Some((status, retry_after)) = rule {
                *answer.status_mut() = http::StatusCode::from_u16(status).expect("a status");
                if let Some(value) = retry_after {
                    let value = value.parse().expect("a header value");
                    answer.headers_mut().insert(RETRY_AFTER, value);
                }
            }
            Ok::<_, std::io::Error>(answer.map(Full::new))
        }
    });
    ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(fakes.iter().map(|f| f.url.clone())))
        .transport(transport)
        .timeout(TIMEOUT)
        .retest_delay(RETEST)
}

fn states(c: &ServiceClient) -> Vec<BreakerState> {
    c.instances().iter().map(|i| i.state).collect()
}

/// `discovery_client_requests_total{outcome}` of `address`.
fn requests(recorder: &TestRecorder, address: &str, outcome: &str) -> u64 {
    recorder.counter(&key(
        "discovery_client_requests_total",
        &[
            ("service", "ratings"),
            ("instance", address),
            ("outcome", outcome),
        ],
    ))
}

fn overloaded(retry_after: Option<Duration>) -> Error {
    Error::Overloaded {
        service: "ratings".into(),
        retry_after,
    }
}

/// Waits until `at` on paused time.
async fn until(at: Instant) {
    tokio::time::sleep_until(at).await;
}

/// The exact window: an instance answering 429 with `Retry-After: 2` is passed over for two
/// seconds (the call retried elsewhere, nothing failing), then used again.
#[tokio::test(start_paused = true)]
async fn a_429_instance_is_avoided_for_its_retry_after_then_used_again() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (transport, fakes) = instances(2);
    let push_backs = PushBacks::default();
    push_backs.set(&fakes[0], 429, Some("2"));
    let c = pushed_client(&transport, &fakes, &push_backs)
        .build()
        .expect("client");
    let started = Instant::now();
    assert_eq!(instance_of(&c).await, 2, "retried on instance 2");
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(hits(&fakes), [1, 1]);
    // Instance 1 would answer now, but it asked for two seconds.
    push_backs.clear(&fakes[0]);
    for _ in 0..3 {
        assert_eq!(instance_of(&c).await, 2);
    }
    let pushed_back = |c: &ServiceClient| -> Vec<Option<Duration>> {
        c.instances().iter().map(|i| i.pushed_back_for).collect()
    };
    assert_eq!(pushed_back(&c), [Some(Duration::from_secs(2)), None]);
    until(started + Duration::from_millis(1999)).await;
    assert_eq!(pushed_back(&c), [Some(Duration::from_millis(1)), None]);
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(
        hits(&fakes),
        [1, 5],
        "instance 1 passed over for two seconds"
    );
    until(started + Duration::from_secs(2)).await;
    assert_eq!(pushed_back(&c), [None, None]);
    assert_eq!(instance_of(&c).await, 1, "and used again after them");
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(states(&c), [Closed, Closed]);
    let one = fakes[0].url.as_str();
    assert_eq!(requests(&recorder, one, "overloaded"), 1);
    assert_eq!(requests(&recorder, one, "failure"), 0);
    assert_eq!(c.instances()[0].failures, 0);
    let service = [("service", "ratings")];
    let retries = key("discovery_client_retries_total", &service);
    assert_eq!(recorder.counter(&retries), 1);
    let calls = key("discovery_client_overloaded_total", &service);
    assert_eq!(recorder.counter(&calls), 0, "no call failed");
}

/// A 503 with `Retry-After: 7` on every instance opens no breaker: the caller is told the
/// service is overloaded, for seven seconds, without another request; a 503 without
/// `Retry-After` is still a failure.
#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_opens_no_breaker_and_one_without_does() {
    let (transport, fakes) = instances(2);
    let push_backs = PushBacks::default();
    for fake in &fakes {
        push_backs.set(fake, 503, Some("7"));
    }
    let c = pushed_client(&transport, &fakes, &push_backs)
        .build()
        .expect("client");
    let started = Instant::now();
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert_eq!(error, overloaded(Some(Duration::from_secs(7))));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    assert!(!error.is_instance_failure());
    assert_eq!(
        error.to_string(),
        "ratings: every instance pushed back (retry after 7s)"
    );
    assert_eq!(hits(&fakes), [1, 1]);
    assert_eq!(states(&c), [Closed, Closed]);
    // While they are avoided, calls end at once without a request.
    until(started + Duration::from_secs(1)).await;
    let again = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert_eq!(again, overloaded(Some(Duration::from_secs(6))));
    assert_eq!(hits(&fakes), [1, 1]);
    // After the seven seconds, and a 503 without Retry-After: instance 1's breaker opens.
    until(started + Duration::from_secs(7)).await;
    push_backs.set(&fakes[0], 503, None);
    push_backs.clear(&fakes[1]);
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(states(&c), [Open, Closed]);
}

/// When every instance answers 429, the call is `Overloaded` with the shortest wait any of
/// them asked for, and no breaker opens.
#[tokio::test(start_paused = true)]
async fn every_instance_answering_429_is_overloaded_with_the_shortest_retry_after() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (transport, fakes) = instances(3);
    let push_backs = PushBacks::default();
    push_backs.set(&fakes[0], 429, Some("5"));
    push_backs.set(&fakes[1], 429, Some("2"));
    push_backs.set(&fakes[2], 429, Some("9"));
    let c = pushed_client(&transport, &fakes, &push_backs)
        .build()
        .expect("client");
    let error = c.get("/ratings/widget").no_cache().await.unwrap_err();
    assert_eq!(error, overloaded(Some(Duration::from_secs(2))));
    assert_eq!(hits(&fakes), [1, 1, 1], "one try each, within max_retries");
    assert_eq!(states(&c), [Closed; 3]);
    let service = [("service", "ratings")];
    let calls = key("discovery_client_overloaded_total", &service);
    assert_eq!(recorder.counter(&calls), 1);
    let all_down = key("discovery_client_all_down_total", &service);
    assert_eq!(recorder.counter(&all_down), 0);
}

/// A 429 that does not say how long avoids its instance for a second.
/// Instance 1 pushes back once with `status` and `retry_after` (to a client set up by
/// `settings`): calls go to instance 2 until exactly `avoided` has passed (to the
/// millisecond), then to instance 1 again, whose breaker never opened.
async fn avoided_exactly(
    status: u16,
    retry_after: Option<&str>,
    settings: impl FnOnce(ServiceClientBuilder) -> ServiceClientBuilder,
    avoided: Duration,
) {
    let (transport, fakes) = instances(2);
    let push_backs = PushBacks::default();
    push_backs.set(&fakes[0], status, retry_after);
    let c = settings(pushed_client(&transport, &fakes, &push_backs))
        .build()
        .expect("client");
    let started = Instant::now();
    assert_eq!(instance_of(&c).await, 2);
    push_backs.clear(&fakes[0]);
    until(started + avoided - Duration::from_millis(1)).await;
    assert_eq!(instance_of(&c).await, 2, "still avoided");
    until(started + avoided).await;
    assert_eq!(instance_of(&c).await, 1, "used again after {avoided:?}");
    assert_eq!(states(&c), [Closed, Closed]);
}

#[tokio::test(start_paused = true)]
async fn a_429_without_retry_after_is_avoided_for_a_second() {
    avoided_exactly(429, None, |c| c, Duration::from_secs(1)).await;
}

/// `Retry-After` as an HTTP date is honoured too (to the second it names), and a long one is
/// capped by `max_retry_after`.
#[tokio::test(start_paused = true)]
async fn retry_after_as_a_date_is_honoured_and_a_long_one_capped() {
    // A date ten seconds on is to the second: between 9 and 10 s from now.
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(10));
    let (transport, fakes) = instances(2);
    let push_backs = PushBacks::default();
    push_backs.set(&fakes[0], 503, Some(&date));
    let c = pushed_client(&transport, &fakes, &push_backs)
        .build()
        .expect("client");
    let started = Instant::now();
    assert_eq!(instance_of(&c).await, 2);
    push_backs.clear(&fakes[0]);
    until(started + Duration::from_secs(9)).await;
    assert_eq!(instance_of(&c).await, 2);
    until(started + Duration::from_secs(10)).await;
    assert_eq!(instance_of(&c).await, 1);
    assert_eq!(states(&c), [Closed, Closed]);
    // An hour, capped at 3 s.
    let cap = |c: ServiceClientBuilder| c.max_retry_after(Duration::from_secs(3));
    avoided_exactly(429, Some("3600"), cap, Duration::from_secs(3)).await;
}

/// A request that is not retried (a POST) is not retried after a push-back either: the
/// instance may have done some of the work. The caller is told to wait.
#[tokio::test(start_paused = true)]
async fn a_non_idempotent_request_is_not_retried_after_a_push_back() {
    let (transport, fakes) = instances(2);
    let push_backs = PushBacks::default();
    push_backs.set(&fakes[0], 429, Some("2"));
    let c = pushed_client(&transport, &fakes, &push_backs)
        .build()
        .expect("client");
    let error = c.post("/ratings/widget").await.unwrap_err();
    assert_eq!(error, overloaded(Some(Duration::from_secs(2))));
    assert_eq!(hits(&fakes), [1, 0]);
    // Marked idempotent, it is retried; here instance 1 is still avoided, so it goes to 2.
    let answer = c
        .post("/ratings/widget")
        .idempotent(true)
        .await
        .expect("answer");
    assert_eq!(answer.instance().id, "2");
    assert_eq!(hits(&fakes), [1, 1]);
}

/// A hedged-over attempt that ends with a push-back avoids its instance too, and opens
/// nothing.
#[tokio::test(start_paused = true)]
async fn a_hedged_over_push_back_avoids_its_instance() {
    let (transport, fakes) = instances(2);
    let push_backs = PushBacks::default();
    fakes[0].set(after(100, Behaviour::Ratings));
    push_backs.set(&fakes[0], 429, Some("2"));
    let c = pushed_client(&transport, &fakes, &push_backs)
        .hedge_after(Duration::from_millis(50))
        .build()
        .expect("client");
    let started = Instant::now();
    assert_eq!(instance_of(&c).await, 2, "the hedge answers");
    until(started + Duration::from_millis(100)).await;
    tokio::task::yield_now().await;
    assert_eq!(fakes[0].in_flight(), 0, "instance 1 pushed back at 100 ms");
    fakes[0].set(Behaviour::Ratings);
    push_backs.clear(&fakes[0]);
    until(started + Duration::from_millis(2099)).await;
    assert_eq!(instance_of(&c).await, 2);
    until(started + Duration::from_millis(2100)).await;
    assert_eq!(instance_of(&c).await, 1);
    assert_eq!(states(&c), [Closed, Closed]);
}
