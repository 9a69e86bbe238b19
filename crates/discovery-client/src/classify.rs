//! Deciding whether an attempt failed, apart from what the breaker does about it.
//!
//! The default rule, [`DefaultClassifier`]: transport errors, timeouts, 5xx answers and
//! bodies that are malformed or cut short are the instance's failures; 4xx answers, and
//! well-formed bodies of another type than the caller's ([`Error::Decode`] with
//! `wrong_type`), are the caller's problem and never trip a breaker; a 429, or a 503 with a
//! `Retry-After`, is back-pressure ([`Outcome::Overloaded`]): the instance is busy, not
//! sick; everything else succeeded. Supply your own
//! [`Classify`] to the builder to change it (say, to count 429 as a failure).
//!
//! An answer whose body is streamed to the caller (a gRPC call, a download) is judged
//! without its body: by its head ([`Attempt::Head`], the same status rules), and, for gRPC,
//! by its [`GrpcCode`] ([`Attempt::Grpc`]), found in the headers of a trailers-only answer
//! or in the trailers at the end of the stream. `UNAVAILABLE` is the instance's failure,
//! `DEADLINE_EXCEEDED` too (as a timeout is), `RESOURCE_EXHAUSTED` is back-pressure (as a
//! 429 is), and every other status (`NOT_FOUND`, `INVALID_ARGUMENT`, ...) is the
//! application's answer to the caller, which trips nothing.

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
    /// An answer arrived in time and its body is streamed to the caller: judged on its
    /// status and headers alone.
    Head {
        /// The HTTP status.
        status: StatusCode,
        /// The answer's headers.
        headers: &'a HeaderMap,
    },
    /// A gRPC call ended with this status: from the headers of a trailers-only answer, or
    /// from the trailers that end the stream.
    Grpc {
        /// The `grpc-status`.
        code: GrpcCode,
        /// The headers or trailers it came in (`grpc-message`, ...).
        metadata: &'a HeaderMap,
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
            Attempt::Answered {
                status, headers, ..
            }
            | Attempt::Head { status, headers } => by_status(status, headers),
            Attempt::Grpc { code, .. } => by_grpc_code(code),
            Attempt::Errored(error) if error.is_instance_failure() => Outcome::Failure,
            Attempt::Errored(_) => Outcome::CallerError,
        }
    }
}

/// The default rule for an HTTP answer's status.
fn by_status(status: StatusCode, headers: &HeaderMap) -> Outcome {
    if status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::SERVICE_UNAVAILABLE && retry_after_of(headers).is_some())
    {
        Outcome::Overloaded
    } else if status.is_server_error() {
        Outcome::Failure
    } else if status.is_client_error() {
        Outcome::CallerError
    } else {
        Outcome::Success
    }
}

/// The default rule for a gRPC status.
fn by_grpc_code(code: GrpcCode) -> Outcome {
    match code {
        GrpcCode::OK => Outcome::Success,
        // The instance could not serve, or did not in time (as a timeout).
        GrpcCode::UNAVAILABLE | GrpcCode::DEADLINE_EXCEEDED => Outcome::Failure,
        GrpcCode::RESOURCE_EXHAUSTED => Outcome::Overloaded,
        // The application's answer to this call.
        _ => Outcome::CallerError,
    }
}

/// A gRPC status code, as an answer's `grpc-status` carries it.
///
/// ```
/// use discovery_client::classify::GrpcCode;
///
/// let mut trailers = http::HeaderMap::new();
/// trailers.insert("grpc-status", "14".parse().unwrap());
/// assert_eq!(GrpcCode::of(&trailers), Some(GrpcCode::UNAVAILABLE));
/// assert_eq!(GrpcCode::of(&http::HeaderMap::new()), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrpcCode(pub i32);

impl GrpcCode {
    /// `OK`: the call succeeded.
    pub const OK: GrpcCode = GrpcCode(0);
    /// `CANCELLED`: the caller cancelled the call.
    pub const CANCELLED: GrpcCode = GrpcCode(1);
    /// `UNKNOWN`.
    pub const UNKNOWN: GrpcCode = GrpcCode(2);
    /// `INVALID_ARGUMENT`: the caller's request was wrong.
    pub const INVALID_ARGUMENT: GrpcCode = GrpcCode(3);
    /// `DEADLINE_EXCEEDED`: the call did not finish in time.
    pub const DEADLINE_EXCEEDED: GrpcCode = GrpcCode(4);
    /// `NOT_FOUND`: what the caller asked for does not exist.
    pub const NOT_FOUND: GrpcCode = GrpcCode(5);
    /// `RESOURCE_EXHAUSTED`: the server is out of some resource (a quota, say): back-pressure.
    pub const RESOURCE_EXHAUSTED: GrpcCode = GrpcCode(8);
    /// `INTERNAL`.
    pub const INTERNAL: GrpcCode = GrpcCode(13);
    /// `UNAVAILABLE`: the server cannot serve now.
    pub const UNAVAILABLE: GrpcCode = GrpcCode(14);

