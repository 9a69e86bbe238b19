//! Deciding whether an attempt failed, apart from what the breaker does about it.
//!
//! The default rule, [`DefaultClassifier`]: transport errors, timeouts, 5xx answers and
//! bodies that are malformed or cut short are the instance's failures; 4xx answers, and
//! well-formed bodies of another type than the caller's ([`Error::Decode`] with
//! `wrong_type`), are the caller's problem and never trip a breaker; a 429, or a 503 with a
//! `Retry-After`, is back-pressure ([`Outcome::Overloaded`]): the instance is busy, not
//! sick; everything else succeeded. Supply your own
//! [`Classify`] to the builder to change it (say, to count 429 as a failure).

use http::{HeaderMap, StatusCode};

use crate::Error;
use crate::error::retry_after_of;

/// What one attempt amounted to.
///
/// ```
/// use discovery_client::classify::{Attempt, Classify, DefaultClassifier, Outcome};
/// use http::StatusCode;
///
/// let headers = http::HeaderMap::new();
/// let outcome = DefaultClassifier.classify(Attempt::Answered {
///     status: StatusCode::NOT_FOUND,
///     headers: &headers,
///     body: b"",
/// });
/// assert_eq!(outcome, Outcome::CallerError);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The instance did its job.
    Success,
    /// The instance answered, but the request was wrong (4xx): no retry, no breaker count.
    CallerError,
    /// The instance failed: counts toward its breaker, and another instance may be tried.
    Failure,
    /// The instance pushed back (429 Too Many Requests, or 503 with `Retry-After`): it is
    /// busy, not sick. No breaker counts it, neither as a success nor as a failure; a
    /// [`ServiceClient`](crate::ServiceClient) avoids the instance for its `Retry-After`
    /// (capped) and tries another instance, as it would after a failure.
    Overloaded,
}

/// The attempt as a classifier sees it.
///
/// ```
/// use discovery_client::classify::{Attempt, Classify, DefaultClassifier, Outcome};
/// use discovery_client::Error;
/// use std::time::Duration;
///
/// let timeout = Error::Timeout { address: "http://127.0.0.1:8001".into(), timeout: Duration::from_secs(1) };
/// assert_eq!(DefaultClassifier.classify(Attempt::Errored(&timeout)), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    /// An answer arrived in time, with this status and body.
    Answered {
        /// The HTTP status.
        status: StatusCode,
        /// The answer's headers (such as `Retry-After`).
        headers: &'a HeaderMap,
        /// The whole body.
        body: &'a [u8],
    },
    /// No usable answer: the error says why.
    Errored(&'a Error),
}

/// Decides the [`Outcome`] of an attempt.
///
/// ```
/// use discovery_client::classify::{Attempt, Classify, DefaultClassifier, Outcome};
///
/// /// Also counts 429 Too Many Requests as the instance's failure.
/// #[derive(Debug)]
/// struct TooManyRequestsFails;
///
/// impl Classify for TooManyRequestsFails {
///     fn classify(&self, attempt: Attempt<'_>) -> Outcome {
///         match attempt {
///             Attempt::Answered { status, .. } if status.as_u16() == 429 => Outcome::Failure,
///             other => DefaultClassifier.classify(other),
///         }
///     }
/// }
/// // ServiceClient::builder("ratings").classifier(TooManyRequestsFails) ...
/// ```
pub trait Classify: Send + Sync + std::fmt::Debug + 'static {
    /// Classifies one attempt.
    fn classify(&self, attempt: Attempt<'_>) -> Outcome;
}

