//! Picking, breakers and the errors a call ends with, on paused time.

use tokio::time::Instant;

use super::*;
use crate::breaker::BreakerState;

fn states(c: &ServiceClient) -> Vec<BreakerState> {
    c.instances().iter().map(|i| i.state).collect()
}

#[tokio::test(start_paused = true)]
async fn round_robin_interleaves_across_instances() {
    let (transport, fakes) = instances(3);
    let c = client(&transport, &fakes).build().expect("client");
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(instance_of(&c).await);
    }
    assert_eq!(seen, [1, 2, 3, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn a_failing_instance_opens_is_skipped_then_retested_on_time_and_closed() {
    let (transport, fakes) = instances(2);
    let c = client(&transport, &fakes).build().expect("client");
    let mut events = c.subscribe();
    fakes[0].set(Behaviour::Status(500));
    // The first call hits instance 1, fails, and is retried on instance 2.
    let started = Instant::now();
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(next_event(&mut events).await, opened(&fakes[0].url));
    for _ in 0..5 {
        assert_eq!(instance_of(&c).await, 2);
    }
    assert_eq!(hits(&fakes), [1, 6], "nothing goes to an open instance");
    // The retest timer moves it to Retest by itself, exactly one retest delay later.
    assert_eq!(
        next_event(&mut events).await,
        Event::BreakerRetesting {
            service: "ratings".into(),
            address: fakes[0].url.clone()
        }
    );
    assert_eq!(started.elapsed(), RETEST);
    fakes[0].set(Behaviour::Ratings);
    // The next pick in turn is instance 1's probe.
    assert_eq!(instance_of(&c).await, 1);
    assert_eq!(
        next_event(&mut events).await,
        Event::BreakerClosed {
            service: "ratings".into(),
            address: fakes[0].url.clone()
        }
    );
    assert_eq!(states(&c), [BreakerState::Closed; 2]);
    let seen = [instance_of(&c).await, instance_of(&c).await];
    assert_eq!(seen, [2, 1], "traffic interleaves again");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_instance_times_out_after_the_timeout_and_opens() {
    let (transport, fakes) = instances(1);
    fakes[0].set(Behaviour::Hang);
    let c = client(&transport, &fakes).build().expect("client");
    let started = Instant::now();
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert_eq!(
        error,
        Error::Timeout {
            address: fakes[0].url.clone(),
            timeout: TIMEOUT
        }
    );
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(
        fakes[0].in_flight(),
        0,
        "the attempt was dropped at its timeout"
    );
    // Now open: the next call is turned away at once, without reaching the instance.
    let started = Instant::now();
    assert_eq!(
        c.get_json::<Rating>("/ratings/widget").await.unwrap_err(),
        all_down()
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(fakes[0].hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn not_found_is_the_callers_problem_and_never_trips_the_breaker() {
    let (transport, fakes) = instances(2);
    let c = client(&transport, &fakes).build().expect("client");
    for _ in 0..4 {
        let error = c.get_json::<Rating>("/ratings/nothing").await.unwrap_err();
        assert!(
            matches!(error, Error::Status { status: 404, .. }),
            "{error:?}"
        );
    }
    assert_eq!(hits(&fakes), [2, 2], "no retries for a 404");
    assert_eq!(states(&c), [BreakerState::Closed; 2]);
    // `get` returns the 404 answer itself.
    let answer = c
        .get("/ratings/nothing")
        .no_cache()
        .await
        .expect("the answer");
    assert_eq!(answer.status(), 404);
}

#[tokio::test(start_paused = true)]
async fn a_garbage_body_is_a_failure_retried_elsewhere_and_alone_a_decode_error() {
    let (transport, fakes) = instances(2);
    fakes[0].set(Behaviour::Garbage);
    let c = client(&transport, &fakes).build().expect("client");
    assert_eq!(instance_of(&c).await, 2);
    assert_eq!(states(&c), [BreakerState::Open, BreakerState::Closed]);
    // `get` does not decode: the garbage is a 200 like any other.
    let (transport, fakes) = instances(1);
    fakes[0].set(Behaviour::Garbage);
    let c = client(&transport, &fakes).build().expect("client");
    assert_eq!(
        c.get("/ratings/widget")
            .no_cache()
            .await
            .expect("answer")
            .status(),
        200
    );
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert!(
        matches!(&error, Error::Decode { address, .. } if *address == fakes[0].url),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn no_instances_is_all_down_at_once() {
    let (transport, _) = instances(0);
    let c = client(&transport, &[]).build().expect("client");
    let started = Instant::now();
    assert_eq!(
        c.get_json::<Rating>("/ratings/widget").await.unwrap_err(),
        all_down()
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_a_transport_failure_that_opens_the_breaker() {
    let (transport, mut fakes) = instances(2);
    // Nothing answers at instance 1's address any more.
    let gone = fakes.remove(0);
    let address = gone.url.clone();
    drop(gone);
    let c = ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new([
            address.clone(),
            fakes[0].url.clone(),
        ]))
        .transport(transport.map_response(|a: http::Response<Bytes>| a.map(Full::new)))
        .max_retries(0)
        .build()
        .expect("client");
    match c.get("/ratings/widget").no_cache().await.unwrap_err() {
        Error::Http {
            address: failed,
            message,
        } => {
            assert_eq!(failed, address);
            assert!(message.contains("no instance at"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(states(&c), [BreakerState::Open, BreakerState::Closed]);
    assert_eq!(instance_of(&c).await, 2);
}

#[tokio::test(start_paused = true)]
async fn the_first_call_waits_for_discoverys_first_answer_at_most_one_timeout() {
    let (transport, fakes) = instances(1);
    let late = |delay| Late {
        delay,
        addresses: vec![fakes[0].url.clone()],
    };
    let c = client(&transport, &fakes)
        .discovery(late(Duration::from_millis(100)))
        .build()
        .expect("client");
    let started = Instant::now();
    assert_eq!(instance_of(&c).await, 1);
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    // Discovery slower than the timeout: the call is all down once the timeout has passed.
    let c = client(&transport, &fakes)
        .discovery(late(Duration::from_secs(5)))
        .build()
        .expect("client");
    let started = Instant::now();
    assert_eq!(
        c.get("/ratings/widget").no_cache().await.unwrap_err(),
        all_down()
    );
    assert_eq!(started.elapsed(), TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn discovery_that_failed_before_finding_anything_is_a_discovery_error_at_once() {
    let (transport, _) = instances(0);
    let c = client(&transport, &[])
        .discovery(Unreachable)
        .build()
        .expect("client");
    let mut events = c.subscribe();
    assert!(matches!(
        next_event(&mut events).await,
        Event::DiscoveryOutage { .. }
    ));
    let started = Instant::now();
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert_eq!(
        error,
        Error::Discovery("registry at http://127.0.0.1:1 unreachable".into())
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    // The first call, made before the outage was reported, gets the same.
    let c = client(&transport, &[])
        .discovery(Unreachable)
        .build()
        .expect("client");
    assert!(matches!(
        c.get("/x").no_cache().await,
        Err(Error::Discovery(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_path_without_a_leading_slash_is_refused_before_any_attempt() {
    let (transport, fakes) = instances(1);
    let c = client(&transport, &fakes).build().expect("client");
    let error = c.get("ratings/widget").no_cache().await.unwrap_err();
    assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
    assert_eq!(fakes[0].hits(), 0);
}

#[tokio::test(start_paused = true)]
async fn bad_configuration_is_a_typed_error() {
    let no_discovery = ServiceClient::builder("ratings").build().unwrap_err();
    assert!(matches!(no_discovery, Error::Config(ref m) if m.contains("discovery")));
    let bad_name = ServiceClient::builder("rat ings")
        .discovery(StaticDiscovery::new(["http://127.0.0.1:1"]))
        .build()
        .unwrap_err();
    assert!(matches!(bad_name, Error::Config(ref m) if m.contains("service name")));
    let (transport, _) = instances(0);
    let zero = client(&transport, &[])
        .failure_limit(0)
        .build()
        .unwrap_err();
    assert!(matches!(zero, Error::Config(ref m) if m.contains("failure_limit")));
    let zero = client(&transport, &[])
        .hedge_after(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        matches!(zero, Error::Config(ref m) if m.contains("hedge")),
        "{zero:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn extra_headers_reach_the_instance_on_every_attempt() {
    let (transport, fakes) = instances(2);
    fakes[0].set(Behaviour::Status(503));
    let c = client(&transport, &fakes).build().expect("client");
    let mut headers = http::HeaderMap::new();
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    headers.insert("traceparent", http::HeaderValue::from_static(trace));
    let rating: Rating = c
        .get_json_with("/ratings/widget", &headers)
        .await
        .expect("rating");
    assert_eq!(rating.instance, 2, "retried after the 503");
    let cached = c
        .get_json_cached_with::<Rating>("/ratings/gadget", &headers)
        .await
        .expect("cached");
    assert_eq!(cached.value.item_id, "gadget");
    let _: Rating = c.get_json("/ratings/widget").await.expect("plain");
    assert_eq!(fakes[0].traceparents(), [trace]);
    assert_eq!(fakes[1].traceparents(), [trace, trace, ""]);
}
