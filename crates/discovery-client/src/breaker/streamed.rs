//! Judging answers whose body is streamed: [`StreamedAnswer`], the future that judges the
//! head ([`StreamedResponseFuture`]) and what records the outcome ([`Verdict`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::HeaderMap;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::BoxError;

use super::{Gate, Permit};
use crate::Error;
use crate::classify::{self, Attempt, Classify, HeadVerdict, Outcome};
use crate::error::retry_after_of;

pub use super::judged_body::JudgedBody;

/// A [`BreakerService`](super::BreakerService) that judges whole answers: the body is at
/// hand (`AsRef<[u8]>`, such as [`Bytes`](bytes::Bytes)) and the classifier sees it
/// ([`Attempt::Answered`]). The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct WholeAnswer;

/// A [`BreakerService`](super::BreakerService) whose answers are streamed: any
/// [`http_body::Body`], passed on as it arrives in a [`JudgedBody`].
///
/// - The outcome of a call whose head is an error (a timeout, a transport error) is
///   recorded at once, as with whole answers.
/// - An answer that is not gRPC is judged by its head ([`Attempt::Head`]: 5xx fails, 4xx
///   is the caller's, 429 pushes back) when it arrives; its body is not judged.
/// - A gRPC answer (a 200 with `content-type: application/grpc...`) is judged by its
///   `grpc-status` ([`Attempt::Grpc`]): at the head for a trailers-only answer (the status
///   in its headers, as servers answer an error before any message), otherwise when the
///   trailers end the stream. A body error before them is a transport failure
///   ([`Error::Http`]); a stream that ends without a status was cut short, a failure.
/// - A stream the caller drops before its end leaves its permit unrecorded: the instance
///   answered its head in time and was cut off by the caller, which says nothing of its
///   health either way (as a call whose caller gives up). In Retest that frees the probe's
///   slot for the next caller.
///
/// So the time a stream runs is never held against the instance: the per-attempt
/// [`Timeout`](crate::timeout::Timeout) under the breaker bounds the time to the head only.
/// A Retest probe that is a long stream keeps the probe's slot until the stream ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamedAnswer;

/// What records one permitted call's outcome on its breaker, once it is known.
pub(crate) struct Verdict {
    /// The call's permit, recorded with the outcome (dropped unrecorded with the verdict).
    permit: Permit,
    /// The instance's breaker and reporting.
    gate: Gate,
    /// Decides whether the attempt failed.
    classifier: Arc<dyn Classify>,
    /// When the call was sent.
    started: Instant,
}

impl Verdict {
    pub(crate) fn new(
        permit: Permit,
        gate: Gate,
        classifier: Arc<dyn Classify>,
        started: Instant,
    ) -> Self {
        Self {
            permit,
            gate,
            classifier,
            started,
        }
    }

    /// The classifier that judges this call.
    pub(crate) fn classifier(&self) -> &dyn Classify {
        &*self.classifier
    }

    /// The instance's address.
    pub(crate) fn address(&self) -> &str {
        self.gate.address()
    }

    /// Records `outcome` on the breaker; a push-back avoids the instance for the
    /// `Retry-After` in `headers` (capped), if any.
    pub(crate) fn record(self, outcome: Outcome, headers: Option<&HeaderMap>) {
        let now = self.gate.record(self.permit, outcome, self.started);
        if outcome == Outcome::Overloaded {
            self.gate.push_back(now, headers.and_then(retry_after_of));
        }
    }
}

pin_project! {
    /// The future of a streamed [`BreakerService`](super::BreakerService)'s call: the
    /// answer's head, its body wrapped in a [`JudgedBody`] that records a gRPC call's
    /// outcome when its trailers arrive; or [`Error::CircuitOpen`] at once for a call the
    /// breaker turned away.
    pub struct StreamedResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            // Taken when the head arrives; dropped unrecorded if the caller gives up first.
            verdict: Option<Verdict>,
        },
        Rejected { error: Option<Error> },
    }
}

impl<F> StreamedResponseFuture<F> {
    pub(crate) fn called(future: F, verdict: Verdict) -> Self {
        Self {
            kind: Kind::Called {
                future,
                verdict: Some(verdict),
            },
        }
    }

    pub(crate) fn rejected(error: Error) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, E, ResB> Future for StreamedResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResB>, E>>,
    E: Into<BoxError>,
    ResB: http_body::Body,
{
    type Output = Result<http::Response<JudgedBody<ResB>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, verdict } => {
                let result = ready!(future.poll(cx));
                let Some(verdict) = verdict.take() else {
                    return Poll::Ready(Err(Error::InvalidRequest(
                        "response future polled after completion".into(),
                    )));
                };
                let answer = match result {
                    Ok(answer) => answer,
                    Err(error) => {
                        let error = Error::from_leaf(error.into(), verdict.address());
                        let outcome = verdict.classifier().classify(Attempt::Errored(&error));
                        verdict.record(outcome, None);
                        return Poll::Ready(Err(error));
                    }
                };
                let head =
                    classify::judge_head(verdict.classifier(), answer.status(), answer.headers());
                let verdict = match head {
                    HeadVerdict::Judged(outcome) => {
                        verdict.record(outcome, Some(answer.headers()));
                        None
                    }
                    HeadVerdict::AwaitTrailers => Some(verdict),
                };
                Poll::Ready(Ok(answer.map(|body| JudgedBody::new(body, verdict))))
            }
            KindProj::Rejected { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                Error::InvalidRequest("response future polled after completion".into())
            }))),
        }
    }
}

impl<F> std::fmt::Debug for StreamedResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedResponseFuture")
            .finish_non_exhaustive()
    }
}
