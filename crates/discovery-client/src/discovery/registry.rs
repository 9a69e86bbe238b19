//! Discovery through the registry's blocking query.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::time::Instant;

use super::{Discovery, DiscoverySink};
use crate::Instance;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Watches a service in the registry with blocking queries
/// (`GET /v1/services/{service}?index=N&wait=..`): each query returns as soon as the instance
/// set changes, so changes reach the client in milliseconds.
///
/// When the registry cannot be reached, the last known set stays in use and the outage is
/// reported once; queries are retried with a capped backoff. When the registry comes back
/// empty (it was restarted and its instances have not re-registered yet), instances it no
/// longer lists are kept for a grace period (default 60 s, longer than an instance
/// heartbeating every third of the registry's default 120 s TTL needs to notice and re-register) instead of being dropped at once;
/// instances that are really gone are caught by their breakers meanwhile.
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
}

#[derive(Debug, Deserialize)]
struct ServiceAnswer {
    index: u64,
    instances: Vec<Instance>,
}

impl RegistryDiscovery {
    /// Watches the registry at this base URL, such as `http://127.0.0.1:8500`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            wait: Duration::from_secs(30),
            restart_grace: Duration::from_secs(60),
            token: None,
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

    /// The registry's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

impl Discovery for RegistryDiscovery {
    fn watch(&self, service: &str, sink: DiscoverySink) -> BoxFuture<'static, ()> {
        let watcher = Watcher {
            config: self.clone(),
            url: format!("{}/v1/services/{}", self.base_url, service),
            http: reqwest::Client::new(),
        };
        watcher.run(sink).boxed()
    }
}

struct Watcher {
    config: RegistryDiscovery,
    url: String,
    http: reqwest::Client,
}

/// Instances a restarted registry no longer lists, kept until `until`.
struct Grace {
    until: Instant,
    kept: BTreeMap<String, Instance>,
}

impl Watcher {
    async fn run(self, sink: DiscoverySink) {
        let mut query_index = 0;
        let mut last_index = 0;
        let mut last_set: Vec<Instance> = Vec::new();
        let mut grace: Option<Grace> = None;
        let mut in_outage = false;
        let mut backoff = FIRST_BACKOFF;
        while !sink.is_closed() {
            // While a grace period runs, wake up in time to end it.
            let wait = match &grace {
                Some(g) => self
                    .config
                    .wait
                    .min(g.until.saturating_duration_since(Instant::now()))
                    .max(Duration::from_millis(10)),
                None => self.config.wait,
            };
            match self.query(query_index, wait).await {
                Ok(answer) => {
                    if in_outage {
                        in_outage = false;
                        sink.recovered();
                    }
                    backoff = FIRST_BACKOFF;
                    if answer.index < last_index {
                        // The registry restarted: keep what it forgot for a while.
                        let listed: Vec<&str> =
                            answer.instances.iter().map(|i| i.id.as_str()).collect();
                        let kept = last_set
                            .iter()
                            .filter(|i| !listed.contains(&i.id.as_str()))
                            .map(|i| (i.id.clone(), i.clone()))
                            .collect();
                        grace = Some(Grace {
                            until: Instant::now() + self.config.restart_grace,
                            kept,
                        });
                    }
                    last_index = answer.index;
                    query_index = answer.index;
                    last_set = answer.instances;
                    if !sink.publish(with_grace(&last_set, &mut grace)) {
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
            if let Some(g) = &grace {
                if Instant::now() >= g.until {
                    grace = None;
                    sink.publish(last_set.clone());
                }
            }
        }
    }

    async fn query(&self, index: u64, wait: Duration) -> Result<ServiceAnswer, String> {
        let mut request = self
            .http
            .get(format!(
                "{}?index={index}&wait={}ms",
                self.url,
                wait.as_millis()
            ))
            .timeout(wait + Duration::from_secs(5));
        if let Some(token) = &self.config.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("registry at {} unreachable: {e}", self.config.base_url))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("registry answered {status}: {}", body.trim()));
        }
        response
            .json::<ServiceAnswer>()
            .await
            .map_err(|e| format!("registry answer undecodable: {e}"))
    }
}

fn with_grace(current: &[Instance], grace: &mut Option<Grace>) -> Vec<Instance> {
    let mut set = current.to_vec();
    if let Some(g) = grace {
        g.kept.retain(|id, _| !current.iter().any(|i| &i.id == id));
        set.extend(g.kept.values().cloned());
        if g.kept.is_empty() {
            *grace = None;
        }
    }
    set
}
