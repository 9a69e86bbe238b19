//! The contenders: ways of calling `GET /ratings/{id}` on the same ratings instances.
//!
//! Every contender does the same work per call: build the URL, send, read the whole body,
//! decode the JSON answer, and report which instance answered (ratings answers carry it).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use discovery_client::ServiceClient;
use discovery_client::grpc::GrpcChannel;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;
use ratings_api::GetRatingRequest;
use ratings_api::ratings_client::RatingsClient;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use crate::tower_p2c::{self, TowerClient};

/// The ratings answer.
#[derive(Debug, Deserialize)]
pub struct Rating {
    /// The item.
    pub item_id: String,
    /// Its stars.
    pub rating: u8,
    /// The instance that answered.
    pub instance: u16,
}

/// A way of calling the ratings instances.
pub enum Contender {
    /// Plain reqwest to one instance.
    Direct {
        /// Pooled client with the shared timeout.
        http: reqwest::Client,
        /// The instance's base URL.
        url: String,
    },
    /// Plain reqwest, round-robin by hand over the instances; no failure handling.
    RoundRobin {
        /// Pooled client with the shared timeout.
        http: reqwest::Client,
        /// The instances' base URLs.
        urls: Vec<String>,
        /// The next instance.
        next: AtomicUsize,
    },
    /// Plain hyper (its pooled client, as our client's transport uses it) to one instance,
    /// or round-robin by hand over several: the HTTP stack under our client, without the
    /// client.
    Hyper {
        /// Pooled client (boxed: it is several times the size of the other variants).
        http: Box<HyperClient>,
        /// The instances' base URLs (one for "one instance").
        urls: Vec<String>,
        /// The next instance.
        next: AtomicUsize,
        /// The shared timeout, over the whole call.
        timeout: Duration,
    },
    /// hyper over rustls by hand (`https://`), to one instance or round-robin over several,
    /// or to a proxy terminating TLS: the TLS stack under our client, without the client.
    HyperTls {
        /// Pooled client (boxed, as for `Hyper`).
        http: Box<HyperTlsClient>,
        /// The instances' base URLs (one for "one instance", or the proxy's).
        urls: Vec<String>,
        /// The next instance.
        next: AtomicUsize,
        /// The timeout over the whole call.
        timeout: Duration,
    },
    /// Our `ServiceClient`, cache off.
    Ours(ServiceClient),
    /// tower's `p2c::Balance` over hyper clients, one per instance (see [`crate::tower_p2c`]).
    Tower(TowerClient),
    /// The ratings gRPC client over our `grpc::channel` (`GetRating` for `/ratings/{id}`).
    Grpc(RatingsClient<GrpcChannel>),
    /// The ratings gRPC client over tonic's own `Channel::balance_list`, its per-request
    /// timeout bounding each call.
    GrpcTonic(RatingsClient<tonic::transport::Channel>),
    /// Plain reqwest to a proxy in front of the instances.
    Proxy {
        /// Pooled client; its timeout is generous so the proxy's own timeouts decide.
        http: reqwest::Client,
        /// The proxy's base URL.
        url: String,
    },
}

/// hyper's pooled HTTP/1.1 client with an empty request body.
pub type HyperClient = Client<HttpConnector, Empty<Bytes>>;

