//! The request builder over real sockets: what a caller sets arrives exactly as set (the
//! instance keeps every request it receives), a non-idempotent POST is never sent twice,
//! per-request settings override the client's, error answers carry their headers and body,
//! and only anonymous GETs are cached.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use discovery_client::http::{Method, StatusCode};
use discovery_client::{
    Error, Hedging, ServiceClient, ServiceClientBuilder, Source, StaticDiscovery,
};
use fake_ratings::{Behaviour, FakeRatings, Serve};
use tokio::time::Instant;

fn client(instances: &[&FakeRatings]) -> ServiceClientBuilder {
    let addresses: Vec<String> = instances.iter().map(|f| f.url.clone()).collect();
    ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(addresses))
        .timeout(Duration::from_secs(2))
        .failure_limit(100)
}

async fn serving(n: u32, behaviour: Behaviour) -> FakeRatings {
    FakeRatings::serve(n, behaviour, Serve::plain()).await
}

#[tokio::test]
async fn method_headers_bearer_query_and_json_body_arrive_exactly_as_sent() {
    let echo = serving(1, Behaviour::Ratings).await;
    let c = client(&[&echo]).build().expect("client");
    let answer = c
        .request(Method::PUT, "/ratings/widget?x=1")
        .header("x-request-id", "abc-123")
        .header("x-request-id", "second")
        .bearer_auth("s3cret")
        .query(&[("q", "a b&c"), ("lang", "é")])
        .json(&serde_json::json!({"item_id": "widget", "rating": 5}))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::OK);
    let got = echo.received().pop().expect("received");
    assert_eq!(got.method, Method::PUT);
    assert_eq!(got.target, "/ratings/widget?x=1&q=a+b%26c&lang=%C3%A9");
    let values: Vec<_> = got.headers.get_all("x-request-id").iter().collect();
    assert_eq!(values, ["abc-123", "second"]);
    assert_eq!(got.headers["authorization"], "Bearer s3cret");
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(&got.body[..], br#"{"item_id":"widget","rating":5}"#);

    // A raw body, with the caller's own content type kept.
    c.post("/ratings")
        .header("content-type", "text/csv")
        .body(Bytes::from_static(b"widget,5\n"))
        .await
        .expect("answer");
    let got = echo.received().pop().expect("received");
    assert_eq!(
        (got.method, got.target.as_str()),
        (Method::POST, "/ratings")
    );
    assert_eq!(got.headers["content-type"], "text/csv");
    assert_eq!(&got.body[..], b"widget,5\n");
}