/// Transport errors, timeouts, 5xx and malformed bodies fail; 4xx is the caller's problem,
/// but for 429, which is back-pressure, as is a 503 with a `Retry-After` (delay-seconds or
/// an HTTP date).
///
/// ```
/// use discovery_client::classify::{Attempt, Classify, DefaultClassifier, Outcome};
/// use http::{HeaderMap, StatusCode};
///
/// let none = HeaderMap::new();
/// let mut retry_after = HeaderMap::new();
/// retry_after.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
/// let judge = |status, headers| DefaultClassifier.classify(Attempt::Answered { status, headers, body: b"{}" });
/// assert_eq!(judge(StatusCode::OK, &none), Outcome::Success);
/// assert_eq!(judge(StatusCode::BAD_REQUEST, &none), Outcome::CallerError);
/// assert_eq!(judge(StatusCode::SERVICE_UNAVAILABLE, &none), Outcome::Failure);
/// assert_eq!(judge(StatusCode::SERVICE_UNAVAILABLE, &retry_after), Outcome::Overloaded);
/// assert_eq!(judge(StatusCode::TOO_MANY_REQUESTS, &none), Outcome::Overloaded);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl Classify for DefaultClassifier {
    fn classify(&self, attempt: Attempt<'_>) -> Outcome {
        match attempt {
            Attempt::Answered { status, .. } if status == StatusCode::TOO_MANY_REQUESTS => {
                Outcome::Overloaded
            }
            Attempt::Answered {
                status, headers, ..
            } if status == StatusCode::SERVICE_UNAVAILABLE && retry_after_of(headers).is_some() => {
                Outcome::Overloaded
            }
            Attempt::Answered { status, .. } if status.is_server_error() => Outcome::Failure,
            Attempt::Answered { status, .. } if status.is_client_error() => Outcome::CallerError,
            Attempt::Answered { .. } => Outcome::Success,
            Attempt::Errored(error) if error.is_instance_failure() => Outcome::Failure,
            Attempt::Errored(_) => Outcome::CallerError,
        }
    }
}

/// Judges a finished attempt: an answer by its status and whole body, an error by what it is.
pub(crate) fn judge<B: AsRef<[u8]>>(
    classifier: &dyn Classify,
    result: &Result<http::Response<B>, Error>,
) -> Outcome {
    match result {
        Ok(answer) => classifier.classify(Attempt::Answered {
            status: answer.status(),
            headers: answer.headers(),
            body: answer.body().as_ref(),
        }),
        Err(error) => classifier.classify(Attempt::Errored(error)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn answered_with(code: u16, retry_after: Option<&str>) -> Outcome {
        let status = StatusCode::from_u16(code).expect("valid status");
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            let value = value.parse().expect("a header value");
            headers.insert(http::header::RETRY_AFTER, value);
        }
        DefaultClassifier.classify(Attempt::Answered {
            status,
            headers: &headers,
            body: b"",
        })
    }

    fn answered(code: u16) -> Outcome {
        answered_with(code, None)
    }

    #[test]
    fn statuses() {
        assert_eq!(answered(200), Outcome::Success);
        assert_eq!(answered(204), Outcome::Success);
        assert_eq!(answered(404), Outcome::CallerError);
        assert_eq!(answered(400), Outcome::CallerError);
        assert_eq!(answered(500), Outcome::Failure);
        assert_eq!(answered(503), Outcome::Failure);
    }

    #[test]
    fn push_backs() {
        assert_eq!(answered(429), Outcome::Overloaded);
        assert_eq!(answered_with(429, Some("2")), Outcome::Overloaded);
        assert_eq!(answered_with(503, Some("7")), Outcome::Overloaded);
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(answered_with(503, Some(date)), Outcome::Overloaded);
        assert_eq!(
            answered_with(503, Some("soon")),
            Outcome::Failure,
            "a Retry-After that says nothing usable"
        );
        assert_eq!(answered_with(500, Some("7")), Outcome::Failure);
    }

    #[test]
    fn errors() {
        let timeout = Error::Timeout {
            address: "http://x".into(),
            timeout: Duration::from_secs(1),
        };
        let decode = Error::Decode {
            address: "http://x".into(),
            message: "expected value".into(),
            wrong_type: false,
        };
        let wrong_type = Error::Decode {
            address: "http://x".into(),
            message: "missing field `rating`".into(),
            wrong_type: true,
        };
        let refused = Error::Http {
            address: "http://x".into(),
            message: "connection refused".into(),
        };
        let bad = Error::InvalidRequest("path".into());
        for e in [&timeout, &decode, &refused] {
            assert_eq!(
                DefaultClassifier.classify(Attempt::Errored(e)),
                Outcome::Failure
            );
        }
        for e in [&bad, &wrong_type] {
            assert_eq!(
                DefaultClassifier.classify(Attempt::Errored(e)),
                Outcome::CallerError
            );
        }
    }
}
