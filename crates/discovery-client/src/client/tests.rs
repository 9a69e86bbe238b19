//! The request path against real HTTP servers on loopback port 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::*;
use crate::{Source, StaticDiscovery};

/// How a fake instance answers: 0 = ok, 1 = 500, 2 = garbage body, 3 = hang, 4 = 404,
/// 5 = 500 after 150 ms, 6 = ok after 300 ms.
#[derive(Debug, Default)]
pub(super) struct Fake {
    pub(super) mode: AtomicU32,
    pub(super) hits: AtomicUsize,
}

pub(super) const OK: u32 = 0;
pub(super) const FAIL: u32 = 1;
const GARBAGE: u32 = 2;
pub(super) const HANG: u32 = 3;
const NOT_FOUND: u32 = 4;
pub(super) const SLOW_FAIL: u32 = 5;
pub(super) const SLOW: u32 = 6;

#[derive(Debug, Deserialize, PartialEq)]
pub(super) struct Rating {
    pub(super) item_id: String,
    pub(super) instance: u32,
}

async fn rating(State((n, fake)): State<(u32, Arc<Fake>)>) -> (StatusCode, String) {
    fake.hits.fetch_add(1, Ordering::SeqCst);
    match fake.mode.load(Ordering::SeqCst) {
        FAIL => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":\"boom\"}".into(),
        ),
        GARBAGE => (StatusCode::OK, "<html>not json".into()),
        HANG => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            (StatusCode::OK, String::new())
        }
        NOT_FOUND => (StatusCode::NOT_FOUND, "{\"error\":\"no such item\"}".into()),
        SLOW_FAIL => {
            tokio::time::sleep(Duration::from_millis(150)).await;
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "{\"error\":\"boom\"}".into(),
            )
        }
        SLOW => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            (
                StatusCode::OK,
                format!("{{\"item_id\":\"widget\",\"instance\":{n}}}"),
            )
        }
        _ => (
            StatusCode::OK,
            format!("{{\"item_id\":\"widget\",\"instance\":{n}}}"),
        ),
    }
}

/// Starts `n` fake instances; returns their addresses and controls.
pub(super) async fn fakes(n: u32) -> (Vec<String>, Vec<Arc<Fake>>) {
    let mut addresses = Vec::new();
    let mut controls = Vec::new();
    for i in 1..=n {
        let fake = Arc::new(Fake::default());
        let app = Router::new()
            .route("/ratings/widget", get(rating).post(rating))
            .with_state((i, Arc::clone(&fake)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        addresses.push(format!("http://{}", listener.local_addr().expect("addr")));
        tokio::spawn(async move { axum::serve(listener, app).await });
        controls.push(fake);
    }
    (addresses, controls)
}

pub(super) fn client(addresses: &[String]) -> ServiceClientBuilder {
    ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(addresses.iter().cloned()))
        .timeout(Duration::from_millis(300))
        .retest_delay(Duration::from_millis(400))
}

/// The next breaker event, skipping discovery's instance events.
pub(super) async fn next_breaker_event(events: &mut broadcast::Receiver<Event>) -> Event {
    let wait = async {
        loop {
            match events.recv().await.expect("event stream open") {
                Event::InstanceAdded { .. } | Event::InstanceRemoved { .. } => continue,
                other => return other,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3), wait)
        .await
        .expect("breaker event in time")
}

async fn instance_of(client: &ServiceClient) -> u32 {
    client
        .get_json::<Rating>("/ratings/widget")
        .await
        .expect("rating")
        .instance
}

#[tokio::test]
async fn round_robin_interleaves_across_instances() {
    let (addresses, _) = fakes(3).await;
    let c = client(&addresses).build().expect("client");
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(instance_of(&c).await);
    }
    assert_eq!(seen, vec![1, 2, 3, 1, 2, 3]);
}

#[tokio::test]
async fn failing_instance_opens_and_is_skipped_then_retested_and_closed() {
    let (addresses, fakes) = fakes(2).await;
    let c = client(&addresses).build().expect("client");
    let mut events = c.subscribe();
    fakes[0].mode.store(FAIL, Ordering::SeqCst);
    // The first call hits instance 1, fails, and is retried on instance 2.
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(
        next_breaker_event(&mut events).await,
        Event::BreakerOpened {
            service: "ratings".into(),
            address: addresses[0].clone()
        }
    );
    let hits_when_opened = fakes[0].hits.load(Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(instance_of(&c).await, 2);
    }
    assert_eq!(
        fakes[0].hits.load(Ordering::SeqCst),
        hits_when_opened,
        "no request while open"
    );
    // The retest timer moves it to Retest by itself.
    assert_eq!(
        next_breaker_event(&mut events).await,
        Event::BreakerRetesting {
            service: "ratings".into(),
            address: addresses[0].clone()
        }
    );
    fakes[0].mode.store(OK, Ordering::SeqCst);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(instance_of(&c).await);
    }
    assert!(seen.contains(&1), "probe went to instance 1: {seen:?}");
    assert_eq!(
        next_breaker_event(&mut events).await,
        Event::BreakerClosed {
            service: "ratings".into(),
            address: addresses[0].clone()
        }
    );
    let states: Vec<_> = c.instances().iter().map(|i| i.state).collect();
    assert_eq!(states, vec![crate::breaker::BreakerState::Closed; 2]);
}

