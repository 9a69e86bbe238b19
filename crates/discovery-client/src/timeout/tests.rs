//! [`Timeout`] by itself, on paused time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, ServiceExt};

use super::*;

const ADDRESS: &str = "http://127.0.0.1:8001";

/// A service that answers after `delay`.
fn slow(
    delay: Duration,
) -> impl tower::Service<
    http::Request<()>,
    Response = &'static str,
    Error = Error,
    Future = impl Future<Output = Result<&'static str, Error>>,
> + Clone {
    tower::service_fn(move |_: http::Request<()>| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, Error>("answer")
    })
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_fails_with_the_address_and_the_time_allowed() {
    let svc =
        TimeoutLayer::new(ADDRESS, Duration::from_secs(1)).layer(slow(Duration::from_secs(5)));
    let started = Instant::now();
    let error = svc.oneshot(http::Request::new(())).await.unwrap_err();
    assert_eq!(
        error,
        Error::Timeout {
            address: ADDRESS.into(),
            timeout: Duration::from_secs(1)
        }
    );
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_call_in_time_passes_through_and_inner_errors_are_kept() {
    let svc = Timeout::new(
        slow(Duration::from_millis(999)),
        ADDRESS,
        Duration::from_secs(1),
    );
    assert_eq!(svc.timeout(), Duration::from_secs(1));
    assert_eq!(svc.oneshot(http::Request::new(())).await, Ok("answer"));
    let failing = tower::service_fn(|_: http::Request<()>| async {
        Err::<(), _>(Error::Http {
            address: ADDRESS.into(),
            message: "connection refused".into(),
        })
    });
    let error = TimeoutLayer::new(ADDRESS, Duration::from_secs(1))
        .layer(failing)
        .oneshot(http::Request::new(()))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Http { .. }), "{error:?}");
}

#[tokio::test(start_paused = true)]
async fn a_deadline_in_the_request_cuts_the_attempt_short() {
    let svc =
        TimeoutLayer::new(ADDRESS, Duration::from_secs(1)).layer(slow(Duration::from_secs(5)));
    let started = Instant::now();
    let mut request = http::Request::new(());
    request
        .extensions_mut()
        .insert(Deadline(started + Duration::from_millis(300)));
    let error = svc.clone().oneshot(request).await.unwrap_err();
    assert_eq!(
        error,
        Error::Timeout {
            address: ADDRESS.into(),
            timeout: Duration::from_millis(300)
        }
    );
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    // A deadline later than the timeout changes nothing.
    let mut request = http::Request::new(());
    request
        .extensions_mut()
        .insert(Deadline(Instant::now() + Duration::from_secs(60)));
    let error = svc.oneshot(request).await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout { timeout, .. } if timeout == Duration::from_secs(1)),
        "{error:?}"
    );
}
