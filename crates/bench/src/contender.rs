//! The contenders: ways of calling `GET /ratings/{id}` on the same ratings instances.
//!
//! Every contender does the same work per call: build the URL, send, read the whole body,
//! decode the JSON answer, and report which instance answered (ratings answers carry it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use discovery_client::ServiceClient;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

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
    /// Our `ServiceClient`, cache off.
    Ours(ServiceClient),
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
            Contender::Ours(client) => client
                .get_json::<Rating>(path)
                .await
                .ok()
                .map(|r| r.instance),
            Contender::Proxy { http, url } => plain_get(http, url, path).await,
        }
    }
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

async fn hyper_get(http: &HyperClient, base: &str, path: &str) -> Option<u16> {
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
