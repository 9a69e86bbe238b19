//! The library's error type.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::transport::tls_failure;

/// The most of an error answer's body that [`Error::Status`] keeps.
pub const STATUS_BODY_LIMIT: usize = 4096;

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
    /// No instance of the service can take a request: none is known, or no breaker grants a
    /// permit (every one is open, or in Retest with its probe out).
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
    /// The request could not be sent or its answer not read (connection refused, reset, ...):
    /// a transport failure, the instance's fault. [`Error::http`] makes one.
    #[error("HTTP request to {address} failed: {message}")]
    Http {
        /// The instance that was called.
        address: String,
        /// What went wrong, from the HTTP client.
        message: String,
    },
    /// A TLS handshake with the instance failed: an unknown CA, an expired certificate, a
    /// name that does not match, a client certificate it required and did not get. The
    /// instance's failure (its breaker counts it), so the others keep serving.
    #[error("TLS with {address} failed: {message}")]
    Tls {
        /// The instance that was called.
        address: String,
        /// What rustls said.
        message: String,
    },
    /// The instance answered with an error status (a 4xx for the caller's mistakes, a 5xx
    /// for the instance's). The answer's headers and the start of its body (at most
    /// [`STATUS_BODY_LIMIT`] bytes) come with it; see [`Error::retry_after`].
    #[error("{address} answered {status}")]
    Status {
        /// The instance that answered.
        address: String,
        /// The HTTP status code.
        status: u16,
        /// The answer's headers (boxed: they are rarely read, and keep every `Result` small).
        headers: Box<HeaderMap>,
        /// The answer's body, cut at [`STATUS_BODY_LIMIT`] bytes.
        body: Bytes,
    },
    /// A 2xx answer's body could not be decoded as the type the caller asked for.
    #[error("undecodable body from {address}: {message}")]
    Decode {
        /// The instance that answered.
        address: String,
        /// What the decoder said.
        message: String,
        /// Whose fault it is. `true`: the body is well-formed (valid JSON) but not of the
        /// caller's type (a missing field, a string where a number goes): the caller's
        /// mistake, which no breaker counts and no retry repeats, since every instance would
        /// answer the same. `false`: the body is malformed or cut short: the instance's
        /// failure, retried elsewhere like a 5xx.
        wrong_type: bool,
    },
    /// Every instance the call could use pushed back: it answered 429 Too Many Requests, or
    /// 503 with a `Retry-After`, or it did so shortly before and is still being left alone
    /// for the time it asked. The service is busy, not down: no breaker counts a push-back.
    /// (A [`ServiceClient`](crate::ServiceClient) tries another instance after a push-back,
    /// as it would after a failure, for requests it retries.)
    #[error("{service}: every instance pushed back{}", wait_hint(*retry_after))]
    Overloaded {
        /// The service that was called.
        service: String,
        /// How long until the first of the instances that pushed back may be called again:
        /// the time it asked in `Retry-After` (capped, see
        /// [`ServiceClientBuilder::max_retry_after`](crate::ServiceClientBuilder::max_retry_after)),
        /// or a second if it did not say. `None` if that time has passed already (an
        /// instance that asked for no wait).
        retry_after: Option<Duration>,
    },
    /// The request itself is malformed (for example a path that does not start with `/`).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The client was configured with an invalid value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A tower layer from outside this library failed (for example a `Buffer` whose worker
    /// stopped); this is its message. Never an instance's failure.
    #[error("middleware: {0}")]
    Middleware(String),
}

/// `" (retry after 2s)"` for [`Error::Overloaded`]'s message, or nothing.
fn wait_hint(retry_after: Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |wait| format!(" (retry after {wait:?})"))
}

/// How long the `Retry-After` header in `headers` asks callers to wait: delay-seconds, or
/// an HTTP date from now (zero if it has passed). `None` without the header, or with one
/// that is neither.
pub(crate) fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

/// The error and its causes, `: `-separated: where a client says what really happened (such
/// as `client error (Connect): tcp connect error: Connection refused (os error 111)`).
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Whether `error` or one of its causes is a transport's own error: an I/O error, hyper's,
/// or a timeout's.
fn is_transport_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<std::io::Error>()
            || e.is::<hyper::Error>()
            || e.is::<hyper_util::client::legacy::Error>()
            || e.is::<tower::timeout::error::Elapsed>()
            || e.is::<tokio::time::error::Elapsed>()
        {
            return true;
        }
        next = e.source();
    }
    false
}

