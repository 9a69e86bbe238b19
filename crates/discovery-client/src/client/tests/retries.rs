//! Retries on other instances, the retry budget, the overall deadline and non-idempotent
//! requests, on paused time.

use tokio::time::Instant;

use super::*;

/// Every instance fails; breakers that never open, so only the budget stands between a sick
/// service and three attempts per request.
#[tokio::test(start_paused = true)]
async fn retries_stay_within_the_budget_when_every_instance_is_sick() {
    let (transport, fakes) = instances(3);
    set_all(&fakes, Behaviour::Status(500));
    let c = client(&transport, &fakes)
        .failure_limit(u32::MAX)
        .max_retries(2)
        .retry_budget(0.2)
        .build()
        .expect("client");
    let requests = 400;
    for _ in 0..requests {
        let answer = c.get("/ratings/widget").no_cache().await;
        assert!(
            matches!(answer, Err(Error::Status { status: 500, .. })),
            "{answer:?}"
        );
    }
    let attempts: usize = hits(&fakes).iter().sum();
    // The documented budget, all of it used: 20 % of the window's requests, plus a floor
    // of 10 retries per second over the 10 s window. No time passes, so one window.
    assert_eq!(attempts - requests, requests / 5 + 100);
}

#[tokio::test(start_paused = true)]
async fn with_no_budget_left_a_failure_is_not_retried() {
    let (transport, fakes) = instances(2);
    set_all(&fakes, Behaviour::Status(500));
    let c = client(&transport, &fakes)
        .failure_limit(u32::MAX)
        .retry_budget(0.0)
        .build()
        .expect("client");
    // The floor allows 100 retries in the window; beyond that, one attempt per request.
    for _ in 0..200 {
        let _ = c.get("/ratings/widget").no_cache().await;
    }
    assert_eq!(hits(&fakes).iter().sum::<usize>(), 300);
    // Ten seconds on, the window has moved: retries again.
    tokio::time::advance(Duration::from_secs(10)).await;
    let _ = c.get("/ratings/widget").no_cache().await;
    assert_eq!(hits(&fakes).iter().sum::<usize>(), 302);
}

#[tokio::test(start_paused = true)]
async fn post_is_not_retried_unless_allowed() {
    let (transport, fakes) = instances(2);
    set_all(&fakes, Behaviour::Status(500));
    let c = client(&transport, &fakes)
        .failure_limit(100)
        .build()
        .expect("client");
    let error = c
        .post("/ratings/widget")
        .body(Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Status { status: 500, .. }),
        "{error:?}"
    );
    assert_eq!(
        hits(&fakes).iter().sum::<usize>(),
        1,
        "a failed POST is not retried"
    );
    // GET is retried: two instances, two attempts.
    let _ = c.get("/ratings/widget").no_cache().await;
    assert_eq!(hits(&fakes).iter().sum::<usize>(), 3);
    let c = client(&transport, &fakes)
        .failure_limit(100)
        .retry_non_idempotent(true)
        .build()
        .expect("client");
    let _ = c.post("/ratings/widget").send().await;
    assert_eq!(hits(&fakes).iter().sum::<usize>(), 5, "allowed: retried");
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_each_retry_gets_a_whole_timeout() {
    let (transport, fakes) = instances(3);
    set_all(&fakes, Behaviour::Hang);
    let c = client(&transport, &fakes)
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    let started = Instant::now();
    let error = c.get("/ratings/widget").no_cache().await.unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert_eq!(
        started.elapsed(),
        3 * TIMEOUT,
        "three attempts, one after another"
    );
    assert_eq!(hits(&fakes), [1, 1, 1]);
}

#[tokio::test(start_paused = true)]
async fn an_overall_deadline_cuts_the_last_attempt_short_and_ends_the_call_on_time() {
    let (transport, fakes) = instances(3);
    set_all(&fakes, Behaviour::Hang);
    let deadline = Duration::from_millis(450);
    let c = client(&transport, &fakes)
        .hedging(Hedging::Off)
        .deadline(deadline)
        .build()
        .expect("client");
    let started = Instant::now();
    let error = c.get("/ratings/widget").no_cache().await.unwrap_err();
    assert_eq!(
        error,
        Error::DeadlineExceeded {
            service: "ratings".into(),
            deadline
        }
    );
    // 300 ms for the first attempt, the 150 ms left for the second.
    assert_eq!(started.elapsed(), deadline);
    assert_eq!(hits(&fakes).iter().sum::<usize>(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_slow_failure_is_retried_at_the_moment_it_fails() {
    let (transport, fakes) = instances(2);
    fakes[0].set(after(20, Behaviour::Status(503)));
    fakes[1].set(after(5, Behaviour::Ratings));
    let c = client(&transport, &fakes).build().expect("client");
    let started = Instant::now();
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(started.elapsed(), Duration::from_millis(25));
    assert_eq!(fakes[1].arrivals(), [started + Duration::from_millis(20)]);
}
