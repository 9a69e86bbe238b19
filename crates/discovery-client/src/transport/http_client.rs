//! [`HttpClient`]: the default transport, hyper's pooled client over TCP or rustls.
//!
//! Why hyper and not reqwest here: reqwest does work per request that an instance call does
//! not need (URL parsing and conversion, redirect and proxy handling, its own futures), and
//! it costs the caller CPU (docs/BENCHMARKS.md compares the two); an instance call is plain
//! HTTP to an address discovery gave, the path already parsed. The request's path and query
//! are sent as given (not re-parsed or normalised) and no proxy from the environment is
//! used. `http://` and `https://` are spoken (HTTP/2 negotiated by ALPN over TLS, or by prior
//! knowledge); a request for another scheme is refused with [`Error::InvalidRequest`], which
//! trips no breaker.
//!
//! A request hyper could not start on a pooled connection because the instance had closed
//! it (an idle keep-alive connection the server dropped) is sent again on a new connection
//! by hyper itself, before anything of it reached the instance: no error, no breaker.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::uri::Scheme;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pin_project_lite::pin_project;
use tower::{BoxError, Service};

use super::first_call::{FirstCalls, Turn};
use super::tls::{ServerNames, TlsConfig};
use crate::Error;

/// A pooled HTTP client (hyper's, with rustls for `https://`): the default transport.
/// Cloning shares the connection pool.
///
/// Over TLS, ALPN offers HTTP/2 and HTTP/1.1 and the server chooses; with
/// [`http2_prior_knowledge`](HttpClientBuilder::http2_prior_knowledge) every connection
/// speaks HTTP/2 (h2c on `http://`). Over HTTP/2, concurrent requests to one instance share
/// one connection.
///
/// It is a transport as [`transport`](crate::transport) describes: a tower service taking
/// an `http::Request<Bytes>` with an absolute `http://` or `https://` URI. Give one to several clients
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
///     .build()?;
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
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// What certificates are checked against, by address.
    server_names: ServerNames,
    /// One call at a time to an `https://` instance whose pool may be cold (ALPN), so that
    /// a burst shares one HTTP/2 connection instead of racing a handshake each.
    first_calls: Option<FirstCalls>,
}

impl Default for HttpClient {
    /// As [`HttpClient::new`].
    #[allow(clippy::expect_used)]
    fn default() -> Self {
        // The default settings have no PEM or key to refuse, and `ring` supports the default
        // protocol versions: building cannot fail.
        Self::builder()
            .build()
            .expect("the default HTTP client settings are valid")
    }
}

impl HttpClient {
    /// A client with the defaults of [`HttpClientBuilder`] (the system's roots for
    /// `https://`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the certificate of the instance at `address` against `name` (an instance's
    /// `tls_server_name` metadata, for an address that is an IP).
    pub(crate) fn server_names(&self) -> &ServerNames {
        &self.server_names
    }

    /// Starts configuring a client.
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::default()
    }
}

/// Settings for an [`HttpClient`]. Defaults: no connect timeout of its own (the per-attempt
/// timeout bounds it), idle connections closed after 90 s, any number kept per instance,
/// `TCP_NODELAY` on, the system's root certificates ([`TlsConfig::new`]), HTTP/2 by ALPN
/// over TLS and HTTP/1.1 otherwise.
///
/// ```
/// use std::time::Duration;
/// use discovery_client::transport::HttpClient;
///
/// let http = HttpClient::builder()
///     .connect_timeout(Duration::from_millis(500))
///     .pool_idle_timeout(Duration::from_secs(30))
///     .build()?;
/// # let _ = http;
/// # Ok::<_, discovery_client::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct HttpClientBuilder {
    connect_timeout: Option<Duration>,
    pool_idle_timeout: Option<Duration>,
    pool_max_idle_per_host: usize,
    tls: TlsConfig,
    http2_prior_knowledge: bool,
}

