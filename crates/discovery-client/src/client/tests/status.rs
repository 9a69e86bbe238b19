//! What the client says about its calls: the metrics, and each instance's figures in
//! [`InstanceStatus`].

use tokio::time::Instant;

use super::*;
use crate::breaker::BreakerState;
use crate::test_metrics::{TestRecorder, key};

#[tokio::test(start_paused = true)]
async fn requests_breakers_cache_retries_and_all_down_are_counted_per_instance() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (transport, fakes) = instances(2);
    fakes[0].set(Behaviour::Status(500));
    let c = client(&transport, &fakes).build().expect("client");
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
    fakes[1].set(Behaviour::Status(500));
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
    let (one, two) = (fakes[0].url.as_str(), fakes[1].url.as_str());
    assert_eq!(requests(one, "failure"), 1, "{:?}", recorder.keys());
    assert_eq!(requests(two, "success"), 1);
    assert_eq!(requests(two, "failure"), 1);
    for address in [one, two] {
        let labels = vec![("service", "ratings"), ("instance", address)];
        assert_eq!(
            recorder.gauge(&key("discovery_client_breaker_state", &labels)),
            Some(2.0),
            "{address} open"
        );
        let mut to_open = labels.clone();
        to_open.push(("to", "open"));
        let transitions = key("discovery_client_breaker_transitions_total", &to_open);
        assert_eq!(recorder.counter(&transitions), 1);
        let durations = key("discovery_client_request_duration_seconds", &labels);
        assert!(recorder.samples(&durations) >= 1);
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
    let service = [("service", "ratings")];
    assert_eq!(
        recorder.counter(&key("discovery_client_retries_total", &service)),
        1
    );
    assert_eq!(
        recorder.counter(&key("discovery_client_all_down_total", &service)),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn instance_status_has_the_requests_failures_and_recent_latency_of_each_instance() {
    let (transport, fakes) = instances(2);
    fakes[0].set(after(10, Behaviour::Ratings));
    fakes[1].set(after(30, Behaviour::Ratings));
    // Plain turns, so each instance gets half the calls however slow it is.
    let c = client(&transport, &fakes)
        .balance(Balance::RoundRobin)
        .failure_limit(100)
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    let before = discovered(&c).await;
    assert_eq!((before[0].requests, before[0].latency_p50), (0, None));
    for _ in 0..99 {
        let _ = c.get("/ratings/widget").no_cache().await;
    }
    // Instance 2 slows down for its last answer: its p99 sees it, its median does not.
    fakes[1].set(after(250, Behaviour::Ratings));
    let started = Instant::now();
    let _ = c.get("/ratings/widget").no_cache().await;
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    // And instance 1 fails once, at once (retried on instance 2, quick again).
    fakes[1].set(after(30, Behaviour::Ratings));
    fakes[0].set(Behaviour::Status(503));
    let _ = c.get("/ratings/widget").no_cache().await;
    let status = c.instances();
    assert_eq!(
        status[0],
        InstanceStatus {
            id: "1".into(),
            address: fakes[0].url.clone(),
            state: BreakerState::Closed,
            in_flight: 0,
            requests: 51,
            failures: 1,
            latency_p50: Some(Duration::from_millis(10)),
            latency_p99: Some(Duration::from_millis(10)),
            latency_estimate: status[0].latency_estimate,
            share: 1.0,
            pushed_back_for: None,
        }
    );
    // Its quickest answer, 10 ms, decayed for the 280 ms since (τ = 10 s): 9.72 ms.
    let estimate = status[0].latency_estimate.expect("an estimate");
    assert_eq!(estimate.as_micros(), 9723, "{estimate:?}");
    assert_eq!(
        (status[1].requests, status[1].failures),
        (51, 0),
        "50 calls, and the retry after instance 1's failure"
    );
    assert_eq!(status[1].latency_p50, Some(Duration::from_millis(30)));
    assert_eq!(status[1].latency_p99, Some(Duration::from_millis(250)));
}

#[tokio::test(start_paused = true)]
async fn instance_status_has_the_latency_estimate_and_share_the_balancer_weighs() {
    let (transport, fakes) = instances(3);
    for (fake, ms) in fakes.iter().zip([10, 10, 40]) {
        fake.set(after(ms, Behaviour::Ratings));
    }
    let c = client(&transport, &fakes)
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    let before = discovered(&c).await;
    assert!(
        before
            .iter()
            .all(|i| i.latency_estimate.is_none() && i.share == 1.0),
        "no answer yet: a full share each"
    );
    // Five calls each: the first answer is left out, and an estimate counts after four.
    for _ in 0..15 {
        c.get("/ratings/widget").no_cache().await.expect("answer");
    }
    let status = c.instances();
    let estimates: Vec<_> = status.iter().map(|i| i.latency_estimate).collect();
    let ms = |ms| Some(Duration::from_millis(ms));
    assert_eq!(estimates, [ms(10), ms(10), ms(40)]);
    // Instance 3 is 40 / 13.5 of the tolerance (10 ms × 1.25 + 1 ms) slow: (13.5 / 40)^6
    // of a share, about 0.15 %, held at the floor of 1/256.
    let shares: Vec<f64> = status.iter().map(|i| i.share).collect();
    assert_eq!(&shares[..2], [1.0, 1.0]);
    assert!((shares[2] - 1.0 / 256.0).abs() < 1e-4, "{shares:?}");
}