#[tokio::test]
async fn a_hanging_instance_times_out_and_opens() {
    let (addresses, fakes) = fakes(1).await;
    fakes[0].mode.store(HANG, Ordering::SeqCst);
    let c = client(&addresses).build().expect("client");
    let started = Instant::now();
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(900),
        "{took:?}"
    );
    // Now open: the next call is turned away at once.
    let started = Instant::now();
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert_eq!(
        error,
        Error::AllInstancesDown {
            service: "ratings".into()
        }
    );
    assert!(started.elapsed() < Duration::from_millis(50));
}

/// Callers looping on a client over three instances, the first of which starts hanging.
const WORKERS: usize = 12;

/// What the callers saw when instance 1 started to hang (1 s timeout, no retest in time).
#[derive(Debug)]
struct HangRun {
    /// The client's count of attempts in flight to instance 1 when it started hanging.
    in_flight_at_hang: usize,
    /// Requests instance 1 received after it started hanging (all of them held).
    held: usize,
    /// Calls answered while instance 1 hung, before the first timeout.
    served_while_hanging: usize,
    /// Calls that took at least 0.9 × the timeout.
    waited: usize,
    /// Calls that failed.
    failed: Vec<Error>,
}

impl HangRun {
    /// The hanging instance held at most `bound` calls and as many waited for the timeout;
    /// every held call was retried elsewhere, and the others kept serving.
    fn assert_held_at_most(&self, bound: usize) {
        assert!(self.held <= bound, "{self:?}");
        assert!(self.waited <= bound, "{self:?}");
        assert!(
            self.failed.is_empty(),
            "held calls retried elsewhere: {self:?}"
        );
        assert!(self.served_while_hanging >= 100, "{self:?}");
    }
}

