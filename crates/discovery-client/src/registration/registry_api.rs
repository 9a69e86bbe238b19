//! The registry's HTTP protocol for one instance: register, heartbeat, deregister.
//!
//! Each call is bounded by a timeout and turns every answer into either a typed outcome or
//! a [`RegistrationError`]; deciding what to do about it is the heartbeat loop's job.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use url::Url;

use super::RegistrationConfig;
use super::error::RegistrationError;
use super::heartbeat::{Grant, HeartbeatOutcome, RegistryCalls};
use crate::transport::{BoxTransport, HttpClient, SendError, tls_failure};

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
    body: Bytes,
}

/// Talks to one registry about one instance.
#[derive(Debug)]
pub(crate) struct HttpRegistry {
    /// Shared connection pool (this crate's [`HttpClient`], with the config's TLS settings).
    client: BoxTransport,
    /// The registry base URL as configured, for error messages.
    base: String,
    /// `{base}/v1/services/{service}/instances/{id}`: register and deregister.
    instance_url: Uri,
    /// `{instance_url}/heartbeat`.
    heartbeat_url: Uri,
    /// What we register (address, metadata, TTL), as JSON.
    body: Bytes,
    /// `Bearer <token>` when the registry requires one for writes.
    authorization: Option<HeaderValue>,
    /// Bound on each call, so a paused registry cannot stall the loop.
    request_timeout: Duration,
}

/// Where and how to call the registry, derived from a validated config.
#[derive(Debug)]
pub(crate) struct Endpoints {
    /// `{base}/v1/services/{service}/instances/{id}`.
    instance_url: Uri,
    /// `{instance_url}/heartbeat`.
    heartbeat_url: Uri,
    /// `Bearer <token>`, checked to fit in a header; marked sensitive.
    authorization: Option<HeaderValue>,
    /// The client for the config's TLS settings.
    client: HttpClient,
}

impl Endpoints {
    /// Checks `config` (see [`RegistrationConfig::validate`]), builds the URLs and the HTTP
    /// client.
    pub(crate) fn for_config(config: &RegistrationConfig) -> Result<Self, RegistrationError> {
        let instance_url = instance_url(config)?;
        let mut heartbeat_url = instance_url.clone();
        heartbeat_url
            .path_segments_mut()
            .map_err(|()| invalid("registry_url cannot be a base URL"))?
            .push("heartbeat");
        let authorization = match &config.token {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| invalid("token contains characters not allowed in a header"))?;
                value.set_sensitive(true);
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
        let client = HttpClient::builder()
            .tls(config.tls.clone())
            .build()
            .map_err(|e| invalid(&format!("tls: {e}")))?;
        Ok(Self {
            instance_url: uri(&instance_url)?,
            heartbeat_url: uri(&heartbeat_url)?,
            authorization,
            client,
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
            client,
        } = Endpoints::for_config(config)?;
        let body = serde_json::to_vec(&RegisterBody {
            address: config.address.clone(),
            metadata: config.metadata.clone(),
            ttl_secs: ttl_secs(config.ttl),
        })
        .map_err(|e| invalid(&format!("cannot encode the registration: {e}")))?;
        Ok(Self {
            client: BoxTransport::new(client),
            base: config.registry_url.clone(),
            instance_url,
            heartbeat_url,
            body: body.into(),
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
        let request = self.request(Method::DELETE, &self.instance_url, Some(lease), None);
        let Reply { status, body, .. } = self.send(request).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(rejected(status, &body))
        }
    }

    /// A request to `uri` with the `Authorization` header when a token is configured, the
    /// lease if given, and a JSON body if given.
    fn request(
        &self,
        method: Method,
        uri: &Uri,
        lease: Option<&Lease>,
        json: Option<&Bytes>,
    ) -> Result<http::Request<Bytes>, http::Error> {
        let mut request = http::Request::builder().method(method).uri(uri.clone());
        if let Some(value) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, value.clone());
        }
        if let Some(lease) = lease {
            let mut value = HeaderValue::from_str(lease.secret())?;
            value.set_sensitive(true);
            request = request.header(LEASE_HEADER, value);
        }
        match json {
            Some(body) => request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.clone()),
            None => request.body(Bytes::new()),
        }
    }

    /// Sends `request` and reads the whole body, within the request timeout.
    async fn send(
        &self,
        request: Result<http::Request<Bytes>, http::Error>,
    ) -> Result<Reply, RegistrationError> {
        // A request that cannot be made (a lease that does not fit in a header) fails as
        // the send would.
        let request = request.map_err(|e| RegistrationError::Unreachable {
            url: self.base.clone(),
            source: Box::new(e),
        })?;
        let until = Instant::now() + self.request_timeout;
        match self.client.send(request, until).await {
            Ok(response) => {
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Ok(Reply {
                    status: response.status(),
                    retry_after,
                    body: response.into_body(),
                })
            }
            Err(SendError::TimedOut) => Err(RegistrationError::Timeout {
                url: self.base.clone(),
                after: self.request_timeout,
            }),
            Err(SendError::Failed(source)) => Err(match tls_failure(&*source) {
                Some(message) => RegistrationError::Tls {
                    url: self.base.clone(),
                    message,
                },
                None => RegistrationError::Unreachable {
                    url: self.base.clone(),
                    source,
                },
            }),
        }
    }
}

