//! A breaker that opens because its instance could not be connected to asks discovery for
//! a fresh look (the instance may be gone); one opened by answers does not.

use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::mpsc;

use super::*;
use crate::discovery::tests::Scripted;

/// A client whose single instance fails every attempt with `fail`, and its discovery sink.
async fn client_failing_with(
    fail: fn() -> Result<http::Response<String>, std::io::Error>,
) -> (ServiceClient, DiscoverySink) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let transport = tower::service_fn(move |_request: http::Request<Bytes>| async move { fail() });
    let client = ServiceClient::builder("ratings")
        .discovery(Scripted { sinks: tx })
        .transport(transport)
        .timeout(TIMEOUT)
        .retest_delay(RETEST)
        .build()
        .expect("client");
    let sink = rx.recv().await.expect("discovery started");
    sink.publish(vec![crate::Instance::new(
        "10.0.0.1:80",
        "http://10.0.0.1:80",
    )]);
    discovered(&client).await;
    (client, sink)
}

#[tokio::test(start_paused = true)]
async fn a_breaker_opened_by_a_refused_connection_asks_discovery_to_look_again() {
    let (client, sink) =
        client_failing_with(|| Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)))
            .await;
    assert!(
        sink.refresh_requested().now_or_never().is_none(),
        "nothing asked before a call"
    );
    let error = client
        .get_json::<Rating>("/ratings/widget")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Http { .. }), "{error:?}");
    tokio::time::timeout(Duration::from_secs(1), sink.refresh_requested())
        .await
        .expect("a fresh look asked for");
}

#[tokio::test(start_paused = true)]
async fn a_breaker_opened_by_5xx_answers_does_not() {
    let (client, sink) = client_failing_with(|| {
        let mut answer = http::Response::new(String::from("down"));
        *answer.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        Ok(answer)
    })
    .await;
    let mut events = client.subscribe();
    let _ = client
        .get_json::<Rating>("/ratings/widget")
        .await
        .unwrap_err();
    assert_eq!(next_event(&mut events).await, opened("http://10.0.0.1:80"));
    assert!(
        sink.refresh_requested().now_or_never().is_none(),
        "an instance that answers is there"
    );
}
