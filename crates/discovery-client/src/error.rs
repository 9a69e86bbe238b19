//! The library's error type.

use std::time::Duration;

/// Why a call through a [`ServiceClient`](crate::ServiceClient) (or a tower stack of this
/// crate's layers) did not produce an answer.
///
/// The error is `Clone` so that one upstream failure can be handed to every caller that was
/// waiting on the same coalesced cache miss.
///
/// ```
/// use discovery_client::Error;
///
/// let error = Error::AllInstancesDown { service: "ratings".into() };
/// assert_eq!(error.to_string(), "ratings: all services are down");
/// assert!(!error.is_instance_failure());
/// let refused = Error::Http { address: "http://127.0.0.1:8001".into(), message: "refused".into() };
/// assert!(refused.is_instance_failure());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No instance of the service admits a request: none is known, or every breaker is open.
    #[error("{service}: all services are down")]
    AllInstancesDown {
        /// The service that was called.
        service: String,
    },
    /// The attempt did not complete within the per-attempt timeout.
    #[error("request to {address} timed out after {timeout:?}")]
    Timeout {
        /// The instance that did not answer in time.
        address: String,
        /// The per-attempt timeout that passed.
        timeout: Duration,
    },
    /// The instance's breaker is open and the caller asked for that instance only.
    #[error("circuit open for {address}")]
    CircuitOpen {
        /// The instance whose breaker turned the request away.
        address: String,
    },
    /// The overall deadline passed before any attempt succeeded.
    #[error("{service}: deadline of {deadline:?} exceeded")]
    DeadlineExceeded {
        /// The service that was called.
        service: String,
        /// The overall deadline that passed.
        deadline: Duration,
    },
    /// The discovery source failed and no instance set is known yet.
    #[error("discovery: {0}")]
    Discovery(String),
    /// The request could not be sent or its answer not read (connection refused, reset, ...).
    #[error("HTTP request to {address} failed: {message}")]
    Http {
        /// The instance that was called.
        address: String,
        /// What went wrong, from the HTTP client.
        message: String,
    },
    /// The instance answered with an error status (a 4xx for the caller's mistakes, a 5xx
    /// for the instance's).
    #[error("{address} answered {status}")]
    Status {
        /// The instance that answered.
        address: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The answer's body could not be decoded as the expected type.
    #[error("undecodable body from {address}: {message}")]
    Decode {
        /// The instance that answered.
        address: String,
        /// What the decoder said.
        message: String,
    },
    /// The request itself is malformed (for example a path that does not start with `/`).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The client was configured with an invalid value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A tower layer from outside this library failed (for example a `Buffer` whose worker
    /// stopped); this is its message.
    #[error("middleware: {0}")]
    Middleware(String),
}

impl From<tower::BoxError> for Error {
    /// Unwraps this library's own errors that other tower layers boxed on their way through;
    /// anything else becomes [`Error::Middleware`] with its message and causes.
    fn from(error: tower::BoxError) -> Self {
        match error.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) => {
                let mut message = other.to_string();
                let mut source = other.source();
                while let Some(cause) = source {
                    message.push_str(": ");
                    message.push_str(&cause.to_string());
                    source = cause.source();
                }
                Error::Middleware(message)
            }
        }
    }
}

impl From<std::convert::Infallible> for Error {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl Error {
    /// Whether the error is the instance's fault (so a retry elsewhere may help and the
    /// breaker counts it), as opposed to the caller's or the whole service's.
    pub fn is_instance_failure(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Http { .. } | Error::Decode { .. } => true,
            Error::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}
