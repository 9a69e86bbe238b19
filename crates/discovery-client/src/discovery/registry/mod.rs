//! Discovery through the registry's blocking query.
//!
//! - [`RegistryDiscovery`]: the watch loop, its queries and outage handling.
//! - [`restart`]: noticing a restarted registry (by its epoch) and keeping the instances
//!   it forgot for a grace period.

mod restart;

use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use http::HeaderValue;
use serde::Deserialize;
use tokio::time::Instant;

use self::restart::{Answer, RestartGrace};
use super::{Discovery, DiscoverySink};
use crate::transport::{BoxTransport, HttpClient, SendError, TlsConfig};
use crate::{Error, Instance};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Watches a service in the registry with blocking queries
/// (`GET /v1/services/{service}?index=N&wait=..`): each query returns as soon as the instance
/// set changes, so changes reach the client in milliseconds.
///
/// When the registry cannot be reached, the last known set stays in use and the outage is
/// reported once; queries are retried with a capped backoff. When the registry was
/// restarted (its `X-Registry-Epoch` changed; for a registry that sends none, its index
/// went down) and its instances have not all re-registered yet, instances it no longer
/// lists are kept for a grace period (default 60 s, longer than an instance heartbeating
/// every third of the registry's default 120 s TTL needs to notice and re-register) instead
/// of being dropped at once; instances that are really gone are caught by their breakers
/// meanwhile.
///
/// Queries go through this crate's [`HttpClient`], so an `https://` registry works: with the
/// system's roots by default, or with a private CA given to [`tls`](Self::tls). A failed
/// handshake is reported as an outage naming TLS and what rustls said (such as
/// `invalid peer certificate: UnknownIssuer`).
///
/// ```no_run
/// use std::time::Duration;
/// use discovery_client::{RegistryDiscovery, ServiceClient};
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let registry = RegistryDiscovery::new("http://127.0.0.1:8500")
///     .wait(Duration::from_secs(30))
///     .token("s3cret");
/// let ratings = ServiceClient::builder("ratings").discovery(registry).build()?;
/// # let _ = ratings;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RegistryDiscovery {
    base_url: String,
    wait: Duration,
    restart_grace: Duration,
    token: Option<String>,
    /// What `https://` connections to the registry trust and present.
    tls: TlsConfig,
}

/// The registry's answer: the body of `GET /v1/services/{service}`.
#[derive(Debug, Deserialize)]
struct ServiceAnswer {
    index: u64,
    instances: Vec<Instance>,
}

/// The response header with the registry's epoch (see [`restart`]).
const EPOCH_HEADER: &str = "x-registry-epoch";

impl RegistryDiscovery {
    /// Watches the registry at this base URL, such as `http://127.0.0.1:8500`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            wait: Duration::from_secs(30),
            restart_grace: Duration::from_secs(60),
            token: None,
            tls: TlsConfig::new(),
        }
    }

    /// How long each blocking query may wait at the registry (default 30 s).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// How long instances are kept after a restarted registry stops listing them (default 60 s).
    pub fn restart_grace(mut self, grace: Duration) -> Self {
        self.restart_grace = grace;
        self
    }

    /// Sends `Authorization: Bearer <token>` with every query (for a registry that protects
    /// reads).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// What `https://` connections to the registry trust and present (default: the system's
    /// roots, no client certificate). Give a private CA with
    /// [`TlsConfig::add_root_certificate`]; a client certificate with
    /// [`TlsConfig::identity`] for a registry that asks for one.
    ///
    /// ```no_run
    /// use discovery_client::RegistryDiscovery;
    /// use discovery_client::transport::TlsConfig;
    ///
    /// # fn demo() -> Result<(), discovery_client::Error> {
    /// let tls = TlsConfig::new().add_root_certificate_file("certs/ca.pem")?;
    /// let registry = RegistryDiscovery::new("https://registry.internal:8500").tls(tls);
    /// # let _ = registry;
    /// # Ok(()) }
    /// ```
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// The registry's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

impl Discovery for RegistryDiscovery {
    fn watch(&self, service: &str, sink: DiscoverySink) -> BoxFuture<'static, ()> {
        // A client that cannot be built fails every query with the reason, so the outage is
        // reported as any other.
        let http = HttpClient::builder()
            .tls(self.tls.clone())
            .build()
            .map(BoxTransport::new)
            .map_err(|e| format!("registry at {}: {e}", self.base_url));
        let watcher = Watcher {
            config: self.clone(),
            url: format!("{}/v1/services/{}", self.base_url, service),
            http,
        };
        watcher.run(sink).boxed()
    }
}

