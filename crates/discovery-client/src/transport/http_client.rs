//! [`HttpEndpoint`]: the leaf service that sends one request to one instance over HTTP.
//!
//! It takes an `http::Request<Bytes>` whose URI is a path (such as `/ratings/widget?x=1`),
//! sends it to the instance's base address through an [`HttpClient`] (hyper's pooled
//! HTTP/1.1 client), and answers with the whole body read, as an `http::Response<Bytes>`, so
//! that a classifier above it can judge the body. A request that could not be sent, or whose
//! answer could not be read, fails with [`Error::Http`] naming the instance. Timeouts are the
//! business of the [`Timeout`](crate::timeout::Timeout) layer around it.
//!
//! Why hyper and not reqwest here: measured side by side on this path (docs/BENCHMARKS.md),
//! reqwest spent about half again as much of the caller's CPU per request as hyper's client
//! under it (URL parsing and conversion, redirect and proxy handling, its own futures), and
//! an instance call needs none of that: plain HTTP to an address discovery gave, the path
//! already parsed. The request's path and query are used as given (not re-parsed or
//! normalised), no proxy from the environment is used, and addresses are plain `http://`
//! (another scheme fails each request with [`Error::InvalidRequest`], which trips no
//! breaker).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::Service;

use crate::Error;

/// A pooled HTTP/1.1 client (hyper's), shared by the endpoints that use it; cloning shares
/// the connection pool.
///
/// ```
/// use std::time::Duration;
/// use discovery_client::transport::HttpClient;
///
/// let http = HttpClient::builder()
///     .connect_timeout(Duration::from_millis(500))
///     .pool_idle_timeout(Duration::from_secs(30))
///     .build();
/// # let _ = http;
/// ```
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl HttpClient {
    /// A client with the defaults of [`HttpClientBuilder`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts configuring a client.
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::default()
    }
}

/// Settings for an [`HttpClient`]. Defaults: no connect timeout of its own (the per-attempt
/// timeout bounds it), idle connections closed after 90 s, any number kept per instance,
/// `TCP_NODELAY` on.
///
/// One client shared by two services' clients, so they share its connection pool:
///
/// ```no_run
/// use std::time::Duration;
/// use discovery_client::transport::HttpClient;
/// use discovery_client::{ServiceClient, StaticDiscovery};
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let http = HttpClient::builder().pool_max_idle_per_host(32).build();
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(StaticDiscovery::new(["http://127.0.0.1:8001"]))
///     .http_client(http.clone())
///     .build()?;
/// let prices = ServiceClient::builder("prices")
///     .discovery(StaticDiscovery::new(["http://127.0.0.1:9001"]))
///     .http_client(http)
///     .build()?;
/// # let _ = (ratings, prices);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HttpClientBuilder {
    connect_timeout: Option<Duration>,
    pool_idle_timeout: Option<Duration>,
    pool_max_idle_per_host: usize,
}

impl Default for HttpClientBuilder {
    fn default() -> Self {
        Self {
            connect_timeout: None,
            pool_idle_timeout: Some(Duration::from_secs(90)),
            pool_max_idle_per_host: usize::MAX,
        }
    }
}

impl HttpClientBuilder {
    /// Gives up connecting after `timeout`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Closes a pooled connection idle for `timeout`.
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = Some(timeout);
        self
    }

    /// Keeps at most `max` idle connections per instance.
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// The client.
    pub fn build(self) -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(self.connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .build(connector);
        HttpClient { client }
    }
}

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
    client: HttpClient,
    /// The instance's base URL, without a trailing `/`.
    address: Arc<str>,
    /// The base URL's parts, parsed once; or why it does not parse.
    base: Result<Base, Arc<str>>,
}

/// An instance's base URL, parsed.
#[derive(Debug, Clone)]
struct Base {
    scheme: Scheme,
    authority: Authority,
    /// The path prefix without a trailing `/` (empty for a bare origin such as
    /// `http://127.0.0.1:8001`).
    prefix: Arc<str>,
}

