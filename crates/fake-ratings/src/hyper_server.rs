//! The server behind [`FakeRatings::serve`](crate::FakeRatings::serve): hyper's, with
//! keep-alive, HTTP/1.1 and HTTP/2 (h2c prior knowledge on plain TCP, ALPN over TLS), and
//! optionally rustls in front, which may require a client certificate. It counts the
//! connections it accepts and keeps every request it receives, so tests can assert on what
//! went over the wire.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::behaviour::{self, Outcome};
use crate::state::{InstanceState, Received};
use crate::tcp::Server;

/// How [`FakeRatings::serve`](crate::FakeRatings::serve) serves an instance.
#[derive(Debug, Clone, Default)]
pub struct Serve {
    /// Serve HTTPS with this certificate chain and key (PEM); ALPN offers `h2` and
    /// `http/1.1`.
    pub tls: Option<(String, String)>,
    /// With `tls`: require a client certificate signed by this CA (PEM).
    pub client_ca: Option<String>,
    /// Close a keep-alive connection that waits this long for its next request (hyper's
    /// header-read timeout; default 30 s).
    pub idle_close: Option<Duration>,
}

impl Serve {
    /// Plain TCP: HTTP/1.1 with keep-alive, or h2c by prior knowledge.
    pub fn plain() -> Self {
        Self::default()
    }

    /// HTTPS with this certificate and key.
    pub fn tls(cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        Self {
            tls: Some((cert_pem.into(), key_pem.into())),
            ..Self::default()
        }
    }

    /// Also requires a client certificate signed by `ca_pem`.
    pub fn require_client_cert(mut self, ca_pem: impl Into<String>) -> Self {
        self.client_ca = Some(ca_pem.into());
        self
    }

    /// Closes connections idle for `idle`.
    pub fn idle_close(mut self, idle: Duration) -> Self {
        self.idle_close = Some(idle);
        self
    }

    /// The rustls acceptor, if TLS. Panics on bad PEM: a test cannot go on without it.
    #[allow(deprecated)]
    fn acceptor(&self) -> Option<TlsAcceptor> {
        let (cert, key) = self.tls.as_ref()?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("fake ratings certificate: {e}"));
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
            .unwrap_or_else(|e| panic!("fake ratings key: {e}"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("TLS versions: {e}"));
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for root in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    let root = root.unwrap_or_else(|e| panic!("client CA: {e}"));
                    roots.add(root).unwrap_or_else(|e| panic!("client CA: {e}"));
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap_or_else(|e| panic!("client verifier: {e}"));
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .unwrap_or_else(|e| panic!("fake ratings certificate and key: {e}"));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Some(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Serves `state` on `listener` as `serve` says, until stopped or dropped.
pub(crate) fn spawn(listener: TcpListener, state: Arc<InstanceState>, serve: &Serve) -> Server {
    let acceptor = serve.acceptor();
    let idle = serve.idle_close;
    Server::spawn_with(listener, move |stream| {
        let (state, acceptor) = (Arc::clone(&state), acceptor.clone());
        async move {
            state.connected();
            // Counted as used once, with its first request.
            let used = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(idle.unwrap_or(Duration::from_secs(30)));
            let service = service_fn(move |request| {
                if !used.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    state.used_connection();
                }
                answer(Arc::clone(&state), request)
            });
            let _ = match acceptor {
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => builder.serve_connection(TokioIo::new(tls), service).await,
                    Err(_) => return,
                },
            };
        }
    })
}

/// Answers one request as the instance's behaviour says.
async fn answer(
    state: Arc<InstanceState>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let traceparent = parts
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    state.record(Received {
        method: parts.method,
        target: target.clone(),
        version: parts.version,
        headers: parts.headers,
        body,
    });
    let (behaviour, _held) = state.receive(traceparent.as_deref());
    let response = match behaviour::outcome(behaviour, state.instance(), &target).await {
        Outcome::Answer(answer) => {
            let mut response = Response::new(Full::new(Bytes::from(answer.body)));
            *response.status_mut() =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
            response
        }
        Outcome::Raw(_) => {
            let mut response = Response::new(Full::new(Bytes::from_static(
                b"raw answers need FakeRatings::start",
            )));
            *response.status_mut() = StatusCode::NOT_IMPLEMENTED;
            response
        }
        // Held until the client gives up (hyper drops this future with the connection or
        // the stream).
        Outcome::Hang => std::future::pending().await,
    };
    Ok(response)
}
