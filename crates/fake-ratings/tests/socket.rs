//! The socket server: each behaviour's answer as a client reads it off the wire, the
//! counters, the behaviour switch, stopping, and the closed port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::ErrorKind;
use std::time::Duration;

use fake_ratings::{Behaviour, ClosedPort, FakeRatings, STANDARD_ITEMS, rating_of, response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The upper bound on any wait in these tests.
const PATIENCE: Duration = Duration::from_secs(5);

fn addr(url: &str) -> &str {
    url.strip_prefix("http://").unwrap()
}

async fn connect(url: &str) -> TcpStream {
    TcpStream::connect(addr(url)).await.unwrap()
}

/// Everything the server writes until it closes.
async fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("the server closes within 5 s")
        .unwrap();
    raw
}

/// Sends `request` as it is and returns everything written back.
async fn exchange(url: &str, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(url).await;
    stream.write_all(request).await.unwrap();
    read_all(&mut stream).await
}

/// A parsed answer: status, lower-cased head, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn parse(raw: &[u8]) -> Answer {
        let at = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of head: {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8(raw[..at].to_vec())
            .unwrap()
            .to_lowercase();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        Answer {
            status,
            head,
            body: raw[at + 4..].to_vec(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn has_header(&self, line: &str) -> bool {
        self.head.lines().any(|l| l == line)
    }
}

/// `GET path` with extra header lines, as an answer.
async fn get_with(url: &str, path: &str, headers: &str) -> Answer {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{headers}\r\n",
        addr(url)
    );
    Answer::parse(&exchange(url, request.as_bytes()).await)
}

async fn get(url: &str, path: &str) -> Answer {
    get_with(url, path, "").await
}

/// Waits until `check` holds, at most 5 s.
async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "no {what} within 5 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn ratings_answers_the_standard_items_and_404_for_the_rest() {
    let fake = FakeRatings::start(3, Behaviour::Ratings).await;
    assert!(fake.url.starts_with("http://127.0.0.1:"), "{}", fake.url);
    for item in STANDARD_ITEMS {
        let answer = get(&fake.url, &format!("/ratings/{item}")).await;
        assert_eq!(answer.status, 200, "{item}");
        assert!(answer.has_header("content-type: application/json"));
        assert!(answer.has_header("connection: close"));
        assert_eq!(
            answer.json(),
            json!({"item_id": item, "rating": rating_of(item).unwrap(), "instance": 3})
        );
    }
    for path in ["/ratings/sprocket", "/health", "/ratings/widget/more"] {
        let answer = get(&fake.url, path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(answer.json(), json!({"error": "unknown item"}), "{path}");
    }
    assert_eq!(fake.hits(), 7);
    assert_eq!(fake.instance(), 3);
}

#[tokio::test]
async fn ratings_of_knows_only_its_items() {
    let known = vec!["widget".to_string(), "gadget".to_string()];
    let fake = FakeRatings::start(1, Behaviour::RatingsOf(known)).await;
    assert_eq!(get(&fake.url, "/ratings/gadget").await.json()["rating"], 3);
    let answer = get(&fake.url, "/ratings/gizmo").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json(), json!({"error": "unknown item"}));
}

#[tokio::test]
async fn status_garbage_and_raw_answer_as_documented() {
    let fake = FakeRatings::start(1, Behaviour::Status(503)).await;
    let answer = get(&fake.url, "/ratings/widget").await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json(), json!({"error": "injected"}));

    fake.set(Behaviour::Garbage);
    let answer = get(&fake.url, "/ratings/widget").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"<html>not json");
    assert!(serde_json::from_slice::<Value>(&answer.body).is_err());

    fake.set(Behaviour::Raw(b"SSH-2.0-not-http\r\n".to_vec()));
    let raw = exchange(&fake.url, b"GET /ratings/widget HTTP/1.1\r\n\r\n").await;
    assert_eq!(raw, b"SSH-2.0-not-http\r\n");

    let bytes = response(418, br#"{"odd":true}"#);
    fake.set(Behaviour::Raw(bytes.clone()));
    let raw = exchange(&fake.url, b"GET /ratings/widget HTTP/1.1\r\n\r\n").await;
    assert_eq!(raw, bytes);
    let answer = Answer::parse(&raw);
    assert_eq!(answer.status, 418);
    assert!(answer.has_header("content-length: 12"));
    assert_eq!(fake.hits(), 4);
}

