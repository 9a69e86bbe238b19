//! The registry's HTTP protocol for one instance: register, heartbeat, deregister.
//!
//! Each call is bounded by a timeout and turns every answer into either a typed outcome or
//! a [`RegistrationError`]; deciding what to do about it is the heartbeat loop's job.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use http::StatusCode;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::RegistrationConfig;
use super::error::RegistrationError;
use super::heartbeat::{Grant, HeartbeatOutcome, RegistryCalls};

/// The header that carries the lease secret on heartbeats and deregistration.
const LEASE_HEADER: &str = "x-lease";

/// How much of a non-JSON error body is kept in an error message.
const MAX_ERROR_BODY_CHARS: usize = 200;

/// The secret the registry hands out on registration. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Lease(String);

impl Lease {
    /// Wraps a lease secret.
    pub(crate) fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret, to send or to keep in the lease file.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Lease(<redacted>)")
    }
}

/// The body of a registration.
#[derive(Debug, Serialize)]
struct RegisterBody {
    address: String,
    metadata: BTreeMap<String, String>,
    ttl_secs: u64,
}

/// The registry's body in answer to a registration.
#[derive(Debug, Deserialize)]
struct LeaseBody {
    lease: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

/// The registry's body in answer to a heartbeat: the lease renewed.
#[derive(Debug, Deserialize)]
struct RenewedBody {
    #[serde(default)]
    ttl_secs: Option<u64>,
}

/// The registry's error body, `{"error": "..."}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
}

/// The registry's 409 body for an id held under a live lease.
#[derive(Debug, Deserialize)]
struct HeldBody {
    #[serde(default)]
    retry_after_secs: Option<u64>,
}

/// The registry's whole reply: status, the `Retry-After` header in seconds if any, and the
/// body.
struct Reply {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: bytes::Bytes,
}

/// Talks to one registry about one instance.
#[derive(Debug)]
pub(crate) struct HttpRegistry {
    /// Shared connection pool.
    client: reqwest::Client,
    /// The registry base URL as configured, for error messages.
    base: String,
    /// `{base}/v1/services/{service}/instances/{id}`: register and deregister.
    instance_url: Url,
    /// `{instance_url}/heartbeat`.
    heartbeat_url: Url,
    /// What we register (address, metadata, TTL).
    body: RegisterBody,
    /// `Bearer <token>` when the registry requires one for writes.
    authorization: Option<String>,
    /// Bound on each call, so a paused registry cannot stall the loop.
    request_timeout: Duration,
}

/// Where and how to call the registry, derived from a validated config.
#[derive(Debug)]
pub(crate) struct Endpoints {
    /// `{base}/v1/services/{service}/instances/{id}`.
    instance_url: Url,
    /// `{instance_url}/heartbeat`.
    heartbeat_url: Url,
    /// `Bearer <token>`, checked to fit in a header.
    authorization: Option<String>,
}

impl Endpoints {
    /// Checks `config` (see [`RegistrationConfig::validate`]) and builds the URLs.
    pub(crate) fn for_config(config: &RegistrationConfig) -> Result<Self, RegistrationError> {
        let instance_url = instance_url(config)?;
        let mut heartbeat_url = instance_url.clone();
        heartbeat_url
            .path_segments_mut()
            .map_err(|()| invalid("registry_url cannot be a base URL"))?
            .push("heartbeat");
        let authorization = match &config.token {
            Some(token) => {
                let value = format!("Bearer {token}");
                http::HeaderValue::from_str(&value)
                    .map_err(|_| invalid("token contains characters not allowed in a header"))?;
                Some(value)
            }
            None => None,
        };
        if config.ttl.is_zero() {
            return Err(invalid("ttl must be greater than zero"));
        }
        if config.address.trim().is_empty() {
            return Err(invalid("address must not be empty"));
        }
        if config
            .lease_file
            .as_ref()
            .is_some_and(|path| path.file_name().is_none())
        {
            return Err(invalid("lease_file must name a file"));
        }
        Ok(Self {
            instance_url,
            heartbeat_url,
            authorization,
        })
    }
}

