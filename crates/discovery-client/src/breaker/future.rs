//! The future of [`BreakerService`](super::BreakerService): a permitted call being judged, or a
//! call turned away.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::BoxError;

use super::{Gate, Permit};
use crate::Error;
use crate::classify::{self, Classify, Outcome};

pin_project! {
    /// The future of [`BreakerService::call`](tower::Service::call): the judged answer of an
    /// permitted call (its outcome recorded on the breaker when it ends), or
    /// [`Error::CircuitOpen`] at once for a call the breaker turned away.
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
        Called {
            #[pin]
            future: F,
            // Taken when the outcome is recorded; dropped unrecorded if the caller gives up.
            permit: Option<Permit>,
            gate: Gate,
            classifier: Arc<dyn Classify>,
            started: Instant,
        },
        Rejected { error: Option<Error> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(
        future: F,
        permit: Permit,
        gate: Gate,
        classifier: Arc<dyn Classify>,
        started: Instant,
    ) -> Self {
        Self {
            kind: Kind::Called {
                future,
                permit: Some(permit),
                gate,
                classifier,
                started,
            },
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
    E: Into<BoxError>,
    ResB: AsRef<[u8]>,
{
    type Output = Result<http::Response<ResB>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                permit,
                gate,
                classifier,
                started,
            } => {
                let result =
                    ready!(future.poll(cx)).map_err(|e| Error::from_leaf(e.into(), gate.address()));
                let outcome = classify::judge(&**classifier, &result);
                if let Some(permit) = permit.take() {
                    let now = gate.record(permit, outcome, *started);
                    if outcome == Outcome::Overloaded {
                        // Left alone for its `Retry-After` (capped): a balancer passes it over.
                        gate.push_back_by(now, &result);
                    }
                }
                Poll::Ready(result)
            }
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
