//! What can go wrong while talking to the registry on an instance's behalf.

use std::time::Duration;

/// An error from registering, heartbeating or deregistering.
///
/// The background task never returns these to the caller: it logs the first one of an
/// outage and keeps retrying. They surface from [`Registration::deregister`] and
/// [`RegistrationConfig::validate`].
///
/// [`Registration::deregister`]: super::Registration::deregister
/// [`RegistrationConfig::validate`]: super::RegistrationConfig::validate
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The configuration cannot work (bad registry URL, empty name, zero TTL, ...), or the
    /// registration was started outside a tokio runtime.
    #[error("invalid registration config: {0}")]
    InvalidConfig(String),
    /// The registry could not be reached (connection refused or reset, name not resolved).
    #[error("registry at {url} is unreachable: {}", root_cause(.source.as_ref()))]
    Unreachable {
        /// The registry base URL that was tried.
        url: String,
        /// What the HTTP client reported, with its causes.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The TLS handshake with an `https://` registry failed: a certificate from a CA not
    /// trusted (see [`RegistrationConfig::tls`]), expired, or for another name; or a client
    /// certificate the registry required and did not get.
    ///
    /// [`RegistrationConfig::tls`]: super::RegistrationConfig::tls
    #[error("TLS with the registry at {url} failed: {message}")]
    Tls {
        /// The registry base URL that was tried.
        url: String,
        /// What rustls said.
        message: String,
    },
    /// The registry did not answer in time.
    #[error("registry at {url} did not answer within {after:?}")]
    Timeout {
        /// The registry base URL that was tried.
        url: String,
        /// How long we waited.
        after: Duration,
    },
    /// The registry answered with an error status (the message is its `{"error": ...}`).
    #[error("registry answered {status}: {message}")]
    Rejected {
        /// The HTTP status the registry answered with.
        status: http::StatusCode,
        /// The registry's explanation, or the start of its body.
        message: String,
    },
    /// The registry refused the registration (409) because the instance id is still held
    /// under a live lease that this process could not present: typically an earlier
    /// process of the same instance that was killed before it could deregister. The
    /// background task retries when that lease runs out.
    #[error("registry answered 409 Conflict: {message}")]
    LeaseHeld {
        /// How long until the other lease runs out, if the registry said.
        retry_after: Option<Duration>,
        /// The registry's explanation.
        message: String,
    },
    /// The registry answered 2xx with a body we could not understand.
    #[error("registry sent an unexpected answer: {0}")]
    InvalidResponse(String),
    /// The background task ended abnormally (it panicked or was aborted), so the lease is
    /// unknown.
    #[error("the registration task stopped unexpectedly")]
    TaskFailed,
}

/// The innermost cause of `error` (e.g. "Connection refused (os error 111)"), which the
/// HTTP client's own message ("client error (Connect)") leaves out.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

impl RegistrationError {
    /// True when the registry itself refused (a 4xx): retrying will not help until
    /// someone fixes the configuration or the registry.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self, Self::Rejected { status, .. } if status.is_client_error())
    }
}