#[tokio::test]
async fn hang_holds_the_request_until_the_client_closes() {
    let fake = FakeRatings::start(1, Behaviour::Hang).await;
    let mut stream = connect(&fake.url).await;
    stream
        .write_all(b"GET /ratings/widget HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    until("held request", || fake.in_flight() == 1).await;
    let mut byte = [0_u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await;
    assert!(read.is_err(), "a hanging instance answered: {read:?}");
    assert_eq!(fake.hits(), 1);

    drop(stream);
    until("request given up", || fake.in_flight() == 0).await;
    assert_eq!(fake.max_in_flight(), 1);
}

#[tokio::test]
async fn delay_answers_late_and_in_flight_counts_overlapping_requests() {
    let wait = Duration::from_millis(200);
    let fake = FakeRatings::start(2, Behaviour::delay(wait, Behaviour::Ratings)).await;
    let started = Instant::now();
    let answers = futures::future::join_all((0..3).map(|_| get(&fake.url, "/ratings/gizmo"))).await;
    assert!(started.elapsed() >= wait, "{:?}", started.elapsed());
    for answer in &answers {
        assert_eq!(
            answer.json(),
            json!({"item_id": "gizmo", "rating": 5, "instance": 2})
        );
    }
    assert_eq!(fake.hits(), 3);
    assert_eq!(fake.in_flight(), 0);
    assert_eq!(fake.max_in_flight(), 3, "the three requests overlapped");

    fake.reset_max();
    assert_eq!(fake.max_in_flight(), 0);
    fake.set(Behaviour::Ratings);
    get(&fake.url, "/ratings/gizmo").await;
    assert_eq!(fake.max_in_flight(), 1);
}

#[tokio::test]
async fn traceparents_and_arrivals_are_recorded_in_order() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let before = Instant::now();
    get_with(&fake.url, "/ratings/widget", "TraceParent: 00-aa-bb-01\r\n").await;
    get(&fake.url, "/ratings/widget").await;
    get_with(&fake.url, "/nowhere", "traceparent: 00-cc-dd-00\r\n").await;
    assert_eq!(fake.traceparents(), ["00-aa-bb-01", "", "00-cc-dd-00"]);
    let arrivals = fake.arrivals();
    assert_eq!(arrivals.len(), 3);
    assert!(
        before <= arrivals[0] && arrivals.is_sorted(),
        "{arrivals:?}"
    );
    assert!(arrivals[2] <= Instant::now());
}

#[tokio::test]
async fn a_post_is_answered_once_its_whole_body_has_arrived() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let mut stream = connect(&fake.url).await;
    stream
        .write_all(b"POST /ratings/widget HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let mut byte = [0_u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await;
    assert!(
        early.is_err(),
        "answered before the body arrived: {early:?}"
    );
    assert_eq!(fake.hits(), 0, "a request counts once its body is read");

    stream.write_all(b"\"bcdef\"}").await.unwrap();
    let answer = Answer::parse(&read_all(&mut stream).await);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["item_id"], "widget");
    assert_eq!(fake.hits(), 1);
}

#[tokio::test]
async fn stop_refuses_new_connections_and_closes_held_ones() {
    let fake = FakeRatings::start(1, Behaviour::Hang).await;
    let url = fake.url.clone();
    let mut held = connect(&url).await;
    held.write_all(b"GET /ratings/widget HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    until("held request", || fake.in_flight() == 1).await;

    fake.stop().await;

    assert!(
        read_all(&mut held).await.is_empty(),
        "closed without an answer"
    );
    let refused = TcpStream::connect(addr(&url)).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn dropping_the_fake_stops_it() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let url = fake.url.clone();
    assert_eq!(get(&url, "/ratings/widget").await.status, 200);
    drop(fake);
    // The abort takes effect when the runtime next polls the server's task (a connection
    // racing with the listener's close may be reset rather than refused).
    let deadline = Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect(addr(&url)).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            other => assert!(
                Instant::now() < deadline,
                "not refused after 5 s: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_closed_port_refuses_at_once() {
    let port = ClosedPort::bind();
    assert!(port.url.starts_with("http://127.0.0.1:"), "{}", port.url);
    let started = Instant::now();
    let refused = TcpStream::connect(addr(&port.url)).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_ne!(ClosedPort::bind().url, port.url, "the port stays taken");
}