/// `WORKERS` callers loop for 0.2 s, then instance 1 hangs for the rest of the run (1.2 s),
/// longer than the 1 s timeout, after which its breaker opens and held calls are retried.
async fn hang_under_load(balance: Balance, hedging: Hedging) -> HangRun {
    let (addresses, fakes) = fakes(3).await;
    let c = client(&addresses)
        .timeout(Duration::from_secs(1))
        .retest_delay(Duration::from_secs(30))
        .balance(balance)
        .hedging(hedging)
        .build()
        .expect("client");
    instance_of(&c).await; // discovery has answered
    let hang_at = Instant::now() + Duration::from_millis(200);
    let stop = hang_at + Duration::from_millis(1200);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                // (started, took, outcome) of every call.
                let mut calls = Vec::new();
                while Instant::now() < stop {
                    let started = Instant::now();
                    let outcome = c.get_json::<Rating>("/ratings/widget").await;
                    calls.push((started, started.elapsed(), outcome.map(|_| ())));
                }
                calls
            })
        })
        .collect();
    tokio::time::sleep_until(hang_at).await;
    // One thread runs the callers, the instances and this: nothing moves in between.
    let in_flight_at_hang = c.inner.endpoints.borrow().as_ref().expect("endpoints")[0]
        .in_flight
        .get();
    let hits_at_hang = fakes[0].hits.load(Ordering::SeqCst);
    fakes[0].mode.store(HANG, Ordering::SeqCst);
    let first_timeout = hang_at + Duration::from_millis(900);
    let mut run = HangRun {
        in_flight_at_hang,
        held: 0,
        served_while_hanging: 0,
        waited: 0,
        failed: Vec::new(),
    };
    for worker in workers {
        for (started, took, outcome) in worker.await.expect("worker") {
            match outcome {
                Ok(()) if started >= hang_at && started + took < first_timeout => {
                    run.served_while_hanging += 1;
                }
                Ok(()) => {}
                Err(e) => run.failed.push(e),
            }
            if took >= Duration::from_millis(900) {
                run.waited += 1;
            }
        }
    }
    run.held = fakes[0].hits.load(Ordering::SeqCst) - hits_at_hang;
    run
}

#[tokio::test]
async fn a_hanging_instance_gets_no_more_than_its_share_of_the_calls_in_flight() {
    let run = hang_under_load(Balance::LeastPending, Hedging::Off).await;
    // A pick goes to instance 1 only while it holds no more calls than either other
    // instance (counts per thread: this test's runtime has one thread), and the callers
    // hold at most `WORKERS - 1` besides the one picking: it never holds more than a third
    // of them, plus the one picked (4 of 12), where plain round-robin sends every caller
    // there in turn (the test below).
    run.assert_held_at_most((WORKERS - 1) / 3 + 1);
    // In these terms: what it held when it started hanging (its share), and hardly more.
    assert!(run.held <= run.in_flight_at_hang + 2, "{run:?}");
}

#[tokio::test]
async fn plain_round_robin_sends_every_caller_to_a_hanging_instance() {
    let run = hang_under_load(Balance::RoundRobin, Hedging::Off).await;
    assert_eq!(run.held, WORKERS, "{run:?}");
    assert_eq!(run.waited, WORKERS, "{run:?}");
    assert!(
        run.failed.is_empty(),
        "held calls retried elsewhere: {run:?}"
    );
}

#[tokio::test]
async fn two_choices_keep_half_the_callers_off_a_hanging_instance() {
    let run = hang_under_load(Balance::PowerOfTwoChoices, Hedging::Off).await;
    // A pick goes to instance 1 only when it holds no more calls than the instance it is
    // compared with, which holds at most the callers not stuck on 1 (one thread counts
    // them all here), minus the one picking: it never holds more than half of
    // `WORKERS - 1`, plus the one picked (6 of 12), where plain round-robin sends all 12.
    run.assert_held_at_most((WORKERS - 1) / 2 + 1);
}

/// The default client (two choices, adaptive hedging): the calls held by the hanging
/// instance are hedged after 50 ms, so none waits for the timeout and none fails.
#[tokio::test]
async fn by_default_no_call_waits_for_a_hanging_instance() {
    let run = hang_under_load(Balance::default(), Hedging::default()).await;
    assert_eq!(run.waited, 0, "{run:?}");
    assert!(run.failed.is_empty(), "{run:?}");
    // Hedged-over attempts stay counted on instance 1 but no longer hold their callers, so
    // the half bound above does not hold (9 or 10 of 12 here): what hedging buys is that
    // none of them waits.
    assert!(run.held < WORKERS, "{run:?}");
    assert!(run.held >= 1, "the hang was met: {run:?}");
    assert!(run.served_while_hanging >= 100, "{run:?}");
}

