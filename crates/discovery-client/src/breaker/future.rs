//! The futures of [`BreakerService`](super::BreakerService): an admitted call being judged, or
//! a call turned away.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::Permit;
use crate::Error;
use crate::classify::{Attempt, Classify, Outcome};
use crate::telemetry::InstanceTelemetry;

/// Checks a 2xx body (for example that it decodes as the expected JSON type); an `Err`
/// makes the attempt an instance failure. It may keep what it decoded, so that the body is
/// decoded once.
pub(crate) trait BodyCheck: FnMut(&[u8]) -> Result<(), String> {}

impl<C: FnMut(&[u8]) -> Result<(), String>> BodyCheck for C {}

/// The check type of calls that check nothing.
pub(crate) type NoCheck = fn(&[u8]) -> Result<(), String>;

pin_project! {
    /// An admitted call: when the inner future ends, the attempt is judged, timed and
    /// recorded on the breaker, and the outcome is handed back with the result.
    pub(crate) struct Classified<F, C> {
        #[pin]
        inner: F,
        // Taken when the outcome is recorded; dropped unrecorded if the caller gives up.
        permit: Option<Permit>,
        started: Instant,
        telemetry: Arc<InstanceTelemetry>,
        classifier: Arc<dyn Classify>,
        check: Option<C>,
    }
}

impl<F, C> Classified<F, C> {
    pub(crate) fn new(
        inner: F,
        permit: Permit,
        started: Instant,
        telemetry: Arc<InstanceTelemetry>,
        classifier: Arc<dyn Classify>,
        check: Option<C>,
    ) -> Self {
        Self {
            inner,
            permit: Some(permit),
            started,
            telemetry,
            classifier,
            check,
        }
    }
}

impl<F, C> Classified<F, C> {
    /// The same attempt without its body check, so that it no longer borrows the caller: a
    /// hedged call's straggler is detached this way and runs to its own end in a task. Its
    /// outcome is still judged by the classifier and recorded on the breaker; only a 2xx
    /// body that the check would have refused counts as a success.
    pub(crate) fn detach(self) -> Classified<F, NoCheck> {
        Classified {
            inner: self.inner,
            permit: self.permit,
            started: self.started,
            telemetry: self.telemetry,
            classifier: self.classifier,
            check: None,
        }
    }
}

impl<F, C, E, ResB> Future for Classified<F, C>
where
    F: Future<Output = Result<http::Response<ResB>, E>>,
    E: Into<Error>,
    ResB: AsRef<[u8]>,
    C: BodyCheck,
{
    type Output = (Result<http::Response<ResB>, Error>, Outcome);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx)).map_err(Into::into);
        let result = match (result, this.check.as_mut()) {
            (Ok(answer), Some(check)) if answer.status().is_success() => {
                match check(answer.body().as_ref()) {
                    Ok(()) => Ok(answer),
                    Err(message) => Err(Error::Decode {
                        address: this.telemetry.address().to_string(),
                        message,
                    }),
                }
            }
            (result, _) => result,
        };
        let outcome = match &result {
            Ok(answer) => this.classifier.classify(Attempt::Answered {
                status: answer.status(),
                body: answer.body().as_ref(),
            }),
            Err(error) => this.classifier.classify(Attempt::Errored(error)),
        };
        let now = Instant::now();
        this.telemetry
            .request(outcome, now.saturating_duration_since(*this.started));
        if let Some(permit) = this.permit.take() {
            let success = outcome != Outcome::Failure;
            if let Some((transition, breaker)) = permit.settle(success, now) {
                this.telemetry.transition(&breaker, transition);
            }
        }
        Poll::Ready((result, outcome))
    }
}

pin_project! {
    /// The future of [`BreakerService::call`](tower::Service::call): the judged answer of an
    /// admitted call, or [`Error::CircuitOpen`] at once for a call the breaker turned away.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use discovery_client::breaker::{BreakerConfig, BreakerLayer, ResponseFuture};
    /// use discovery_client::Instance;
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = BreakerLayer::new("ratings", &Instance::new("1", "http://127.0.0.1:8001"), BreakerConfig::default());
    /// let mut svc = layer.layer(tower::service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::new()))
    /// }));
    /// let future = svc.ready().await.unwrap().call(http::Request::new(()));
    /// let _: &ResponseFuture<_> = &future;
    /// assert_eq!(future.await.unwrap().status(), 200);
    /// # }
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: Classified<F, NoCheck> },
        Rejected { error: Option<Error> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: Classified<F, NoCheck>) -> Self {
        Self {
            kind: Kind::Called { future },
        }
    }

    pub(crate) fn rejected(error: Error) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, E, ResB> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResB>, E>>,
    E: Into<Error>,
    ResB: AsRef<[u8]>,
{
    type Output = Result<http::Response<ResB>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future } => future.poll(cx).map(|(result, _)| result),
            KindProj::Rejected { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                Error::InvalidRequest("response future polled after completion".into())
            }))),
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
