//! A streamed [`BreakerService`] on paused time: answers judged by their head, gRPC calls by
//! their `grpc-status`, and streams longer than the per-attempt timeout.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::HeaderMap;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tower::{Layer, ServiceBuilder, ServiceExt};

use super::*;
use crate::Instance;
use crate::timeout::TimeoutLayer;

const ADDRESS: &str = "http://127.0.0.1:50051";

type Frames = futures::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>;

fn empty() -> StreamBody<Frames> {
    StreamBody::new(futures::stream::empty().boxed())
}

fn layer() -> BreakerLayer<StreamedAnswer> {
    BreakerLayer::new(
        "ratings",
        &Instance::new("1", ADDRESS),
        BreakerConfig::default(),
    )
    .streamed()
}

fn grpc_head(status: Option<&str>) -> http::response::Builder {
    let answer = http::Response::builder().header("content-type", "application/grpc");
    match status {
        Some(code) => answer.header("grpc-status", code),
        None => answer,
    }
}

fn trailers(code: &str) -> Frame<Bytes> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", code.parse().expect("a header value"));
    Frame::trailers(trailers)
}

/// One message every `every`, `count` times, then the trailers with `code`.
fn stream_of(count: usize, every: Duration, code: &'static str) -> Frames {
    let messages = futures::stream::iter(0..count).then(move |_| async move {
        tokio::time::sleep(every).await;
        Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi")))
    });
    messages
        .chain(futures::stream::once(async move { Ok(trailers(code)) }))
        .boxed()
}

/// Calls once through `layer` an instance that answers `answer`'s head at once.
async fn call(
    layer: &BreakerLayer<StreamedAnswer>,
    answer: http::Response<StreamBody<Frames>>,
) -> http::Response<JudgedBody<StreamBody<Frames>>> {
    let answer = std::sync::Mutex::new(Some(answer));
    let svc = layer.layer(tower::service_fn(move |_: http::Request<()>| {
        let answer = answer.lock().ok().and_then(|mut a| a.take());
        async move { answer.ok_or("called twice") }
    }));
    svc.oneshot(http::Request::new(()))
        .await
        .expect("the instance answers")
}

#[tokio::test(start_paused = true)]
async fn unavailable_in_the_trailers_opens_when_the_stream_ends() {
    let layer = layer();
    let body = StreamBody::new(stream_of(2, Duration::from_millis(10), "14"));
    let answer = call(&layer, grpc_head(None).body(body).expect("an answer")).await;
    assert!(answer.body().is_judging());
    assert_eq!(
        layer.breaker().state(),
        BreakerState::Closed,
        "not known yet"
    );
    let collected = answer.into_body().collect().await.expect("a whole stream");
    assert!(collected.trailers().is_some());
    assert_eq!(layer.breaker().state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn trailers_only_statuses_are_judged_at_the_head() {
    let layer = layer();
    let answer = call(
        &layer,
        grpc_head(Some("5")).body(empty()).expect("an answer"),
    )
    .await;
    assert!(!answer.body().is_judging());
    assert_eq!(
        layer.breaker().state(),
        BreakerState::Closed,
        "NOT_FOUND is the caller's"
    );
    let _ = call(
        &layer,
        grpc_head(Some("14")).body(empty()).expect("an answer"),
    )
    .await;
    assert_eq!(layer.breaker().state(), BreakerState::Open, "UNAVAILABLE");
}

#[tokio::test(start_paused = true)]
async fn resource_exhausted_pushes_back_without_opening() {
    let layer = layer();
    let mut svc = layer.layer(tower::service_fn(move |_: http::Request<()>| {
        let answer = grpc_head(Some("8")).body(empty());
        async move { answer }
    }));
    let now = tokio::time::Instant::now();
    let _ = (&mut svc).oneshot(http::Request::new(())).await;
    assert_eq!(layer.breaker().state(), BreakerState::Closed);
    assert!(svc.pushed_back_for(now).is_some(), "left alone a while");
}

#[tokio::test(start_paused = true)]
async fn a_plain_answer_is_judged_by_its_head() {
    let layer = layer();
    let answer = http::Response::builder()
        .status(503)
        .body(empty())
        .expect("an answer");
    let answer = call(&layer, answer).await;
    assert!(!answer.body().is_judging());
    assert_eq!(layer.breaker().state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_stream_dropped_before_its_end_records_nothing() {
    let config = BreakerConfig {
        retest_delay: Duration::from_secs(1),
        ..BreakerConfig::default()
    };
    let layer = BreakerLayer::new("ratings", &Instance::new("1", ADDRESS), config).streamed();
    // Open it, then let it reach Retest: the next call is the single probe.
    let _ = call(
        &layer,
        grpc_head(Some("14")).body(empty()).expect("an answer"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let body = StreamBody::new(stream_of(100, Duration::from_secs(1), "0"));
    let answer = call(&layer, grpc_head(None).body(body).expect("an answer")).await;
    assert_eq!(layer.breaker().state(), BreakerState::Retest);
    assert!(
        layer
            .breaker()
            .try_acquire(tokio::time::Instant::now())
            .0
            .is_none(),
        "the probe is out while its stream runs"
    );
    drop(answer);
    assert_eq!(layer.breaker().state(), BreakerState::Retest);
    assert!(
        layer
            .breaker()
            .try_acquire(tokio::time::Instant::now())
            .0
            .is_some(),
        "a dropped stream frees the probe's slot"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_longer_than_the_timeout_completes_and_succeeds() {
    let layer = layer();
    let started = tokio::time::Instant::now();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(TimeoutLayer::new(ADDRESS, Duration::from_millis(500)))
        .service_fn(|_: http::Request<()>| async {
            let body = StreamBody::new(stream_of(30, Duration::from_millis(100), "0"));
            grpc_head(None).body(body)
        });
    let answer = svc
        .oneshot(http::Request::new(()))
        .await
        .expect("the head is in time");
    let collected = answer
        .into_body()
        .collect()
        .await
        .expect("the whole stream");
    assert_eq!(collected.to_bytes().len(), 30 * 7);
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(layer.breaker().state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_head_later_than_the_timeout_fails() {
    let layer = layer();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(TimeoutLayer::new(ADDRESS, Duration::from_millis(500)))
        .service_fn(|_: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            grpc_head(Some("0")).body(empty())
        });
    let Err(error) = svc.oneshot(http::Request::new(())).await else {
        panic!("the head came after the timeout");
    };
    assert!(matches!(error, crate::Error::Timeout { .. }), "{error}");
    assert_eq!(layer.breaker().state(), BreakerState::Open);
}
