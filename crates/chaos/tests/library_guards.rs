//! The guards beyond the consecutive-failure breaker, proven through the library's public API
//! against fake instances on loopback (and, for the fail-fast one, the real programs):
//!
//! - jitter and a capped backoff multiplier on the retest delay;
//! - a retry budget: retries stay within a fraction of requests when everything is sick;
//! - an overall deadline that bounds retries;
//! - with every breaker open the client fails fast, recovers as soon as one instance does,
//!   and never has more than one probe per instance in flight.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use discovery_client::{Error, Event, Hedging, RegistryDiscovery, ServiceClient, StaticDiscovery};
use support::{Fake, Mode, Refusing};
use tokio::sync::broadcast;
use tokio::time::Instant;

/// Breaker events by address, each with the moment it was received.
#[derive(Debug, Default)]
struct Timeline {
    events: Vec<(Instant, &'static str, String)>,
}

impl Timeline {
    fn take(&mut self, rx: &mut broadcast::Receiver<Event>) {
        while let Ok(event) = rx.try_recv() {
            let (kind, address) = match event {
                Event::BreakerOpened { address, .. } => ("open", address),
                Event::BreakerRetesting { address, .. } => ("retest", address),
                Event::BreakerClosed { address, .. } => ("close", address),
                _ => continue,
            };
            self.events.push((Instant::now(), kind, address));
        }
    }

    /// For `address`, the time from each OPEN to the RETEST after it.
    fn retest_delays(&self, address: &str) -> Vec<Duration> {
        let mut delays = Vec::new();
        let mut opened = None;
        for (at, kind, a) in &self.events {
            if a != address {
                continue;
            }
            match *kind {
                "open" => opened = Some(*at),
                "retest" => {
                    if let Some(o) = opened.take() {
                        delays.push(*at - o);
                    }
                }
                _ => {}
            }
        }
        delays
    }

