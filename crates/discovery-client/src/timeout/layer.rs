//! [`TimeoutLayer`]: wraps one instance's service in a [`Timeout`].

use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::Timeout;

/// Wraps the service of the instance at an address in a [`Timeout`].
///
/// ```
/// use std::time::Duration;
/// use discovery_client::timeout::TimeoutLayer;
/// use discovery_client::transport::HttpEndpoint;
/// use tower::ServiceBuilder;
///
/// let address = "http://127.0.0.1:8001";
/// let svc = ServiceBuilder::new()
///     .layer(TimeoutLayer::new(address, Duration::from_secs(1)))
///     .service(HttpEndpoint::new(address));
/// # let _ = svc;
/// ```
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    /// Time allowed for one call.
    timeout: Duration,
    /// The instance called, named in the error.
    address: Arc<str>,
}

impl TimeoutLayer {
    /// Bounds each call to the instance at `address` to `timeout`.
    pub fn new(address: impl AsRef<str>, timeout: Duration) -> Self {
        Self {
            timeout,
            address: Arc::from(address.as_ref()),
        }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::with_address(inner, Arc::clone(&self.address), self.timeout)
    }
}