#[tokio::test]
async fn not_found_is_the_callers_problem_and_never_trips_the_breaker() {
    let (addresses, fakes) = fakes(1).await;
    fakes[0].mode.store(NOT_FOUND, Ordering::SeqCst);
    let c = client(&addresses).build().expect("client");
    for _ in 0..5 {
        let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
        assert!(
            matches!(error, Error::Status { status: 404, .. }),
            "{error:?}"
        );
    }
    assert_eq!(
        fakes[0].hits.load(Ordering::SeqCst),
        5,
        "no retries for a 404"
    );
    assert_eq!(c.instances()[0].state, crate::breaker::BreakerState::Closed);
}

#[tokio::test]
async fn garbage_body_is_a_failure_and_is_retried_elsewhere() {
    let (addresses, fakes) = fakes(2).await;
    fakes[0].mode.store(GARBAGE, Ordering::SeqCst);
    let c = client(&addresses).build().expect("client");
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(c.instances()[0].state, crate::breaker::BreakerState::Open);
    // Alone, the garbage instance gives a decode error.
    let (alone, fakes) = self::fakes(1).await;
    fakes[0].mode.store(GARBAGE, Ordering::SeqCst);
    let c = client(&alone).build().expect("client");
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert!(matches!(error, Error::Decode { .. }), "{error:?}");
}

#[tokio::test]
async fn no_instances_is_all_down_at_once() {
    let c = client(&[]).build().expect("client");
    let started = Instant::now();
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert_eq!(
        error,
        Error::AllInstancesDown {
            service: "ratings".into()
        }
    );
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[tokio::test]
async fn refused_connections_open_breakers_then_stale_answers_are_served() {
    let (addresses, fakes) = fakes(1).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let mut all = addresses.clone();
    all.push(dead.clone());
    let c = client(&all)
        .cache_ttl(Duration::ZERO)
        .build()
        .expect("client");
    let first = c
        .get_json_cached::<Rating>("/ratings/widget")
        .await
        .expect("live");
    assert_eq!(first.source, Source::Live);
    assert_eq!(first.value.instance, 1);
    // Instance 1 starts failing; the dead one refuses connections.
    fakes[0].mode.store(FAIL, Ordering::SeqCst);
    let stale = c
        .get_json_cached::<Rating>("/ratings/widget")
        .await
        .expect("stale");
    assert_eq!(stale.source, Source::Stale);
    assert_eq!(stale.value.instance, 1);
    let states: Vec<_> = c.instances().iter().map(|i| i.state).collect();
    assert_eq!(states, vec![crate::breaker::BreakerState::Open; 2]);
    // Nothing cached for another path: the error comes through.
    let error = c
        .get_json_cached::<Rating>("/ratings/other")
        .await
        .unwrap_err();
    assert_eq!(
        error,
        Error::AllInstancesDown {
            service: "ratings".into()
        }
    );
}

#[tokio::test]
async fn cached_answers_coalesce_and_expire() {
    let (addresses, fakes) = fakes(1).await;
    let c = client(&addresses)
        .cache_ttl(Duration::from_millis(300))
        .build()
        .expect("client");
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get_json_cached::<Rating>("/ratings/widget").await })
        })
        .collect();
    for call in calls {
        call.await.expect("task").expect("answer");
    }
    assert_eq!(
        fakes[0].hits.load(Ordering::SeqCst),
        1,
        "ten concurrent misses, one call"
    );
    let hit = c
        .get_json_cached::<Rating>("/ratings/widget")
        .await
        .expect("hit");
    assert_eq!(hit.source, Source::Cache);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let live = c
        .get_json_cached::<Rating>("/ratings/widget")
        .await
        .expect("live");
    assert_eq!(live.source, Source::Live);
    assert_eq!(fakes[0].hits.load(Ordering::SeqCst), 2);
}

/// A rating that counts how often it is decoded.
#[derive(Debug)]
struct Counted;

static DECODED: AtomicUsize = AtomicUsize::new(0);

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Rating::deserialize(d)?;
        DECODED.fetch_add(1, Ordering::SeqCst);
        Ok(Counted)
    }
}