impl RegistryCalls for HttpRegistry {
    async fn register(&self, presented: Option<&Lease>) -> Result<Grant, RegistrationError> {
        let request = self.request(Method::PUT, &self.instance_url, presented, Some(&self.body));
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
        let request = self.request(Method::PUT, &self.heartbeat_url, Some(lease), None);
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

/// `url` as a URI for the HTTP client.
fn uri(url: &Url) -> Result<Uri, RegistrationError> {
    url.as_str()
        .parse()
        .map_err(|e| invalid(&format!("registry URL {:?}: {e}", url.as_str())))
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
    use crate::transport::TlsConfig;

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
    fn validate_checks_the_tls_settings_without_a_runtime() {
        assert!(config("https://127.0.0.1:8500").validate().is_ok());
        // PEM framing around bytes that are no certificate: rustls refuses it.
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let tls = TlsConfig::new()
            .add_root_certificate(garbage)
            .expect("PEM framing");
        let error = config("https://127.0.0.1:8500").tls(tls).validate();
        assert!(
            matches!(&error, Err(RegistrationError::InvalidConfig(m)) if m.starts_with("tls: ")),
            "{error:?}"
        );
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

    /// A rustls server config with a certificate from `ca` (the `ring` provider, given
    /// explicitly).
    #[allow(deprecated)]
    fn server_config(ca: &test_certs::TestCa) -> rustls::ServerConfig {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let issued = ca.server(&["127.0.0.1"]);
        let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate");
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config")
    }

    #[tokio::test]
    async fn a_certificate_from_an_untrusted_ca_is_a_tls_error() {
        let ca = test_certs::TestCa::new("registry CA");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server_config(&ca)));
        let server = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = acceptor.accept(tcp).await;
            }
        });
        // The default settings: the system's roots, which do not hold the test CA.
        let registry = HttpRegistry::new(&config(&url), Duration::from_secs(5)).expect("registry");
        let registered = registry.register(None).await;
        let deregistered = registry.deregister(&Lease::new("l")).await;
        server.abort();
        for error in [registered.err(), deregistered.err()] {
            let error = error.expect("refused");
            assert!(
                matches!(&error, RegistrationError::Tls { url: u, message }
                    if *u == url && message.contains("UnknownIssuer")),
                "{error:?}"
            );
            let expected =
                format!("TLS with the registry at {url} failed: invalid peer certificate");
            assert!(error.to_string().starts_with(&expected), "{error}");
        }
    }

    #[test]
    fn lease_debug_is_redacted() {
        assert!(!format!("{:?}", Lease::new("s3cret")).contains("s3cret"));
    }
}