/// hyper's pooled client over rustls (`https://` only) with an empty request body.
pub type HyperTlsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The HTTP versions a TLS client offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2` and `http/1.1`, the server chooses: what our client's transport offers.
    Both,
    /// HTTP/1.1 only (no ALPN: servers then speak HTTP/1.1).
    Http1,
    /// `h2` only, and the client speaks HTTP/2 on every connection.
    Http2,
}

/// A rustls client config trusting only the CA certificates in `ca_pem`, with the `ring`
/// provider given explicitly (as the library does: no process-wide provider is installed
/// anywhere in this workspace), and no ALPN yet (the connector sets it).
pub fn tls_config(ca_pem: &str) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let certificate = certificate.map_err(|e| format!("CA certificate: {e}"))?;
        roots
            .add(certificate)
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    // ring, as discovery-client's transport chooses it (see its transport/tls.rs).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A hyper client over rustls as a careful user would build it: pooled, `TCP_NODELAY` on,
/// trusting only `ca_pem`, offering `alpn`.
pub fn tls_hyper(ca_pem: &str, alpn: Alpn) -> Result<HyperTlsClient, String> {
    Ok(Client::builder(TokioExecutor::new())
        .http2_only(alpn == Alpn::Http2)
        .build(https_connector(ca_pem, alpn)?))
}

/// The TCP + rustls connector of [`tls_hyper`].
pub fn https_connector(ca_pem: &str, alpn: Alpn) -> Result<HttpsConnector<HttpConnector>, String> {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(ca_pem)?)
        .https_only();
    Ok(match alpn {
        Alpn::Both => builder.enable_all_versions().wrap_connector(tcp),
        Alpn::Http1 => builder.enable_http1().wrap_connector(tcp),
        Alpn::Http2 => builder.enable_http2().wrap_connector(tcp),
    })
}

/// A plain hyper client as a careful user would build it: pooled, `TCP_NODELAY` on (as
/// reqwest and our transport set it).
pub fn plain_hyper() -> HyperClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// A plain reqwest client as a careful user would build it: pooled, with a timeout.
pub fn plain_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

impl Contender {
    /// Calls `GET {path}` once; the instance that answered, or `None` for a failure.
    pub async fn call(&self, path: &str) -> Option<u16> {
        match self {
            Contender::Direct { http, url } => plain_get(http, url, path).await,
            Contender::RoundRobin { http, urls, next } => {
                let i = next.fetch_add(1, Ordering::Relaxed) % urls.len();
                plain_get(http, &urls[i], path).await
            }
            Contender::Hyper {
                http,
                urls,
                next,
                timeout,
            } => {
                let i = match urls.len() {
                    1 => 0,
                    n => next.fetch_add(1, Ordering::Relaxed) % n,
                };
                tokio::time::timeout(*timeout, hyper_get(http, &urls[i], path))
                    .await
                    .ok()
                    .flatten()
            }
            Contender::HyperTls {
                http,
                urls,
                next,
                timeout,
            } => {
                let i = match urls.len() {
                    1 => 0,
                    n => next.fetch_add(1, Ordering::Relaxed) % n,
                };
                tokio::time::timeout(*timeout, hyper_get(http, &urls[i], path))
                    .await
                    .ok()
                    .flatten()
            }
            Contender::Ours(client) => client
                .get_json::<Rating>(path)
                .await
                .ok()
                .map(|r| r.instance),
            Contender::Tower(client) => tower_p2c::call(client, path).await,
            Contender::Proxy { http, url } => plain_get(http, url, path).await,
            Contender::Grpc(client) => grpc_get(client.clone(), path).await,
            Contender::GrpcTonic(client) => grpc_get(client.clone(), path).await,
        }
    }
}

/// `GetRating` of the item in `path` (`/ratings/{id}`) through `client` (a clone: calls
/// take it mutably; its channel is shared); the instance that answered.
async fn grpc_get<T>(mut client: RatingsClient<T>, path: &str) -> Option<u16>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let item_id = path.rsplit('/').next().unwrap_or_default().to_string();
    let rating = client
        .get_rating(GetRatingRequest { item_id })
        .await
        .ok()?
        .into_inner();
    u16::try_from(rating.instance).ok()
}

async fn plain_get(http: &reqwest::Client, base: &str, path: &str) -> Option<u16> {
    let answer = http.get(format!("{base}{path}")).send().await.ok()?;
    if !answer.status().is_success() {
        return None;
    }
    let body = answer.bytes().await.ok()?;
    serde_json::from_slice::<Rating>(&body)
        .ok()
        .map(|r| r.instance)
}

/// `GET {base}{path}` through hyper; the instance named in the answer, or `None`.
pub(crate) async fn hyper_get<C>(
    http: &Client<C, Empty<Bytes>>,
    base: &str,
    path: &str,
) -> Option<u16>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let uri: http::Uri = format!("{base}{path}").parse().ok()?;
    let request = http::Request::get(uri).body(Empty::new()).ok()?;
    let answer = http.request(request).await.ok()?;
    if !answer.status().is_success() {
        return None;
    }
    let body = answer.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice::<Rating>(&body)
        .ok()
        .map(|r| r.instance)
}

/// The HTTP version `GET {base}/health` was answered over (`HTTP/2.0`, `HTTP/1.1`), or why
/// there was no answer.
pub async fn answered_over<C>(http: &Client<C, Empty<Bytes>>, base: &str) -> String
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let uri: http::Uri = match format!("{base}/health").parse() {
        Ok(uri) => uri,
        Err(e) => return format!("bad URL {base}: {e}"),
    };
    let request = match http::Request::get(uri).body(Empty::new()) {
        Ok(request) => request,
        Err(e) => return format!("bad request: {e}"),
    };
    match tokio::time::timeout(Duration::from_secs(5), http.request(request)).await {
        Ok(Ok(answer)) => format!("{:?}", answer.version()),
        Ok(Err(e)) => format!("no answer ({e})"),
        Err(_) => "no answer within 5 s".to_string(),
    }
}

/// The item ids the load cycles through (all exist in the ratings data).
pub const ITEMS: [&str; 7] = [
    "widget",
    "gadget",
    "gizmo",
    "doohickey",
    "sprocket",
    "thingamajig",
    "whatsit",
];

/// `/ratings/{id}` paths for [`ITEMS`].
pub fn paths() -> Vec<String> {
    ITEMS.iter().map(|i| format!("/ratings/{i}")).collect()
}
