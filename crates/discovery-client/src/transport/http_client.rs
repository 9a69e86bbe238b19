//! [`HttpClient`]: the default transport, hyper's pooled HTTP/1.1 client.
//!
//! Why hyper and not reqwest here: reqwest does work per request that an instance call does
//! not need (URL parsing and conversion, redirect and proxy handling, its own futures), and
//! it costs the caller CPU (docs/BENCHMARKS.md compares the two); an instance call is plain
//! HTTP to an address discovery gave, the path already parsed. The request's path and query are sent as given (not re-parsed or
//! normalised), no proxy from the environment is used, and only `http://` is spoken: a
//! request for another scheme is refused with [`Error::InvalidRequest`], which trips no
//! breaker.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pin_project_lite::pin_project;
use tower::{BoxError, Service};

use crate::Error;

/// A pooled HTTP/1.1 client (hyper's): the default transport. Cloning shares the connection
/// pool.
///
/// It is a transport as [`transport`](crate::transport) describes: a tower service taking
/// an `http::Request<Bytes>` with an absolute `http://` URI. Give one to several clients
/// ([`ServiceClientBuilder::transport`](crate::ServiceClientBuilder::transport)) to share
/// its pool:
///
/// ```no_run
/// use std::time::Duration;
/// use discovery_client::transport::HttpClient;
/// use discovery_client::{ServiceClient, StaticDiscovery};
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let http = HttpClient::builder()
///     .connect_timeout(Duration::from_millis(500))
///     .pool_max_idle_per_host(32)
///     .build();
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(StaticDiscovery::new(["http://127.0.0.1:8001"]))
///     .transport(http.clone())
///     .build()?;
/// let prices = ServiceClient::builder("prices")
///     .discovery(StaticDiscovery::new(["http://127.0.0.1:9001"]))
///     .transport(http)
///     .build()?;
/// # let _ = (ratings, prices);
/// # Ok(()) }
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

impl Service<http::Request<Bytes>> for HttpClient {
    type Response = http::Response<Incoming>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The client queues requests in its own pool.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let scheme = request.uri().scheme();
        if scheme != Some(&Scheme::HTTP) {
            let error = Error::InvalidRequest(format!(
                "URL {:?}: only http:// is supported by this transport",
                request.uri().to_string()
            ));
            return ResponseFuture {
                kind: Kind::Refused {
                    error: Some(error.into()),
                },
            };
        }
        let future = self.client.request(request.map(Full::new));
        ResponseFuture {
            kind: Kind::Sending { future },
        }
    }
}

pin_project! {
    /// The future of [`HttpClient`]'s `call`: the answer's head, its body still to be read.
    pub struct ResponseFuture {
        #[pin]
        kind: Kind,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        Sending { #[pin] future: hyper_util::client::legacy::ResponseFuture },
        Refused { error: Option<BoxError> },
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<Incoming>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Sending { future } => future.poll(cx).map_err(Into::into),
            KindProj::Refused { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                Error::InvalidRequest("response future polled after completion".into()).into()
            }))),
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    fn get(uri: &str) -> http::Request<Bytes> {
        http::Request::get(uri).body(Bytes::new()).expect("request")
    }

    #[tokio::test]
    async fn another_scheme_is_an_invalid_request_not_a_transport_failure() {
        let error = HttpClient::new()
            .oneshot(get("https://127.0.0.1:1/x"))
            .await
            .expect_err("refused");
        let error = Error::from_leaf(error, "https://127.0.0.1:1");
        assert!(
            matches!(&error, Error::InvalidRequest(m) if m.contains("only http://")),
            "{error:?}"
        );
        assert!(!error.is_instance_failure());
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transport_failure_naming_the_cause() {
        let closed = tokio::net::TcpSocket::new_v4().expect("socket");
        closed.bind(([127, 0, 0, 1], 0).into()).expect("bind");
        let address = format!("http://{}", closed.local_addr().expect("addr"));
        let error = HttpClient::new()
            .oneshot(get(&format!("{address}/x")))
            .await
            .expect_err("refused");
        match Error::from_leaf(error, &address) {
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
