//! [`HttpEndpoint`]: the leaf service that sends one request to one instance over HTTP.
//!
//! It takes an `http::Request<Bytes>` whose URI is a path (such as `/ratings/widget?x=1`),
//! sends it to the instance's base address with `reqwest`, and answers with the whole body
//! read, as an `http::Response<Bytes>`, so that a classifier above it can judge the body. A
//! request that could not be sent, or whose answer could not be read, fails with
//! [`Error::Http`] naming the instance. Timeouts are the business of the
//! [`Timeout`](crate::timeout::Timeout) layer around it.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use tower::Service;

use crate::Error;

/// Sends requests to the instance at one base address; see the [module docs](self).
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
    client: reqwest::Client,
    /// The instance's base URL, without a trailing `/`.
    address: Arc<str>,
}

impl HttpEndpoint {
    /// Sends to the instance at `address` (such as `http://127.0.0.1:8001`) with a default
    /// HTTP client.
    pub fn new(address: impl AsRef<str>) -> Self {
        Self::with_client(reqwest::Client::new(), address)
    }

    /// Sends to the instance at `address` through `client` (share one client, and so one
    /// connection pool, among all endpoints).
    pub fn with_client(client: reqwest::Client, address: impl AsRef<str>) -> Self {
        Self {
            client,
            address: Arc::from(address.as_ref().trim_end_matches('/')),
        }
    }

    /// The instance's base address.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Service<http::Request<Bytes>> for HttpEndpoint {
    type Response = http::Response<Bytes>;
    type Error = Error;
    type Future = BoxFuture<'static, Result<http::Response<Bytes>, Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // reqwest queues requests in its own pool.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let client = self.client.clone();
        let address = Arc::clone(&self.address);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            let url = format!("{address}{path}");
            let url = reqwest::Url::parse(&url)
                .map_err(|e| Error::InvalidRequest(format!("URL {url:?}: {e}")))?;
            let mut outgoing = reqwest::Request::new(parts.method, url);
            *outgoing.headers_mut() = parts.headers;
            if !body.is_empty() {
                *outgoing.body_mut() = Some(body.into());
            }
            let mut answer = client
                .execute(outgoing)
                .await
                .map_err(|e| http_error(&address, &e))?;
            let status = answer.status();
            let headers = std::mem::take(answer.headers_mut());
            let body = answer.bytes().await.map_err(|e| http_error(&address, &e))?;
            let mut response = http::Response::new(body);
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            Ok(response)
        })
    }
}

/// The error with its causes, which is where reqwest says what really happened.
fn http_error(address: &str, error: &reqwest::Error) -> Error {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::Http {
        address: address.to_string(),
        message,
    }
}
