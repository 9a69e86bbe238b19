//! A per-attempt timeout that names the instance that did not answer.
//!
//! [`Timeout`] bounds each call to one instance's service: when the inner future has not
//! finished after the timeout, it is dropped and the call fails with
//! [`Error::Timeout`] carrying the instance's address and the time
//! allowed, which the breaker counts as the instance's failure. The inner service's errors
//! are judged as [`Error::from_leaf`] says. A request may carry a
//! [`Deadline`] in its extensions (an overall deadline across retries); the attempt then gets
//! whichever is sooner.
//!
//! Timing runs on tokio's clock, so tests drive it on paused time.
//!
//! ```
//! use std::time::Duration;
//! use discovery_client::timeout::TimeoutLayer;
//! use discovery_client::Error;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new("http://127.0.0.1:8001", Duration::from_secs(1)))
//!     .service_fn(|_: http::Request<()>| async {
//!         tokio::time::sleep(Duration::from_secs(5)).await;
//!         Ok::<_, Error>(http::Response::new(()))
//!     });
//! let error = svc.oneshot(http::Request::new(())).await.unwrap_err();
//! assert_eq!(
//!     error,
//!     Error::Timeout { address: "http://127.0.0.1:8001".into(), timeout: Duration::from_secs(1) }
//! );
//! # }
//! ```

mod future;
mod layer;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{BoxError, Service};

use crate::Error;

pub use future::ResponseFuture;
pub use layer::TimeoutLayer;

/// An overall deadline for a request, put in its extensions: every attempt's timeout is cut
/// short so that it ends by then.
///
/// ```
/// use std::time::Duration;
/// use discovery_client::timeout::Deadline;
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(Deadline(Instant::now() + Duration::from_millis(1500)));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

/// Fails a call to one instance with [`Error::Timeout`] when it takes longer than the
/// timeout (or runs past the request's [`Deadline`]). Made by [`TimeoutLayer`].
///
/// ```
/// use std::time::Duration;
/// use discovery_client::timeout::Timeout;
/// use discovery_client::transport::HttpEndpoint;
///
/// let address = "http://127.0.0.1:8001";
/// let svc = Timeout::new(HttpEndpoint::new(address), address, Duration::from_secs(1));
/// # let _ = svc;
/// ```
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    /// The call being bounded.
    inner: S,
    /// Time allowed for one call.
    timeout: Duration,
    /// The instance called, named in the error.
    address: Arc<str>,
}

impl<S> Timeout<S> {
    /// Bounds calls to `inner`, the service of the instance at `address`, to `timeout`.
    pub fn new(inner: S, address: impl AsRef<str>, timeout: Duration) -> Self {
        Self::with_address(inner, Arc::from(address.as_ref()), timeout)
    }

    pub(crate) fn with_address(inner: S, address: Arc<str>, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            address,
        }
    }

    /// The time allowed for one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S, B> Service<http::Request<B>> for Timeout<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::from_leaf(e.into(), &self.address))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let limit = match request.extensions().get::<Deadline>() {
            Some(Deadline(deadline)) => self
                .timeout
                .min(deadline.saturating_duration_since(Instant::now())),
            None => self.timeout,
        };
        ResponseFuture::new(self.inner.call(request), limit, Arc::clone(&self.address))
    }
}

#[cfg(test)]
mod tests;