impl Default for HttpClientBuilder {
    fn default() -> Self {
        Self {
            connect_timeout: None,
            pool_idle_timeout: Some(Duration::from_secs(90)),
            pool_max_idle_per_host: usize::MAX,
            tls: TlsConfig::new(),
            http2_prior_knowledge: false,
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

    /// What `https://` connections trust and present (default: the system's roots, no
    /// client certificate).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// Speaks HTTP/2 on every connection without negotiating it: h2c on `http://`, and
    /// only `h2` offered by ALPN on `https://`. For servers known to speak HTTP/2.
    pub fn http2_prior_knowledge(mut self) -> Self {
        self.http2_prior_knowledge = true;
        self
    }

    /// The client.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the TLS settings cannot make a rustls config. Never panics,
    /// whatever rustls features other crates turn on: the `ring` provider is given
    /// explicitly.
    pub fn build(self) -> Result<HttpClient, Error> {
        let server_names = ServerNames::default();
        // No ALPN here: hyper-rustls offers the protocols the connector enables.
        let tls = self.tls.client_config(&[])?;
        let connector = https_connector(
            tls,
            server_names.clone(),
            self.connect_timeout,
            self.http2_prior_knowledge,
        );
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .http2_only(self.http2_prior_knowledge)
            // A request that could not start on a pooled connection the instance had closed
            // is sent again on a new one (hyper's default, kept on purpose).
            .retry_canceled_requests(true)
            .build(connector);
        Ok(HttpClient {
            client,
            server_names,
            // With prior knowledge hyper's pool already connects once for HTTP/2.
            first_calls: (!self.http2_prior_knowledge)
                .then(|| FirstCalls::new(self.pool_idle_timeout)),
        })
    }
}

/// The connector under every connection to an instance: TCP (no Nagle, `connect_timeout`
/// for the TCP connect), then for `https://` TLS with `tls`, checking certificates against
/// `names`; ALPN offers `h2` only when `http2_only`, otherwise `h2` and `http/1.1`.
/// `http://` is plain TCP.
pub(crate) fn https_connector(
    tls: rustls::ClientConfig,
    names: ServerNames,
    connect_timeout: Option<Duration>,
    http2_only: bool,
) -> HttpsConnector<HttpConnector> {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(connect_timeout);
    tcp.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .with_server_name_resolver(move |uri: &http::Uri| names.resolve(uri));
    match http2_only {
        true => connector.enable_http2().wrap_connector(tcp),
        false => connector.enable_all_versions().wrap_connector(tcp),
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
        if scheme != Some(&Scheme::HTTP) && scheme != Some(&Scheme::HTTPS) {
            let error = Error::InvalidRequest(format!(
                "URL {:?}: only http:// and https:// are supported by this transport",
                request.uri().to_string()
            ));
            return ResponseFuture {
                kind: Kind::Refused {
                    error: Some(error.into()),
                },
            };
        }
        let first_calls = match (&self.first_calls, request.uri().authority()) {
            (Some(calls), Some(authority)) if scheme == Some(&Scheme::HTTPS) => {
                Some((calls.clone(), authority.clone()))
            }
            _ => None,
        };
        let request = request.map(Full::new);
        let Some((calls, authority)) = first_calls else {
            let future = self.client.request(request);
            return ResponseFuture {
                kind: Kind::Sending { future },
            };
        };
        let client = self.client.clone();
        let future = Box::pin(async move {
            loop {
                match calls.turn(&authority) {
                    Turn::Go => {
                        let answer = client.request(request).await?;
                        calls.answered(&authority);
                        return Ok(answer);
                    }
                    Turn::First(first) => {
                        let answer = client.request(request).await?;
                        first.answered();
                        return Ok(answer);
                    }
                    Turn::Wait(notify) => calls.wait(&authority, notify).await,
                }
            }
        });
        ResponseFuture {
            kind: Kind::Https { future },
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
        Https { future: BoxFuture<'static, Result<http::Response<Incoming>, hyper_util::client::legacy::Error>> },
        Refused { error: Option<BoxError> },
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<Incoming>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Sending { future } => future.poll(cx).map_err(Into::into),
            KindProj::Https { future } => future.as_mut().poll(cx).map_err(Into::into),
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
            .oneshot(get("ftp://127.0.0.1:1/x"))
            .await
            .expect_err("refused");
        let error = Error::from_leaf(error, "ftp://127.0.0.1:1");
        assert!(
            matches!(&error, Error::InvalidRequest(m) if m.contains("only http:// and https://")),
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
