//! [`JudgedBody`]: a streamed answer's body, passed on as it arrives, that records a gRPC
//! call's outcome when its trailers (or an error, or its end) arrive.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::streamed::Verdict;
use crate::Error;
use crate::classify::{self, Attempt};

pin_project! {
    /// The body of an answer from a streamed [`BreakerService`](super::BreakerService),
    /// frame for frame as the inner body gives it. For a gRPC answer whose status is still
    /// to come, the outcome is recorded on the breaker by the `grpc-status` of the
    /// trailers; a body error before them is a transport failure, and an end without them
    /// a stream cut short (a failure). Dropped before its end, it records nothing (see
    /// [`StreamedAnswer`](super::StreamedAnswer)).
    pub struct JudgedBody<B> {
        #[pin]
        inner: B,
        // Present while the outcome is still to be recorded.
        verdict: Option<Verdict>,
    }
}

impl<B> JudgedBody<B> {
    pub(crate) fn new(inner: B, verdict: Option<Verdict>) -> Self {
        Self { inner, verdict }
    }

    /// Whether the call's outcome is still to be known (a gRPC stream not ended yet).
    pub fn is_judging(&self) -> bool {
        self.verdict.is_some()
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B> Body for JudgedBody<B>
where
    B: Body,
    B::Error: fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(verdict) = this.verdict.take() {
                        let outcome =
                            classify::judge_trailers(verdict.classifier(), Some(trailers));
                        verdict.record(outcome, Some(trailers));
                    }
                }
            }
            Some(Err(error)) => {
                if let Some(verdict) = this.verdict.take() {
                    let error = Error::Http {
                        address: verdict.address().to_string(),
                        message: error.to_string(),
                    };
                    let outcome = verdict.classifier().classify(Attempt::Errored(&error));
                    verdict.record(outcome, None);
                }
            }
            None => {
                if let Some(verdict) = this.verdict.take() {
                    let outcome = classify::judge_trailers(verdict.classifier(), None);
                    verdict.record(outcome, None);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        // Until the outcome is recorded the stream is polled to its end, which records it.
        self.verdict.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: fmt::Debug> fmt::Debug for JudgedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JudgedBody")
            .field("inner", &self.inner)
            .field("judging", &self.verdict.is_some())
            .finish()
    }
}