impl From<tower::BoxError> for Error {
    /// Unwraps this library's own errors that other tower layers boxed on their way through;
    /// anything else becomes [`Error::Middleware`] with its message and causes.
    fn from(error: tower::BoxError) -> Self {
        match error.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) => Error::Middleware(with_causes(&*other)),
        }
    }
}

impl From<std::convert::Infallible> for Error {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl Error {
    /// A transport failure at the instance at `address`: the request could not be sent or
    /// its answer not read. The message is `error` with its causes.
    ///
    /// This is how a transport (see [`ServiceClientBuilder::transport`]) or a leaf service of
    /// your own under a [`BreakerService`] reports that it failed: the breaker counts it as
    /// the instance's failure and the client may retry elsewhere.
    ///
    /// [`ServiceClientBuilder::transport`]: crate::ServiceClientBuilder::transport
    /// [`BreakerService`]: crate::breaker::BreakerService
    ///
    /// ```
    /// use discovery_client::Error;
    ///
    /// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// let error = Error::http("http://127.0.0.1:8001", &refused);
    /// assert!(error.is_instance_failure());
    /// assert_eq!(error.to_string(), "HTTP request to http://127.0.0.1:8001 failed: connection refused");
    /// ```
    pub fn http(address: impl Into<String>, error: &(dyn std::error::Error + 'static)) -> Self {
        Error::Http {
            address: address.into(),
            message: with_causes(error),
        }
    }

    /// The error of a leaf service (the service of one instance, under a breaker) at
    /// `address`: this crate's own errors are kept as they are; an error with an
    /// [`std::io::Error`], a hyper error or a timeout's `Elapsed` in its chain is a transport
    /// failure ([`Error::Http`]); anything else is [`Error::Middleware`], which no breaker
    /// counts.
    pub fn from_leaf(error: tower::BoxError, address: &str) -> Self {
        match error.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) if is_transport_failure(&*other) => Error::transport(address, &*other),
            Err(other) => Error::Middleware(with_causes(&*other)),
        }
    }

    /// The error of a [`ServiceClient`](crate::ServiceClient)'s transport sending to the
    /// instance at `address`: this crate's own errors are kept as they are (return
    /// [`Error::InvalidRequest`] for a request no instance could take), anything else is a
    /// transport failure ([`Error::Http`]).
    pub(crate) fn from_transport(error: tower::BoxError, address: &str) -> Self {
        match error.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) => Error::transport(address, &*other),
        }
    }

    /// A transport's failure at `address`: [`Error::Tls`] if rustls is in its chain,
    /// otherwise [`Error::Http`].
    fn transport(address: &str, error: &(dyn std::error::Error + 'static)) -> Self {
        match tls_failure(error) {
            Some(message) => Error::Tls {
                address: address.to_string(),
                message,
            },
            None => Error::http(address, error),
        }
    }

    /// The answer `status` with `headers` and `body` from `address` as [`Error::Status`],
    /// the body cut at [`STATUS_BODY_LIMIT`].
    pub(crate) fn status(
        address: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Self {
        Error::Status {
            address: address.to_string(),
            status: status.as_u16(),
            headers: Box::new(headers.clone()),
            body: body.slice(..body.len().min(STATUS_BODY_LIMIT)),
        }
    }

    /// For an [`Error::Status`] answer with a `Retry-After` header: how long the instance
    /// asked callers to wait (delay-seconds, or an HTTP date from now; zero if it has
    /// passed). For [`Error::Overloaded`], its `retry_after`. `None` for other errors, or a
    /// header that is neither.
    ///
    /// ```
    /// use std::time::Duration;
    /// use discovery_client::Error;
    ///
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
    /// let busy = Error::Status {
    ///     address: "http://127.0.0.1:8001".into(),
    ///     status: 429,
    ///     headers: Box::new(headers),
    ///     body: bytes::Bytes::new(),
    /// };
    /// assert_eq!(busy.retry_after(), Some(Duration::from_secs(7)));
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { headers, .. } => retry_after_of(headers),
            Error::Overloaded { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the error is the instance's fault (so a retry elsewhere may help and the
    /// breaker counts it), as opposed to the caller's or the whole service's.
    pub fn is_instance_failure(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Http { .. } | Error::Tls { .. } => true,
            Error::Decode { wrong_type, .. } => !wrong_type,
            Error::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}
