//! The in-memory transport: the same answers as the socket server, exact instants on paused
//! time, held calls counted out when dropped, and refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::ErrorKind;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use fake_ratings::{Behaviour, FakeRatings, InMemory, STANDARD_ITEMS, rating_of, response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

fn request(url: &str, path: &str) -> http::Request<Bytes> {
    http::Request::get(format!("{url}{path}"))
        .body(Bytes::new())
        .unwrap()
}

async fn call(
    transport: &InMemory,
    url: &str,
    path: &str,
) -> std::io::Result<http::Response<Bytes>> {
    transport.clone().oneshot(request(url, path)).await
}

fn json(response: &http::Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn ratings_status_and_garbage_answer_as_documented() {
    let transport = InMemory::new();
    let fake = transport.instance(4, Behaviour::Ratings);
    assert_eq!(fake.url, "http://10.0.0.4:80");
    assert_eq!(fake.instance(), 4);
    for item in STANDARD_ITEMS {
        let answer = call(&transport, &fake.url, &format!("/ratings/{item}?q=1"))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.headers()["content-type"], "application/json");
        let expected = json!({"item_id": item, "rating": rating_of(item).unwrap(), "instance": 4});
        assert_eq!(json(&answer), expected);
    }
    let answer = call(&transport, &fake.url, "/ratings/sprocket")
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    assert_eq!(json(&answer), json!({"error": "unknown item"}));

    fake.set(Behaviour::RatingsOf(vec!["gizmo".into()]));
    assert_eq!(
        call(&transport, &fake.url, "/ratings/gizmo")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        call(&transport, &fake.url, "/ratings/widget")
            .await
            .unwrap()
            .status(),
        404
    );

    fake.set(Behaviour::Status(500));
    let answer = call(&transport, &fake.url, "/ratings/widget")
        .await
        .unwrap();
    assert_eq!(answer.status(), 500);
    assert_eq!(json(&answer), json!({"error": "injected"}));

    fake.set(Behaviour::Garbage);
    let answer = call(&transport, &fake.url, "/ratings/widget")
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.body(), "<html>not json");

    assert_eq!(fake.hits(), 9);
    assert_eq!(fake.in_flight(), 0);
    assert_eq!(fake.max_in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn raw_bytes_and_bad_statuses_are_not_http() {
    let transport = InMemory::new();
    let fake = transport.instance(1, Behaviour::Raw(response(200, b"{}")));
    for behaviour in [
        Behaviour::Raw(response(200, b"{}")),
        Behaviour::Status(1000),
    ] {
        fake.set(behaviour.clone());
        let error = call(&transport, &fake.url, "/ratings/widget")
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidData, "{behaviour:?}");
        assert_eq!(error.to_string(), "not an HTTP answer");
    }
    assert_eq!(fake.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_delayed_answer_arrives_exactly_that_much_later() {
    let transport = InMemory::new();
    let wait = Duration::from_millis(50);
    let fake = transport.instance(1, Behaviour::delay(wait, Behaviour::Ratings));
    let started = Instant::now();
    let mut pending = pin!(
        transport
            .clone()
            .oneshot(request(&fake.url, "/ratings/widget"))
    );
    assert!(futures::poll!(&mut pending).is_pending());
    assert_eq!(fake.arrivals(), [started]);
    assert_eq!(fake.in_flight(), 1);

    tokio::time::advance(wait - Duration::from_millis(1)).await;
    assert!(futures::poll!(&mut pending).is_pending(), "answered early");

    let answer = pending.await.unwrap();
    assert_eq!(started.elapsed(), wait);
    assert_eq!(json(&answer)["rating"], 4);
    assert_eq!(fake.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_hanging_call_counts_out_of_in_flight() {
    let transport = InMemory::new();
    let fake = transport.instance(1, Behaviour::Hang);
    let mut first = Box::pin(
        transport
            .clone()
            .oneshot(request(&fake.url, "/ratings/widget")),
    );
    let mut second = Box::pin(
        transport
            .clone()
            .oneshot(request(&fake.url, "/ratings/gadget")),
    );
    assert!(futures::poll!(&mut first).is_pending());
    assert!(futures::poll!(&mut second).is_pending());
    assert_eq!(
        (fake.hits(), fake.in_flight(), fake.max_in_flight()),
        (2, 2, 2)
    );

    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(
        futures::poll!(&mut first).is_pending(),
        "a hang never answers"
    );

    drop(first);
    assert_eq!(fake.in_flight(), 1);
    fake.reset_max();
    assert_eq!(fake.max_in_flight(), 1);
    drop(second);
    assert_eq!(fake.in_flight(), 0);
    assert_eq!(fake.max_in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn unknown_addresses_are_refused_and_relative_uris_rejected() {
    let transport = InMemory::new();
    let fake = transport.instance(1, Behaviour::Ratings);
    for url in ["http://10.0.0.2:80", "http://10.0.0.1:8080"] {
        let error = call(&transport, url, "/ratings/widget").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConnectionRefused, "{url}");
    }
    // Port 80 is the default.
    assert_eq!(
        call(&transport, "http://10.0.0.1", "/ratings/widget")
            .await
            .unwrap()
            .status(),
        200
    );
    let error = call(&transport, "", "/ratings/widget").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert_eq!(fake.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn stopping_or_dropping_an_instance_ends_its_calls_and_refuses_new_ones() {
    let transport = InMemory::new();
    let fake = transport.instance(1, Behaviour::Hang);
    let url = fake.url.clone();
    let mut held = pin!(transport.clone().oneshot(request(&url, "/ratings/widget")));
    assert!(futures::poll!(&mut held).is_pending());

    fake.stop().await;

    assert_eq!(held.await.unwrap_err().kind(), ErrorKind::ConnectionReset);
    let error = call(&transport, &url, "/ratings/widget").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused);

    // A replacement at the same address is not removed when the old handle goes.
    let old = transport.instance(2, Behaviour::Ratings);
    let new = transport.instance(2, Behaviour::Status(503));
    drop(old);
    assert_eq!(call(&transport, &new.url, "/").await.unwrap().status(), 503);
    drop(new);
    let error = call(&transport, "http://10.0.0.2:80", "/")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test(start_paused = true)]
async fn traceparents_and_arrivals_are_recorded() {
    let mut transport = InMemory::new();
    let fake = transport.instance(1, Behaviour::Ratings);
    let started = Instant::now();
    let traced = http::Request::get(format!("{}/ratings/widget", fake.url))
        .header("traceparent", "00-aa-bb-01")
        .body(Bytes::new())
        .unwrap();
    transport.ready().await.unwrap().call(traced).await.unwrap();
    tokio::time::advance(Duration::from_millis(7)).await;
    call(&transport, &fake.url, "/ratings/widget")
        .await
        .unwrap();
    assert_eq!(fake.traceparents(), ["00-aa-bb-01", ""]);
    assert_eq!(
        fake.arrivals(),
        [started, started + Duration::from_millis(7)]
    );
}

/// The status, content type and body a socket client reads for `path`.
async fn over_the_socket(fake: &FakeRatings, path: &str) -> (u16, String, Vec<u8>) {
    let addr = fake.url.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..at].to_vec()).unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|line| line.strip_prefix("content-type: "))
        .unwrap()
        .to_string();
    (status, content_type, raw[at + 4..].to_vec())
}

#[tokio::test]
async fn both_transports_give_the_same_answers() {
    let transport = InMemory::new();
    for behaviour in [
        Behaviour::Ratings,
        Behaviour::RatingsOf(vec!["gadget".into()]),
        Behaviour::Status(503),
        Behaviour::Garbage,
        Behaviour::delay(Duration::from_millis(5), Behaviour::Status(429)),
    ] {
        let socket = FakeRatings::start(3, behaviour.clone()).await;
        let memory = transport.instance(3, behaviour.clone());
        for path in [
            "/ratings/widget",
            "/ratings/gadget",
            "/ratings/nope",
            "/other",
        ] {
            let answer = call(&transport, &memory.url, path).await.unwrap();
            let from_memory = (
                answer.status().as_u16(),
                answer.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .to_string(),
                answer.body().to_vec(),
            );
            let from_socket = over_the_socket(&socket, path).await;
            assert_eq!(from_memory, from_socket, "{behaviour:?} {path}");
        }
        assert_eq!((socket.hits(), memory.hits()), (4, 4));
    }
}