#[tokio::test]
async fn invalid_input_is_an_invalid_request_and_sends_nothing() {
    let echo = serving(1, Behaviour::Ratings).await;
    let c = client(&[&echo]).build().expect("client");
    let cases = [
        c.get("/ratings/widget").header("bad header", "x"),
        c.get("/ratings/widget").header("x-ok", "line\nbreak"),
        c.get("ratings/widget"),
        c.get("/ratings/widget").timeout(Duration::ZERO),
    ];
    for request in cases {
        let error = request.await.unwrap_err();
        assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
        assert!(!error.is_instance_failure());
    }
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn a_post_is_sent_once_unless_marked_idempotent() {
    let (one, two) = (
        serving(1, Behaviour::Status(503)).await,
        serving(2, Behaviour::Status(503)).await,
    );
    let c = client(&[&one, &two])
        .max_retries(2)
        .build()
        .expect("client");
    let error = c.post("/ratings").json(&5).await.unwrap_err();
    assert!(
        matches!(error, Error::Status { status: 503, .. }),
        "{error:?}"
    );
    assert_eq!(one.hits() + two.hits(), 1, "a POST is never sent twice");

    // Slow, not failing: still no hedge for a POST.
    one.set(Behaviour::delay(
        Duration::from_millis(300),
        Behaviour::Ratings,
    ));
    two.set(Behaviour::delay(
        Duration::from_millis(300),
        Behaviour::Ratings,
    ));
    let c = client(&[&one, &two])
        .hedge_after(Duration::from_millis(20))
        .build()
        .expect("client");
    let before = one.hits() + two.hits();
    c.post("/ratings").json(&5).await.expect("answer");
    assert_eq!(one.hits() + two.hits() - before, 1, "nor hedged");

    // Marked idempotent, a failed POST is retried on the other instance.
    one.set(Behaviour::Status(503));
    two.set(Behaviour::Ratings);
    let c = client(&[&one, &two])
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    let before = (one.hits(), two.hits());
    let answer = c
        .post("/ratings/widget")
        .idempotent(true)
        .json(&5)
        .await
        .expect("retried on 2");
    assert_eq!(answer.instance().id, "2");
    assert_eq!((one.hits() - before.0, two.hits() - before.1), (1, 1));
}

#[tokio::test]
async fn per_request_timeout_and_retries_override_the_clients() {
    let (one, two, three) = (
        serving(1, Behaviour::Hang).await,
        serving(2, Behaviour::Hang).await,
        serving(3, Behaviour::Hang).await,
    );
    let c = client(&[&one, &two, &three])
        .timeout(Duration::from_secs(5))
        .max_retries(2)
        .hedging(Hedging::Off)
        .build()
        .expect("client");
    let started = Instant::now();
    let error = c
        .get("/ratings/widget")
        .no_cache()
        .timeout(Duration::from_millis(100))
        .retries(0)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        Error::Timeout {
            address: one.url.clone(),
            timeout: Duration::from_millis(100)
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(one.hits() + two.hits() + three.hits(), 1);

    let started = Instant::now();
    let error = c
        .get("/ratings/widget")
        .no_cache()
        .timeout(Duration::from_millis(100))
        .retries(1)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(one.hits() + two.hits() + three.hits(), 3, "one retry");

    let started = Instant::now();
    let error = c
        .get("/ratings/widget")
        .no_cache()
        .deadline(Duration::from_millis(150))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::DeadlineExceeded { .. } | Error::Timeout { .. }
        ),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_error_answer_carries_its_headers_body_and_retry_after() {
    let held = b"HTTP/1.1 409 Conflict\r\nRetry-After: 7\r\nContent-Type: application/json\r\n\
Content-Length: 16\r\nConnection: close\r\n\r\n{\"error\":\"busy\"}";
    let fake = FakeRatings::start(1, Behaviour::Raw(held.to_vec())).await;
    let c = client(&[&fake]).build().expect("client");
    let answer = c.get("/ratings/widget").await.expect("a 4xx is an answer");
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    assert_eq!(answer.source(), Source::Live);
    let error = answer.error_for_status().unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    match &error {
        Error::Status {
            status,
            headers,
            body,
            ..
        } => {
            assert_eq!(*status, 409);
            assert_eq!(headers["content-type"], "application/json");
            assert_eq!(&body[..], br#"{"error":"busy"}"#);
        }
        other => panic!("{other:?}"),
    }
    // The same through the JSON shortcut.
    let error = c
        .get_json::<serde_json::Value>("/ratings/widget")
        .await
        .unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));

    // A 429 is back-pressure: with no other instance to try, the call is `Overloaded`,
    // carrying the wait the instance asked for (counted from its answer).
    let busy = String::from_utf8_lossy(held).replace("409 Conflict", "429 Too Many Requests");
    let fake = FakeRatings::start(2, Behaviour::Raw(busy.into_bytes())).await;
    let c = client(&[&fake]).build().expect("client");
    let error = c.get("/ratings/widget").await.unwrap_err();
    assert!(matches!(error, Error::Overloaded { .. }), "{error:?}");
    let wait = error.retry_after().expect("a retry-after");
    assert!(
        wait > Duration::from_secs(6) && wait <= Duration::from_secs(7),
        "{wait:?}"
    );
    assert!(!error.is_instance_failure());
}

#[tokio::test]
async fn only_anonymous_gets_are_cached() {
    let fake = serving(1, Behaviour::Ratings).await;
    let c = client(&[&fake]).build().expect("client");
    let sources = |answers: Vec<discovery_client::Response>| -> Vec<Source> {
        answers.iter().map(|a| a.source()).collect()
    };
    let mut answers = Vec::new();
    for _ in 0..2 {
        answers.push(c.get("/ratings/widget").await.expect("answer"));
    }
    assert_eq!(sources(answers), [Source::Live, Source::Cache]);
    assert_eq!(fake.hits(), 1);
    let mut answers = Vec::new();
    for _ in 0..2 {
        answers.push(c.get("/ratings/gadget").no_cache().await.expect("answer"));
        answers.push(
            c.get("/ratings/gizmo")
                .bearer_auth("me")
                .await
                .expect("answer"),
        );
    }
    assert!(sources(answers).iter().all(|s| *s == Source::Live));
    assert_eq!(fake.hits(), 5);
    // A 4xx answer is the caller's: returned, never cached.
    for _ in 0..2 {
        let answer = c.get("/ratings/nothing").await.expect("answer");
        assert_eq!(
            (answer.status(), answer.source()),
            (StatusCode::NOT_FOUND, Source::Live)
        );
    }
    assert_eq!(fake.hits(), 7);
}