impl Base {
    fn parse(address: &str) -> Result<Base, String> {
        let uri: Uri = address.parse().map_err(|e| format!("{e}"))?;
        let parts = uri.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err("not an absolute URL (scheme and host needed)".into());
        };
        if scheme != Scheme::HTTP {
            return Err(format!(
                "scheme {scheme} is not supported: instances are called over plain http://"
            ));
        }
        let prefix = match &parts.path_and_query {
            Some(pq) if pq.query().is_some() => {
                return Err("a base address cannot have a query".into());
            }
            Some(pq) => pq.path().trim_end_matches('/'),
            None => "",
        };
        Ok(Base {
            scheme,
            authority,
            prefix: Arc::from(prefix),
        })
    }
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
        let address = address.as_ref().trim_end_matches('/');
        Self {
            client,
            address: Arc::from(address),
            base: Base::parse(address).map_err(Arc::from),
        }
    }

    /// The instance's base address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The absolute URI of the request URI's path and query at this instance: the base
    /// address's path prefix, then the path and query as given.
    fn uri(&self, request: &Uri) -> Result<Uri, Error> {
        let path_and_query = request.path_and_query();
        let invalid = |reason: &dyn std::fmt::Display| {
            let path = path_and_query.map_or("/", PathAndQuery::as_str);
            Error::InvalidRequest(format!(
                "URL {:?}: {reason}",
                format!("{}{path}", self.address)
            ))
        };
        let base = self.base.as_ref().map_err(|reason| invalid(reason))?;
        let path_and_query = match (base.prefix.is_empty(), path_and_query) {
            (true, Some(pq)) => pq.clone(),
            (true, None) => PathAndQuery::from_static("/"),
            (false, pq) => {
                let joined = format!("{}{}", base.prefix, pq.map_or("/", PathAndQuery::as_str));
                PathAndQuery::try_from(joined).map_err(|e| invalid(&e))?
            }
        };
        Uri::builder()
            .scheme(base.scheme.clone())
            .authority(base.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| invalid(&e))
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
        let uri = self.uri(request.uri());
        let client = self.client.client.clone();
        let address = Arc::clone(&self.address);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            parts.uri = uri?;
            let outgoing = http::Request::from_parts(parts, Full::new(body));
            let answer = client
                .request(outgoing)
                .await
                .map_err(|e| http_error(&address, &e))?;
            let (parts, body) = answer.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| http_error(&address, &e))?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// The error with its causes, which is where the client says what really happened (such as
/// `client error (Connect): tcp connect error: Connection refused (os error 111)`).
fn http_error(address: &str, error: &(dyn std::error::Error + 'static)) -> Error {
    let mut message = error.to_string();
    let mut source = error.source();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(endpoint: &HttpEndpoint, path: &str) -> Result<String, Error> {
        let request: Uri = path.parse().expect("path");
        endpoint.uri(&request).map(|u| u.to_string())
    }

    #[test]
    fn the_path_and_query_go_to_the_instance_as_given() {
        let paths = [
            "/",
            "/ratings/widget",
            "/ratings/widget?x=1&y=%20z",
            "/a/../b/./c",
            "//double/slash",
            "/x?",
            "/%7Euser/caf%C3%A9",
            "/p?q=a?b",
        ];
        for (address, prefix) in [
            ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
            ("http://127.0.0.1:8001/", "http://127.0.0.1:8001"),
            ("http://localhost", "http://localhost"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://127.0.0.1:8001/api", "http://127.0.0.1:8001/api"),
            ("http://127.0.0.1:8001/api/", "http://127.0.0.1:8001/api"),
        ] {
            let endpoint = HttpEndpoint::new(address);
            for path in paths {
                assert_eq!(
                    uri(&endpoint, path).expect("valid"),
                    format!("{prefix}{path}"),
                    "{address} + {path}"
                );
            }
        }
    }

    #[test]
    fn an_address_that_does_not_parse_fails_each_request_by_name() {
        for address in [
            "not a url",
            "127.0.0.1:8001",
            "/relative",
            "http://h/?q=1",
            "https://h:443",
        ] {
            let endpoint = HttpEndpoint::new(address);
            let error = uri(&endpoint, "/x").expect_err("invalid");
            assert!(
                matches!(&error, Error::InvalidRequest(m) if m.contains(&format!("{address}/x")) || m.contains(address)),
                "{address}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_http_error_naming_the_instance_and_the_cause() {
        use tower::ServiceExt;
        // Bound and never listening: connecting is refused.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let address = format!("http://{}", socket.local_addr().expect("addr"));
        let request = http::Request::get("/x")
            .body(Bytes::new())
            .expect("request");
        let error = HttpEndpoint::new(&address)
            .oneshot(request)
            .await
            .expect_err("refused");
        match error {
            Error::Http {
                address: a,
                message,
            } => {
                assert_eq!(a, address);
                assert!(
                    message.to_lowercase().contains("connection refused"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