#[tokio::test]
async fn each_answer_is_decoded_once() {
    let (addresses, _fakes) = fakes(1).await;
    let c = client(&addresses).build().expect("client");
    let before = DECODED.load(Ordering::SeqCst);
    let cached = || c.get_json_cached::<Counted>("/ratings/widget");
    let miss = cached().await.expect("live").source;
    let after_miss = DECODED.load(Ordering::SeqCst) - before;
    let hit = cached().await.expect("hit").source;
    let after_hit = DECODED.load(Ordering::SeqCst) - before;
    c.get_json::<Counted>("/ratings/widget")
        .await
        .expect("uncached");
    let after_uncached = DECODED.load(Ordering::SeqCst) - before;
    assert_eq!((miss, hit), (Source::Live, Source::Cache));
    // A miss is checked and kept; a hit is decoded from the cache; an uncached call once.
    assert_eq!((after_miss, after_hit, after_uncached), (1, 2, 3));
}

#[tokio::test]
async fn retries_stay_within_the_budget() {
    let (addresses, fakes) = fakes(3).await;
    for f in &fakes {
        f.mode.store(FAIL, Ordering::SeqCst);
    }
    let c = client(&addresses)
        .failure_limit(1000)
        .retry_budget(0.0)
        .build()
        .expect("client");
    // The budget's floor allows 10 retries/s over its 10 s window (100); beyond that, each
    // request makes a single attempt.
    for _ in 0..200 {
        let _ = c.get_json::<Rating>("/ratings/widget").await;
    }
    let hits: usize = fakes.iter().map(|f| f.hits.load(Ordering::SeqCst)).sum();
    assert!(
        hits <= 200 + 100,
        "retries beyond the budget: {hits} attempts"
    );
    assert!(hits > 200, "the floor allows some retries: {hits}");
}

#[tokio::test]
async fn post_is_not_retried_unless_allowed() {
    let (addresses, fakes) = fakes(2).await;
    for f in &fakes {
        f.mode.store(FAIL, Ordering::SeqCst);
    }
    let c = client(&addresses)
        .failure_limit(100)
        .build()
        .expect("client");
    let error = c
        .send(
            Method::POST,
            "/ratings/widget",
            Some(Bytes::from_static(b"{}")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Status { status: 500, .. }),
        "{error:?}"
    );
    let hits: usize = fakes.iter().map(|f| f.hits.load(Ordering::SeqCst)).sum();
    assert_eq!(hits, 1, "a failed POST is not retried");
    // GET is retried: two instances, two more attempts.
    let _ = c.get_json::<Rating>("/ratings/widget").await;
    let hits: usize = fakes.iter().map(|f| f.hits.load(Ordering::SeqCst)).sum();
    assert_eq!(hits, 3);
}