    /// The `grpc-status` in `headers` (a trailers-only answer's headers, or trailers), if
    /// there is one that parses.
    pub fn of(headers: &HeaderMap) -> Option<GrpcCode> {
        let value = headers.get("grpc-status")?.to_str().ok()?;
        value.trim().parse().ok().map(GrpcCode)
    }
}

/// Whether an answer with these headers is a gRPC answer (`content-type: application/grpc`,
/// `application/grpc+proto`, ...).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// What the head of an answer whose body is streamed says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadVerdict {
    /// The attempt is judged: its outcome.
    Judged(Outcome),
    /// A gRPC answer that carries its status in the trailers: judged when they arrive.
    AwaitTrailers,
}

/// Judges the head of an answer whose body is streamed: a gRPC answer (200 with a gRPC
/// content type) by the `grpc-status` in its headers if it has one (a trailers-only
/// answer), else later by its trailers; any other answer by its status and headers.
pub(crate) fn judge_head(
    classifier: &dyn Classify,
    status: StatusCode,
    headers: &HeaderMap,
) -> HeadVerdict {
    if status == StatusCode::OK && is_grpc(headers) {
        return match GrpcCode::of(headers) {
            Some(code) => HeadVerdict::Judged(classifier.classify(Attempt::Grpc {
                code,
                metadata: headers,
            })),
            None => HeadVerdict::AwaitTrailers,
        };
    }
    HeadVerdict::Judged(classifier.classify(Attempt::Head { status, headers }))
}

/// Judges the end of a gRPC answer's stream by the `grpc-status` in its `trailers`. A
/// stream that ends without one was cut short: the instance's failure, as a body cut short
/// is.
pub(crate) fn judge_trailers(classifier: &dyn Classify, trailers: Option<&HeaderMap>) -> Outcome {
    match trailers.and_then(|t| Some((GrpcCode::of(t)?, t))) {
        Some((code, metadata)) => classifier.classify(Attempt::Grpc { code, metadata }),
        None => Outcome::Failure,
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

    fn grpc(code: GrpcCode) -> Outcome {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/grpc".parse().expect("a value"));
        headers.insert(
            "grpc-status",
            code.0.to_string().parse().expect("a header value"),
        );
        match judge_head(&DefaultClassifier, StatusCode::OK, &headers) {
            HeadVerdict::Judged(outcome) => outcome,
            HeadVerdict::AwaitTrailers => panic!("a trailers-only answer is judged at its head"),
        }
    }

    #[test]
    fn grpc_statuses() {
        assert_eq!(grpc(GrpcCode::OK), Outcome::Success);
        assert_eq!(grpc(GrpcCode::UNAVAILABLE), Outcome::Failure);
        assert_eq!(grpc(GrpcCode::DEADLINE_EXCEEDED), Outcome::Failure);
        assert_eq!(grpc(GrpcCode::RESOURCE_EXHAUSTED), Outcome::Overloaded);
        for code in [
            GrpcCode::NOT_FOUND,
            GrpcCode::INVALID_ARGUMENT,
            GrpcCode::CANCELLED,
            GrpcCode::INTERNAL,
        ] {
            assert_eq!(grpc(code), Outcome::CallerError, "{code:?}");
        }
    }

    #[test]
    fn grpc_heads_and_trailers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            "application/grpc+proto".parse().expect("a value"),
        );
        assert_eq!(
            judge_head(&DefaultClassifier, StatusCode::OK, &headers),
            HeadVerdict::AwaitTrailers
        );
        assert_eq!(
            judge_head(&DefaultClassifier, StatusCode::BAD_GATEWAY, &headers),
            HeadVerdict::Judged(Outcome::Failure),
            "a proxy's 502 in front of a gRPC server"
        );
        assert_eq!(
            judge_head(&DefaultClassifier, StatusCode::OK, &HeaderMap::new()),
            HeadVerdict::Judged(Outcome::Success)
        );
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "14".parse().expect("a value"));
        assert_eq!(
            judge_trailers(&DefaultClassifier, Some(&trailers)),
            Outcome::Failure
        );
        trailers.insert("grpc-status", "5".parse().expect("a value"));
        assert_eq!(
            judge_trailers(&DefaultClassifier, Some(&trailers)),
            Outcome::CallerError
        );
        assert_eq!(
            judge_trailers(&DefaultClassifier, None),
            Outcome::Failure,
            "a stream cut short of its status"
        );
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
