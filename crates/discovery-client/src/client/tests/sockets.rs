//! The default transport (hyper's pooled client) against fake instances on real loopback
//! sockets, in real time: what the paused-time tests take for granted about the wire.

use fake_ratings::ClosedPort;
use tokio::time::Instant;

use super::*;
use crate::breaker::BreakerState;
use crate::transport::HttpClient;

async fn started(n: u32) -> Vec<FakeRatings> {
    let mut fakes = Vec::new();
    for i in 1..=n {
        fakes.push(FakeRatings::start(i, Behaviour::Ratings).await);
    }
    fakes
}

fn over_sockets(addresses: impl IntoIterator<Item = String>) -> ServiceClientBuilder {
    ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(addresses))
        .timeout(TIMEOUT)
}

#[tokio::test]
async fn calls_interleave_across_real_instances_with_their_headers() {
    let fakes = started(3).await;
    let c = over_sockets(fakes.iter().map(|f| f.url.clone()))
        .transport(HttpClient::new())
        .build()
        .expect("client");
    let mut headers = http::HeaderMap::new();
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    headers.insert("traceparent", http::HeaderValue::from_static(trace));
    let mut seen = Vec::new();
    for _ in 0..6 {
        let rating: Rating = c
            .get_json_with("/ratings/widget", &headers)
            .await
            .expect("rating");
        seen.push(rating.instance);
    }
    assert_eq!(seen, [1, 2, 3, 1, 2, 3]);
    for fake in &fakes {
        assert_eq!(fake.traceparents(), [trace, trace]);
    }
    let posted = c
        .send(
            Method::POST,
            "/ratings/gadget",
            Some(Bytes::from_static(b"{\"stars\": 3}")),
        )
        .await
        .expect("answer");
    assert_eq!(posted.status, 200);
}

#[tokio::test]
async fn a_refused_connection_names_the_instance_and_the_cause_and_opens_its_breaker() {
    let closed = ClosedPort::bind();
    let fakes = started(1).await;
    let c = over_sockets([closed.url.clone(), fakes[0].url.clone()])
        .build()
        .expect("client");
    // The first call is refused by instance 1 and retried on instance 2.
    assert_eq!(
        instance_of(&c).await,
        1,
        "instance 2 of the client is fake 1"
    );
    let states: Vec<_> = c.instances().iter().map(|i| i.state).collect();
    assert_eq!(states, [BreakerState::Open, BreakerState::Closed]);
    let alone = over_sockets([closed.url.clone()]).build().expect("client");
    match alone.get("/ratings/widget").await.unwrap_err() {
        Error::Http { address, message } => {
            assert_eq!(address, closed.url);
            assert!(
                message.to_lowercase().contains("connection refused"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_instance_that_never_answers_is_a_timeout() {
    let fakes = started(1).await;
    fakes[0].set(Behaviour::Hang);
    let c = over_sockets([fakes[0].url.clone()])
        .build()
        .expect("client");
    let started = Instant::now();
    let error = c.get("/ratings/widget").await.unwrap_err();
    assert_eq!(
        error,
        Error::Timeout {
            address: fakes[0].url.clone(),
            timeout: TIMEOUT
        }
    );
    assert!(started.elapsed() >= TIMEOUT, "{:?}", started.elapsed());
}

#[tokio::test]
async fn another_scheme_is_refused_by_the_default_transport_without_tripping_a_breaker() {
    let c = over_sockets(["ftp://127.0.0.1:1".to_string()])
        .build()
        .expect("client");
    for _ in 0..3 {
        let error = c.get("/ratings/widget").await.unwrap_err();
        assert!(
            matches!(&error, Error::InvalidRequest(m) if m.contains("only http://")),
            "{error:?}"
        );
    }
    assert_eq!(c.instances()[0].state, BreakerState::Closed);
}

#[tokio::test]
async fn an_unreachable_registry_makes_calls_fail_fast_with_a_discovery_error() {
    let closed = ClosedPort::bind();
    let c = ServiceClient::builder("ratings")
        .discovery(crate::RegistryDiscovery::new(&closed.url))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let mut events = c.subscribe();
    let outage = tokio::time::timeout(Duration::from_secs(5), next_event(&mut events))
        .await
        .expect("an outage in time");
    assert!(
        matches!(outage, Event::DiscoveryOutage { .. }),
        "{outage:?}"
    );
    let error = c.get_json::<Rating>("/ratings/widget").await.unwrap_err();
    assert!(
        matches!(&error, Error::Discovery(reason) if reason.contains(&closed.url)),
        "{error:?}"
    );
}