impl HttpRegistry {
    /// Validates `config` and builds the HTTP client for it.
    pub(crate) fn new(
        config: &RegistrationConfig,
        request_timeout: Duration,
    ) -> Result<Self, RegistrationError> {
        let Endpoints {
            instance_url,
            heartbeat_url,
            authorization,
        } = Endpoints::for_config(config)?;
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| invalid(&format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            base: config.registry_url.clone(),
            instance_url,
            heartbeat_url,
            body: RegisterBody {
                address: config.address.clone(),
                metadata: config.metadata.clone(),
                ttl_secs: ttl_secs(config.ttl),
            },
            authorization,
            request_timeout,
        })
    }

    /// The registry base URL as configured.
    pub(crate) fn base_url(&self) -> &str {
        &self.base
    }

    /// `DELETE {instance_url}` with the lease. A 404 counts as success: the registry
    /// already does not list us.
    pub(crate) async fn deregister(&self, lease: &Lease) -> Result<(), RegistrationError> {
        let request = self
            .with_auth(self.client.delete(self.instance_url.clone()))
            .header(LEASE_HEADER, &lease.0);
        let Reply { status, body, .. } = self.send(request).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(rejected(status, &body))
        }
    }

    /// Adds the `Authorization` header when a token is configured.
    fn with_auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.authorization {
            Some(value) => request.header(http::header::AUTHORIZATION, value),
            None => request,
        }
    }

    /// Sends `request` and reads the whole body, within the request timeout.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Reply, RegistrationError> {
        let call = async {
            let response = request.send().await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>(Reply {
                status,
                retry_after,
                body,
            })
        };
        match tokio::time::timeout(self.request_timeout, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(source)) if source.is_timeout() => Err(RegistrationError::Timeout {
                url: self.base.clone(),
                after: self.request_timeout,
            }),
            Ok(Err(source)) => Err(RegistrationError::Unreachable {
                url: self.base.clone(),
                source,
            }),
            Err(_elapsed) => Err(RegistrationError::Timeout {
                url: self.base.clone(),
                after: self.request_timeout,
            }),
        }
    }
}

impl RegistryCalls for HttpRegistry {
    async fn register(&self, presented: Option<&Lease>) -> Result<Grant, RegistrationError> {
        let mut request = self
            .with_auth(self.client.put(self.instance_url.clone()))
            .json(&self.body);
        if let Some(lease) = presented {
            request = request.header(LEASE_HEADER, &lease.0);
        }
        let Reply {
            status,
            retry_after,
            body,
        } = self.send(request).await?;
        if status == StatusCode::CONFLICT {
            return Err(held(retry_after, &body));
        }
        if !status.is_success() {
            return Err(rejected(status, &body));
        }
        let answer: LeaseBody = serde_json::from_slice(&body)
            .map_err(|e| RegistrationError::InvalidResponse(format!("registration answer: {e}")))?;
        Ok(Grant {
            lease: Lease(answer.lease),
            ttl: answer.ttl_secs.map(Duration::from_secs),
        })
    }

    async fn heartbeat(&self, lease: &Lease) -> Result<HeartbeatOutcome, RegistrationError> {
        let request = self
            .with_auth(self.client.put(self.heartbeat_url.clone()))
            .header(LEASE_HEADER, &lease.0);
        let Reply { status, body, .. } = self.send(request).await?;
        match status {
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => Ok(HeartbeatOutcome::Lost { status }),
            status if status.is_success() => {
                // The TTL is advisory: an empty or odd body still renewed the lease.
                let ttl = serde_json::from_slice::<RenewedBody>(&body)
                    .ok()
                    .and_then(|answer| answer.ttl_secs)
                    .map(Duration::from_secs);
                Ok(HeartbeatOutcome::Renewed { ttl })
            }
            status => Err(rejected(status, &body)),
        }
    }
}

