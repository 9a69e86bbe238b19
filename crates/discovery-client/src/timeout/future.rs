//! The future of [`Timeout`](super::Timeout).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::BoxError;

use crate::Error;

pin_project! {
    /// The inner call, or [`Error::Timeout`] if it has not finished in time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use discovery_client::timeout::{ResponseFuture, TimeoutLayer};
    /// use discovery_client::Error;
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut svc = TimeoutLayer::new("http://127.0.0.1:8001", Duration::from_secs(1))
    ///     .layer(tower::service_fn(|_: http::Request<()>| async { Ok::<_, Error>("answer") }));
    /// let future = svc.ready().await.unwrap().call(http::Request::new(()));
    /// let _: &ResponseFuture<_> = &future;
    /// assert_eq!(future.await, Ok("answer"));
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Sleep,
        timeout: Duration,
        address: Arc<str>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, timeout: Duration, address: Arc<str>) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(timeout),
            timeout,
            address,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(|e| Error::from_leaf(e.into(), this.address)));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Error::Timeout {
                address: this.address.to_string(),
                timeout: *this.timeout,
            })),
            Poll::Pending => Poll::Pending,
        }
    }
}