    fn count(&self, kind: &str, address: &str) -> usize {
        self.events
            .iter()
            .filter(|(_, k, a)| *k == kind && a == address)
            .count()
    }
}

/// Collects events until `done` says so (at most `limit`), while calling `poke` every 5 ms
/// so probes happen as soon as retests are due.
async fn watch_until(
    client: &ServiceClient,
    rx: &mut broadcast::Receiver<Event>,
    timeline: &mut Timeline,
    limit: Duration,
    done: impl Fn(&Timeline) -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done(timeline) {
        assert!(Instant::now() < deadline, "gave up waiting: {timeline:?}");
        let _ = client.get("/ratings/widget").await;
        timeline.take(rx);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn the_retest_delay_backs_off_and_stays_under_its_cap() {
    let refusing = Refusing::bind();
    let dead = refusing.url.clone();
    let client = ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new([dead.clone()]))
        .timeout(Duration::from_millis(200))
        .retest_delay(Duration::from_millis(100))
        .retest_backoff(2.0, Duration::from_millis(400))
        .build()
        .unwrap();
    let mut rx = client.subscribe();
    let mut timeline = Timeline::default();
    // Each probe is refused at once, so the breaker reopens with a doubled delay.
    watch_until(
        &client,
        &mut rx,
        &mut timeline,
        Duration::from_secs(5),
        |t| t.retest_delays(&dead).len() >= 5,
    )
    .await;
    let delays = timeline.retest_delays(&dead);
    let expected = [100, 200, 400, 400, 400];
    for (delay, want) in delays.iter().zip(expected) {
        let want = Duration::from_millis(want);
        assert!(
            *delay >= want - Duration::from_millis(2) && *delay <= want + Duration::from_millis(90),
            "delays {delays:?}, expected about {expected:?} ms"
        );
    }
    assert_eq!(timeline.count("close", &dead), 0);
}

#[tokio::test]
async fn jitter_spreads_the_retests_of_instances_that_failed_together() {
    let refusing: Vec<Refusing> = (0..12).map(|_| Refusing::bind()).collect();
    let dead: Vec<String> = refusing.iter().map(|r| r.url.clone()).collect();
    let client = ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(dead.clone()))
        .timeout(Duration::from_millis(200))
        .retest_delay(Duration::from_millis(400))
        .retest_jitter(0.5)
        .max_retries(0)
        .build()
        .unwrap();
    let mut rx = client.subscribe();
    let mut timeline = Timeline::default();
    // Twelve calls open the twelve breakers within a few milliseconds of each other.
    for _ in 0..12 {
        let _ = client.get("/ratings/widget").await;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while dead.iter().any(|a| timeline.retest_delays(a).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "not every breaker retested: {timeline:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        timeline.take(&mut rx);
    }
    let delays: Vec<Duration> = dead.iter().map(|a| timeline.retest_delays(a)[0]).collect();
    let (min, max) = (*delays.iter().min().unwrap(), *delays.iter().max().unwrap());
    // Drawn from 400 ms ± 50 %: within 200..=600 ms, and not all at the same moment.
    assert!(
        min >= Duration::from_millis(195) && max <= Duration::from_millis(700),
        "{delays:?}"
    );
    assert!(
        max - min >= Duration::from_millis(100),
        "not spread: {delays:?}"
    );
}

#[tokio::test]
async fn retries_stay_within_the_budget_when_every_instance_is_sick() {
    let fakes = [
        Fake::start(Mode::Fail).await,
        Fake::start(Mode::Fail).await,
        Fake::start(Mode::Fail).await,
    ];
    let client = ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(fakes.iter().map(|f| f.url.clone())))
        .timeout(Duration::from_secs(1))
        // Breakers that never open, so only the budget stands between a sick service and
        // three attempts per request.
        .failure_limit(u32::MAX)
        .max_retries(2)
        .retry_budget(0.2)
        .build()
        .unwrap();
    let requests = 400;
    let started = Instant::now();
    for _ in 0..requests {
        let answer = client.get("/ratings/widget").await;
        assert!(
            matches!(answer, Err(Error::Status { status: 500, .. })),
            "{answer:?}"
        );
    }
    // The budget's window is 10 s: all of this must happen inside one window.
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    let attempts: usize = fakes.iter().map(Fake::hits).sum();
    let retries = attempts - requests;
    // Documented budget: 20 % of requests, plus a floor of 10 retries/s over the 10 s window.
    let allowed = requests / 5 + 100;
    assert!(
        retries <= allowed,
        "{retries} retries for {requests} requests"
    );
    assert!(
        retries >= allowed - 5,
        "the budget's allowance is used: {retries}"
    );
    assert!(
        attempts < 2 * requests,
        "unbudgeted would be {}",
        3 * requests
    );
}

#[tokio::test]
async fn an_overall_deadline_bounds_the_retries() {
    let fakes = [
        Fake::start(Mode::Hang).await,
        Fake::start(Mode::Hang).await,
        Fake::start(Mode::Hang).await,
    ];
    let urls: Vec<String> = fakes.iter().map(|f| f.url.clone()).collect();
    let build = |deadline: Option<Duration>| {
        let mut builder = ServiceClient::builder("ratings")
            .discovery(StaticDiscovery::new(urls.clone()))
            .timeout(Duration::from_millis(200))
            .max_retries(2)
            // Attempts one after another: no hedge overlapping them.
            .hedging(Hedging::Off);
        if let Some(deadline) = deadline {
            builder = builder.deadline(deadline);
        }
        builder.build().unwrap()
    };

    // Without a deadline: three attempts of 200 ms each.
    let started = Instant::now();
    let answer = build(None).get("/ratings/widget").await;
    let took = started.elapsed();
    assert!(matches!(answer, Err(Error::Timeout { .. })), "{answer:?}");
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert_eq!(fakes.iter().map(Fake::hits).sum::<usize>(), 3);

    // With a 250 ms deadline: the second attempt is cut short and the call ends on time.
    let started = Instant::now();
    let answer = build(Some(Duration::from_millis(250)))
        .get("/ratings/widget")
        .await;
    let took = started.elapsed();
    assert!(
        matches!(answer, Err(Error::DeadlineExceeded { deadline, .. }) if deadline == Duration::from_millis(250)),
        "{answer:?}"
    );
    assert!(
        took >= Duration::from_millis(240) && took < Duration::from_millis(450),
        "{took:?}"
    );
    assert_eq!(
        fakes.iter().map(Fake::hits).sum::<usize>(),
        3 + 2,
        "two attempts"
    );
}

#[tokio::test]
async fn with_every_breaker_open_calls_fail_fast_and_one_probe_per_instance_goes_out() {
    let fakes = [
        Fake::start(Mode::Hang).await,
        Fake::start(Mode::Hang).await,
        Fake::start(Mode::Hang).await,
    ];
    let retest = Duration::from_secs(1);
    let client = ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(fakes.iter().map(|f| f.url.clone())))
        .timeout(Duration::from_millis(200))
        .retest_delay(retest)
        .build()
        .unwrap();
    let mut rx = client.subscribe();
    let mut timeline = Timeline::default();

    // One call tries all three; each times out and opens its breaker.
    let answer = client.get("/ratings/widget").await;
    assert!(matches!(answer, Err(Error::Timeout { .. })), "{answer:?}");
    timeline.take(&mut rx);
    for fake in &fakes {
        assert_eq!(timeline.count("open", &fake.url), 1, "{timeline:?}");
    }

