//! The guards beyond the consecutive-failure breaker, through the public API, on paused time
//! over fake instances in memory:
//!
//! - a capped backoff multiplier and jitter on the retest delay;
//! - with every breaker open the client fails fast, sends exactly one probe per instance
//!   when the retest delay has passed, and recovers as soon as one instance does.
//!
//! (The retry budget and the overall deadline are in the client's own tests; the same fail-fast
//! against the real programs, paused with SIGSTOP, is in crates/system-tests.)

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use discovery_client::{Error, Event, ServiceClient, StaticDiscovery};
use fake_ratings::{Behaviour, FakeRatings, InMemory};
use http_body_util::Full;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tower::ServiceExt;

/// A client of the instances at `addresses`, through `transport`.
fn client(transport: &InMemory, addresses: &[String]) -> discovery_client::ServiceClientBuilder {
    ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(addresses.to_vec()))
        .transport(
            transport
                .clone()
                .map_response(|answer: http::Response<Bytes>| answer.map(Full::new)),
        )
}

/// Addresses where nothing answers: every connection is refused at once.
fn refusing(n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("http://10.0.0.{i}:80")).collect()
}

/// The next breaker event, with the moment it was sent (the receiver waits for it, so the
/// moment is exact on paused time).
async fn next_breaker_event(events: &mut broadcast::Receiver<Event>) -> (Instant, Event) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .expect("an event in time")
            .expect("events");
        if matches!(
            event,
            Event::BreakerOpened { .. }
                | Event::BreakerRetesting { .. }
                | Event::BreakerClosed { .. }
        ) {
            return (Instant::now(), event);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_retest_delay_backs_off_and_stays_under_its_cap() {
    let dead = refusing(1);
    let c = client(&InMemory::new(), &dead)
        .timeout(Duration::from_millis(200))
        .retest_delay(Duration::from_millis(100))
        .retest_backoff(2.0, Duration::from_millis(400))
        .build()
        .unwrap();
    let mut events = c.subscribe();
    let mut delays = Vec::new();
    // Each probe is refused at once, so the breaker reopens with a doubled delay.
    let _ = c.get("/ratings/widget").no_cache().await;
    let (mut opened_at, event) = next_breaker_event(&mut events).await;
    assert!(matches!(event, Event::BreakerOpened { .. }), "{event:?}");
    while delays.len() < 5 {
        let (at, event) = next_breaker_event(&mut events).await;
        assert!(matches!(event, Event::BreakerRetesting { .. }), "{event:?}");
        delays.push(at - opened_at);
        let _ = c.get("/ratings/widget").no_cache().await; // the probe, refused
        let (at, event) = next_breaker_event(&mut events).await;
        assert!(matches!(event, Event::BreakerOpened { .. }), "{event:?}");
        opened_at = at;
    }
    let ms = |ms| Duration::from_millis(ms);
    assert_eq!(delays, [ms(100), ms(200), ms(400), ms(400), ms(400)]);
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_the_retests_of_instances_that_failed_together() {
    let dead = refusing(12);
    let c = client(&InMemory::new(), &dead)
        .retest_delay(Duration::from_millis(400))
        .retest_jitter(0.5)
        .max_retries(0)
        .build()
        .unwrap();
    let mut events = c.subscribe();
    let started = Instant::now();
    // Twelve calls open the twelve breakers at the same moment.
    for _ in 0..12 {
        let _ = c.get("/ratings/widget").no_cache().await;
    }
    let mut delays = Vec::new();
    while delays.len() < 12 {
        if let (at, Event::BreakerRetesting { .. }) = next_breaker_event(&mut events).await {
            delays.push(at - started);
        }
    }
    let (min, max) = (*delays.iter().min().unwrap(), *delays.iter().max().unwrap());
    // Drawn from 400 ms ± 50 %: within 200..=600 ms, and not all at the same moment.
    assert!(
        min >= Duration::from_millis(200) && max <= Duration::from_millis(600),
        "{delays:?}"
    );
    assert!(
        max - min >= Duration::from_millis(100),
        "not spread: {delays:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn with_every_breaker_open_calls_fail_fast_and_one_probe_per_instance_goes_out() {
    let transport = InMemory::new();
    let fakes: Vec<FakeRatings> = (1..=3)
        .map(|n| transport.instance(n, Behaviour::Hang))
        .collect();
    let urls: Vec<String> = fakes.iter().map(|f| f.url.clone()).collect();
    let timeout = Duration::from_millis(200);
    let retest = Duration::from_secs(1);
    let c = client(&transport, &urls)
        .timeout(timeout)
        .retest_delay(retest)
        .build()
        .unwrap();
    let mut events = c.subscribe();

    // A call that times out on every instance it tries opens one breaker, the first to time
    // out's (it may be a slow request, not sick instances): three calls open all three.
    let mut opened = Vec::new();
    for _ in 0..3 {
        let answer = c.get("/ratings/widget").no_cache().await;
        assert!(matches!(answer, Err(Error::Timeout { .. })), "{answer:?}");
        let mut by_this_call = Vec::new();
        while let Ok(event) = events.try_recv() {
            if let Event::BreakerOpened { address, .. } = event {
                by_this_call.push(address);
            }
        }
        assert_eq!(by_this_call.len(), 1, "{by_this_call:?}");
        opened.append(&mut by_this_call);
    }
    opened.sort();
    assert_eq!(opened, urls);
    let opened_by = Instant::now();

    // Every breaker open: each call fails at once, and nothing reaches the instances.
    let hits: usize = fakes.iter().map(FakeRatings::hits).sum();
    for _ in 0..50 {
        let started = Instant::now();
        let answer = c.get("/ratings/widget").no_cache().await;
        assert!(
            matches!(answer, Err(Error::AllInstancesDown { .. })),
            "{answer:?}"
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
    assert_eq!(fakes.iter().map(FakeRatings::hits).sum::<usize>(), hits);

    // Once the retest delay has passed: a burst of 30 concurrent calls sends exactly one
    // probe to each instance; every other call is turned away at once.
    let mut retesting = 0;
    while retesting < 3 {
        if let (_, Event::BreakerRetesting { .. }) = next_breaker_event(&mut events).await {
            retesting += 1;
        }
    }
    assert!(Instant::now() <= opened_by + retest);
    for fake in &fakes {
        fake.reset_max();
    }
    let before: Vec<usize> = fakes.iter().map(FakeRatings::hits).collect();
    let burst: Vec<_> = (0..30)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                (c.get("/ratings/widget").no_cache().await, started.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for call in burst {
        answers.push(call.await.expect("call"));
    }
    let fast_failures = answers
        .iter()
        .filter(|(a, took)| matches!(a, Err(Error::AllInstancesDown { .. })) && took.is_zero())
        .count();
    assert_eq!(fast_failures, 27, "{answers:?}");
    for (fake, before) in fakes.iter().zip(before) {
        assert_eq!(fake.hits() - before, 1, "one probe to {}", fake.url);
        assert_eq!(
            fake.max_in_flight(),
            1,
            "never two probes at once to {}",
            fake.url
        );
    }

    // Instance 2 recovers: traffic resumes through it after its next retest, and only it.
    fakes[1].set(Behaviour::Ratings);
    let healed = Instant::now();
    let served = loop {
        match c.get("/ratings/widget").no_cache().await {
            Ok(response) => break response,
            Err(Error::AllInstancesDown { .. } | Error::Timeout { .. }) => {}
            Err(other) => panic!("{other}"),
        }
        assert!(healed.elapsed() < Duration::from_secs(3), "no recovery");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Within one retest delay of the failed probes, plus the probes the call that succeeded
    // may have spent first on the two instances still hanging (one timeout each).
    assert!(
        healed.elapsed() <= retest + 2 * timeout,
        "{:?}",
        healed.elapsed()
    );
    assert_eq!(served.instance().address, fakes[1].url);
    for _ in 0..10 {
        let answer = c.get("/ratings/widget").no_cache().await.expect("served");
        assert_eq!(answer.instance().address, fakes[1].url);
    }
}