/// `{registry_url}/v1/services/{service}/instances/{id}`, with the names percent-encoded.
fn instance_url(config: &RegistrationConfig) -> Result<Url, RegistrationError> {
    let mut url = Url::parse(&config.registry_url)
        .map_err(|e| invalid(&format!("registry_url {:?}: {e}", config.registry_url)))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(&format!(
            "registry_url {:?} must be an http:// or https:// URL with a host",
            config.registry_url
        )));
    }
    if config.service.is_empty() {
        return Err(invalid("service must not be empty"));
    }
    if config.instance_id.is_empty() {
        return Err(invalid("instance_id must not be empty"));
    }
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| invalid("registry_url cannot be a base URL"))?
        .pop_if_empty()
        .extend([
            "v1",
            "services",
            &config.service,
            "instances",
            &config.instance_id,
        ]);
    Ok(url)
}

/// The TTL in whole seconds, rounded up, at least 1.
fn ttl_secs(ttl: Duration) -> u64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    secs.max(1)
}

fn invalid(what: &str) -> RegistrationError {
    RegistrationError::InvalidConfig(what.to_owned())
}

/// A [`RegistrationError::Rejected`] from an error answer, preferring its `{"error"}`.
fn rejected(status: StatusCode, body: &[u8]) -> RegistrationError {
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => error,
        Err(_) => String::from_utf8_lossy(body)
            .chars()
            .take(MAX_ERROR_BODY_CHARS)
            .collect(),
    };
    RegistrationError::Rejected { status, message }
}

/// A [`RegistrationError::LeaseHeld`] from a 409: when to retry from the body's
/// `retry_after_secs`, else from `Retry-After`.
fn held(header: Option<Duration>, body: &[u8]) -> RegistrationError {
    let retry_after = serde_json::from_slice::<HeldBody>(body)
        .ok()
        .and_then(|held| held.retry_after_secs)
        .map(Duration::from_secs)
        .or(header);
    match rejected(StatusCode::CONFLICT, body) {
        RegistrationError::Rejected { message, .. } => RegistrationError::LeaseHeld {
            retry_after,
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> RegistrationConfig {
        RegistrationConfig::new(url, "rat ings", "1/2", "http://127.0.0.1:8001")
    }

    #[test]
    fn instance_url_encodes_names_and_keeps_a_path_prefix() {
        let url = instance_url(&config("http://127.0.0.1:8500/prefix/")).map(String::from);
        assert_eq!(
            url.ok().as_deref(),
            Some("http://127.0.0.1:8500/prefix/v1/services/rat%20ings/instances/1%2F2")
        );
    }

    #[test]
    fn rejects_unusable_urls() {
        for url in ["", "127.0.0.1:8500", "ftp://host", "mailto:a@b"] {
            assert!(
                matches!(
                    instance_url(&config(url)),
                    Err(RegistrationError::InvalidConfig(_))
                ),
                "{url:?} was accepted"
            );
        }
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::from_millis(300)), 1);
        assert_eq!(ttl_secs(Duration::from_secs(120)), 120);
        assert_eq!(ttl_secs(Duration::from_millis(120_001)), 121);
    }

    #[test]
    fn error_bodies_become_messages() {
        let json = rejected(StatusCode::UNAUTHORIZED, br#"{"error":"missing token"}"#);
        assert!(json.to_string().ends_with("missing token"), "{json}");
        let text = rejected(StatusCode::BAD_GATEWAY, b"upstream down");
        assert!(text.to_string().ends_with("upstream down"), "{text}");
    }

    #[test]
    fn a_409_says_when_to_retry_from_the_body_or_the_header() {
        let body = br#"{"error":"held under a live lease","retry_after_secs":7}"#;
        let error = held(Some(Duration::from_secs(9)), body);
        assert!(
            matches!(
                &error,
                RegistrationError::LeaseHeld { retry_after: Some(after), message }
                    if *after == Duration::from_secs(7) && message == "held under a live lease"
            ),
            "{error:?}"
        );
        let error = held(Some(Duration::from_secs(9)), br#"{"error":"x"}"#);
        assert!(
            matches!(
                error,
                RegistrationError::LeaseHeld { retry_after: Some(after), .. }
                    if after == Duration::from_secs(9)
            ),
            "the header when the body does not say"
        );
        assert!(matches!(
            held(None, b"conflict"),
            RegistrationError::LeaseHeld {
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn lease_debug_is_redacted() {
        assert!(!format!("{:?}", Lease::new("s3cret")).contains("s3cret"));
    }
}