    // Every breaker open: each call fails at once, and nothing reaches the instances.
    let hits: usize = fakes.iter().map(Fake::hits).sum();
    for _ in 0..50 {
        let started = Instant::now();
        let answer = client.get("/ratings/widget").await;
        assert!(
            matches!(answer, Err(Error::AllInstancesDown { .. })),
            "{answer:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(fakes.iter().map(Fake::hits).sum::<usize>(), hits);
    timeline.take(&mut rx);
    assert!(
        fakes.iter().all(|f| timeline.count("retest", &f.url) == 0),
        "all of this happened before any retest was due: {timeline:?}"
    );

    // Once the retest delay passes: a burst of 30 concurrent calls sends exactly one probe to
    // each instance; every other call is turned away at once.
    let deadline = Instant::now() + Duration::from_secs(3);
    while fakes.iter().any(|f| timeline.count("retest", &f.url) == 0) {
        assert!(Instant::now() < deadline, "no retest: {timeline:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
        timeline.take(&mut rx);
    }
    for fake in &fakes {
        fake.reset_max();
    }
    let before: Vec<usize> = fakes.iter().map(Fake::hits).collect();
    let burst: Vec<_> = (0..30)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                (client.get("/ratings/widget").await, started.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for call in burst {
        answers.push(call.await.expect("call"));
    }
    let fast_failures = answers
        .iter()
        .filter(|(a, took)| {
            matches!(a, Err(Error::AllInstancesDown { .. })) && *took < Duration::from_millis(50)
        })
        .count();
    assert!(fast_failures >= 27, "{answers:?}");
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
    fakes[1].set(Mode::Rating);
    let healed = Instant::now();
    let served = loop {
        match client.get("/ratings/widget").await {
            Ok(response) => break response,
            Err(Error::AllInstancesDown { .. } | Error::Timeout { .. }) => {}
            Err(other) => panic!("{other}"),
        }
        assert!(healed.elapsed() < Duration::from_secs(3), "no recovery");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Within one retest delay of the recovery, plus the probes the successful call may have
    // spent first on the two instances still hanging (one timeout each), plus slack.
    assert!(
        healed.elapsed() <= retest + 2 * Duration::from_millis(200) + Duration::from_millis(150),
        "{:?}",
        healed.elapsed()
    );
    assert_eq!(served.instance.address, fakes[1].url);
    timeline.take(&mut rx);
    assert_eq!(timeline.count("close", &fakes[1].url), 1, "{timeline:?}");
    for _ in 0..10 {
        let answer = client.get("/ratings/widget").await.expect("served");
        assert_eq!(answer.instance.address, fakes[1].url);
    }
}

/// The same fail-fast and recovery against the real programs: three ratings instances
/// paused with SIGSTOP, then one resumed.
#[tokio::test]
async fn real_instances_all_paused_fail_fast_and_the_first_resumed_takes_traffic() {
    let registry = system_tests::registry(&[]).await;
    let mut instances = Vec::new();
    for n in 1..=3 {
        instances.push(system_tests::ratings(n, &registry, &[]).await);
    }
    system_tests::wait_for_instances(&registry, "ratings", &["1", "2", "3"]).await;
    let retest = Duration::from_secs(1);
    let client = ServiceClient::builder("ratings")
        .discovery(RegistryDiscovery::new(&registry.url))
        .timeout(Duration::from_millis(200))
        .retest_delay(retest)
        .build()
        .unwrap();
    let first = client.get("/ratings/widget").await.expect("served");
    assert_eq!(first.status, 200);

    for instance in &mut instances {
        instance.pause();
    }
    let mut opened = BTreeMap::new();
    let mut rx = client.subscribe();
    while opened.len() < 3 {
        let _ = client.get("/ratings/widget").await;
        while let Ok(event) = rx.try_recv() {
            if let Event::BreakerOpened { address, .. } = event {
                opened.insert(address, Instant::now());
            }
        }
    }
    for _ in 0..20 {
        let started = Instant::now();
        let answer = client.get("/ratings/widget").await;
        assert!(
            matches!(answer, Err(Error::AllInstancesDown { .. })),
            "{answer:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
    }

    instances[1].resume();
    let resumed = Instant::now();
    let served = loop {
        if let Ok(response) = client.get("/ratings/widget").await {
            break response;
        }
        assert!(resumed.elapsed() < Duration::from_secs(5), "no recovery");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        resumed.elapsed() <= retest + Duration::from_millis(500),
        "{:?}",
        resumed.elapsed()
    );
    assert_eq!(served.instance.id, "2");
    let body: serde_json::Value = serde_json::from_slice(&served.body).expect("json");
    assert_eq!(body["instance"], 2);
}