struct Watcher {
    config: RegistryDiscovery,
    /// `{base_url}/v1/services/{service}`, without the query.
    url: String,
    /// The connection pool of this watch, or why there is none.
    http: Result<BoxTransport, String>,
}

impl Watcher {
    async fn run(self, sink: DiscoverySink) {
        let mut query_index = 0;
        let mut grace = RestartGrace::new(self.config.restart_grace);
        let mut in_outage = false;
        let mut backoff = FIRST_BACKOFF;
        while !sink.is_closed() {
            // While a grace period runs, wake up in time to end it.
            let wait = match grace.until() {
                Some(until) => self
                    .config
                    .wait
                    .min(until.saturating_duration_since(Instant::now()))
                    .max(Duration::from_millis(10)),
                None => self.config.wait,
            };
            match self.query(query_index, grace.epoch(), wait).await {
                Ok(answer) => {
                    if in_outage {
                        in_outage = false;
                        sink.recovered();
                    }
                    backoff = FIRST_BACKOFF;
                    query_index = answer.index;
                    if !sink.publish(grace.answer(answer)) {
                        return;
                    }
                }
                Err(reason) => {
                    if !in_outage {
                        in_outage = true;
                        sink.outage(reason);
                    }
                    // Ask for the current set at once when the registry is back.
                    query_index = 0;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            // Drop kept instances once the grace period is over, even if nothing changed.
            if let Some(set) = grace.expire() {
                sink.publish(set);
            }
        }
    }

    /// One blocking query: the answer, or why there is none (an outage).
    async fn query(
        &self,
        index: u64,
        epoch: Option<u64>,
        wait: Duration,
    ) -> Result<Answer, String> {
        let base = &self.config.base_url;
        let http = self.http.as_ref().map_err(String::clone)?;
        let limit = wait + Duration::from_secs(5);
        let response = match http
            .send(self.request(index, epoch, wait)?, Instant::now() + limit)
            .await
        {
            Ok(response) => response,
            Err(SendError::TimedOut) => {
                return Err(format!(
                    "registry at {base} unreachable: no answer within {limit:?}"
                ));
            }
            Err(SendError::Failed(error)) => {
                return Err(match Error::from_transport(error, base) {
                    Error::Tls { message, .. } => {
                        format!("TLS with the registry at {base} failed: {message}")
                    }
                    Error::Http { message, .. } => {
                        format!("registry at {base} unreachable: {message}")
                    }
                    other => format!("registry at {base} unreachable: {other}"),
                });
            }
        };
        let status = response.status();
        if !status.is_success() {
            let body = String::from_utf8_lossy(response.body());
            return Err(format!("registry answered {status}: {}", body.trim()));
        }
        // An epoch that is not a number is taken as none: the index rule still applies.
        let epoch = response
            .headers()
            .get(EPOCH_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<u64>().ok());
        let ServiceAnswer { index, instances } =
            serde_json::from_slice::<ServiceAnswer>(response.body())
                .map_err(|e| format!("registry answer undecodable: {e}"))?;
        Ok(Answer {
            index,
            epoch,
            instances,
        })
    }

    /// `GET {url}?index=N&wait=Wms[&epoch=E]`, with the token if there is one. With the
    /// epoch the index was read in, a restarted registry answers at once even if its index
    /// happens to equal `index`.
    fn request(
        &self,
        index: u64,
        epoch: Option<u64>,
        wait: Duration,
    ) -> Result<http::Request<Bytes>, String> {
        let mut url = format!("{}?index={index}&wait={}ms", self.url, wait.as_millis());
        if let Some(epoch) = epoch {
            url.push_str(&format!("&epoch={epoch}"));
        }
        // Parsed as a URL first, so that what needs percent-encoding gets it.
        let uri = url::Url::parse(&url)
            .map_err(|e| e.to_string())
            .and_then(|parsed| {
                parsed
                    .as_str()
                    .parse::<http::Uri>()
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| format!("registry URL {url:?}: {e}"))?;
        let mut request = http::Request::get(uri);
        if let Some(token) = &self.config.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| "registry token: not allowed in a header".to_string())?;
            value.set_sensitive(true);
            request = request.header(http::header::AUTHORIZATION, value);
        }
        request
            .body(Bytes::new())
            .map_err(|e| format!("registry request: {e}"))
    }
}