#[tokio::test]
async fn deadline_bounds_all_attempts() {
    let (addresses, fakes) = fakes(3).await;
    for f in &fakes {
        f.mode.store(HANG, Ordering::SeqCst);
    }
    let c = client(&addresses)
        .deadline(Duration::from_millis(450))
        .build()
        .expect("client");
    let started = Instant::now();
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(700), "{took:?}");
    assert!(
        matches!(
            error,
            Error::DeadlineExceeded { .. } | Error::Timeout { .. }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn bad_configuration_is_a_typed_error() {
    let no_discovery = ServiceClient::builder("ratings").build().unwrap_err();
    assert!(matches!(no_discovery, Error::Config(ref m) if m.contains("discovery")));
    let bad_name = ServiceClient::builder("rat ings")
        .discovery(StaticDiscovery::new(["http://127.0.0.1:1"]))
        .build()
        .unwrap_err();
    assert!(matches!(bad_name, Error::Config(ref m) if m.contains("service name")));
    let zero = client(&[]).failure_limit(0).build().unwrap_err();
    assert!(matches!(zero, Error::Config(ref m) if m.contains("failure_limit")));
    let bad_path = client(&[])
        .build()
        .expect("client")
        .get("ratings")
        .await
        .unwrap_err();
    assert!(matches!(bad_path, Error::InvalidRequest(_)));
}

#[tokio::test]
async fn an_unreachable_registry_makes_calls_fail_fast_not_wait() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let c = ServiceClient::builder("ratings")
        .discovery(crate::RegistryDiscovery::new(closed))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let mut events = c.subscribe();
    let outage = next_breaker_event(&mut events).await;
    assert!(
        matches!(outage, Event::DiscoveryOutage { .. }),
        "{outage:?}"
    );
    let started = Instant::now();
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert_eq!(
        error,
        Error::AllInstancesDown {
            service: "ratings".into()
        }
    );
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn extra_headers_reach_the_instance() {
    async fn echo(headers: axum::http::HeaderMap) -> String {
        let value = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        format!("{{\"item_id\":\"{value}\",\"instance\":1}}")
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    let app = Router::new().route("/echo", get(echo));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let c = client(&[address]).build().expect("client");
    let mut headers = http::HeaderMap::new();
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    headers.insert("traceparent", http::HeaderValue::from_static(trace));
    let direct: Rating = c.get_json_with("/echo", &headers).await.expect("direct");
    assert_eq!(direct.item_id, trace);
    let cached = c
        .get_json_cached_with::<Rating>("/echo", &headers)
        .await
        .expect("cached");
    assert_eq!(cached.value.item_id, trace);
    let plain: Rating = c.get_json("/echo").await.expect("plain");
    assert_eq!(plain.item_id, "none");
}

#[tokio::test]
async fn red_breaker_and_cache_metrics_are_recorded_per_instance() {
    use crate::test_metrics::{TestRecorder, key};
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (addresses, fakes) = fakes(2).await;
    fakes[0].mode.store(FAIL, Ordering::SeqCst);
    let c = client(&addresses).build().expect("client");
    // Instance 1 fails and opens; the call is retried on instance 2.
    let first = c
        .get_json_cached::<Rating>("/ratings/widget")
        .await
        .expect("answer");
    assert_eq!(first.value.instance, 2);
    let hit = c
        .get_json_cached::<Rating>("/ratings/widget")
        .await
        .expect("hit");
    assert_eq!(hit.source, Source::Cache);
    fakes[1].mode.store(FAIL, Ordering::SeqCst);
    let _ = c.get_json::<Rating>("/ratings/widget").await;
    let _ = c.get_json::<Rating>("/ratings/widget").await; // both open: all down
    let requests = |address: &str, outcome: &str| {
        recorder.counter(&key(
            "discovery_client_requests_total",
            &[
                ("service", "ratings"),
                ("instance", address),
                ("outcome", outcome),
            ],
        ))
    };
    let (one, two) = (addresses[0].as_str(), addresses[1].as_str());
    assert_eq!(requests(one, "failure"), 1, "{:?}", recorder.keys());
    assert_eq!(requests(two, "success"), 1);
    assert_eq!(requests(two, "failure"), 1);
    for address in [one, two] {
        let l = vec![("service", "ratings"), ("instance", address)];
        assert_eq!(
            recorder.gauge(&key("discovery_client_breaker_state", &l)),
            Some(2.0),
            "{address} open"
        );
        let mut to_open = l.clone();
        to_open.push(("to", "open"));
        assert_eq!(
            recorder.counter(&key("discovery_client_breaker_transitions_total", &to_open)),
            1
        );
        assert!(recorder.samples(&key("discovery_client_request_duration_seconds", &l)) >= 1);
    }
    let cache = |result| {
        recorder.counter(&key(
            "discovery_client_cache_total",
            &[("service", "ratings"), ("result", result)],
        ))
    };
    assert_eq!((cache("miss"), cache("hit"), cache("stale")), (1, 1, 0));
    // One retry: instance 1's failure sent the first call to instance 2. The third call's
    // failure found no other instance to retry on.
    assert_eq!(
        recorder.counter(&key(
            "discovery_client_retries_total",
            &[("service", "ratings")]
        )),
        1
    );
    assert_eq!(
        recorder.counter(&key(
            "discovery_client_all_down_total",
            &[("service", "ratings")]
        )),
        1
    );
}
