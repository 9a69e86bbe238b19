//! [`HttpEndpoint`]: the leaf service of a hand-built tower stack, for one instance.

use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tower::Service;

use super::{BaseUrl, HttpClient};
use crate::{Error, Instance};

/// Sends requests to the instance at one base address through an [`HttpClient`], and
/// answers with the whole body read, as an `http::Response<Bytes>`, so that a breaker above
/// it can judge the body.
///
/// It takes an `http::Request<Bytes>` whose URI is a path (such as `/ratings/widget?x=1`)
/// and sends it to the instance's address joined with that path. A request that could not
/// be sent, or whose answer could not be read, fails with [`Error::Http`] naming the
/// instance. Timeouts are the business of the [`Timeout`](crate::timeout::Timeout) layer
/// around it.
///
/// ```no_run
/// use bytes::Bytes;
/// use discovery_client::transport::HttpEndpoint;
/// use tower::ServiceExt;
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let endpoint = HttpEndpoint::new("http://127.0.0.1:8001");
/// let request = http::Request::get("/ratings/widget").body(Bytes::new()).unwrap();
/// let answer = endpoint.oneshot(request).await?;
/// println!("{} {:?}", answer.status(), answer.body());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HttpEndpoint {
    /// The HTTP client (connection pool) requests go through.
    client: HttpClient,
    /// The instance's address, parsed.
    base: BaseUrl,
}

impl HttpEndpoint {
    /// Sends to the instance at `address` (such as `http://127.0.0.1:8001`) with a default
    /// HTTP client.
    pub fn new(address: impl AsRef<str>) -> Self {
        Self::with_client(HttpClient::new(), address)
    }

    /// Sends to the instance at `address` through `client` (share one client, and so one
    /// connection pool, among all endpoints).
    pub fn with_client(client: HttpClient, address: impl AsRef<str>) -> Self {
        Self {
            client,
            base: BaseUrl::new(address.as_ref()),
        }
    }

    /// Sends to `instance` through `client`, checking its certificate against the
    /// instance's [`TLS_SERVER_NAME`](crate::TLS_SERVER_NAME) metadata when it has one (as
    /// [`ServiceClient`](crate::ServiceClient) does), else against its address's host.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) if that metadata is not a valid server name.
    pub fn for_instance(client: HttpClient, instance: &Instance) -> Result<Self, Error> {
        if let Some(name) = instance.metadata.get(crate::TLS_SERVER_NAME) {
            client.server_names().insert(&instance.address, name)?;
        }
        Ok(Self::with_client(client, &instance.address))
    }

    /// The instance's base address.
    pub fn address(&self) -> &str {
        self.base.address()
    }
}

impl Service<http::Request<Bytes>> for HttpEndpoint {
    type Response = http::Response<Bytes>;
    type Error = Error;
    type Future = BoxFuture<'static, Result<http::Response<Bytes>, Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The client queues requests in its own pool.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let uri = self.base.join(request.uri().path_and_query());
        let mut client = self.client.clone();
        let base = self.base.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            parts.uri = uri?;
            let leaf = |e| Error::from_leaf(e, base.address());
            let request = http::Request::from_parts(parts, body);
            let answer = client.call(request).await.map_err(leaf)?;
            let (parts, body) = answer.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| Error::http(base.address(), &e))?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        })
    }
}
