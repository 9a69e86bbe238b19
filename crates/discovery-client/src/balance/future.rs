//! The future of [`Balancer`](super::Balancer).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::InFlightGuard;
use crate::Error;

pin_project! {
    /// The chosen endpoint's answer, or at once [`Error::AllInstancesDown`] when no endpoint
    /// granted a permit (or the discovery error, while no endpoint is known). The call counts
    /// as in flight on its endpoint until this future finishes or is dropped.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use discovery_client::balance::{Balancer, ResponseFuture};
    /// use discovery_client::breaker::BreakerService;
    /// use discovery_client::Error;
    /// use futures::stream;
    /// use tower::discover::Change;
    /// use tower::{Service, ServiceExt};
    ///
    /// # type Endpoint = BreakerService<tower::util::ServiceFn<fn(http::Request<()>) -> std::future::Ready<Result<http::Response<Bytes>, Error>>>>;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // Discovery ended without any endpoint: the future is AllInstancesDown, at once.
    /// let nothing = stream::empty::<Result<Change<String, Endpoint>, Error>>();
    /// let mut balancer = Balancer::new("ratings", nothing);
    /// let future = balancer.ready().await.unwrap().call(http::Request::new(()));
    /// let _: &ResponseFuture<_> = &future;
    /// assert!(matches!(future.await, Err(Error::AllInstancesDown { .. })));
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
            // Counts the call in flight; dropped when the answer is ready.
            in_flight: Option<InFlightGuard>,
            // When the call was made: its answer time goes into the endpoint's estimate.
            started: Instant,
        },
        Failed { error: Option<Error> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, in_flight: InFlightGuard) -> Self {
        Self {
            kind: Kind::Called {
                future,
                in_flight: Some(in_flight),
                started: Instant::now(),
            },
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        Self {
            kind: Kind::Failed { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<Error>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                in_flight,
                started,
            } => {
                let answer = std::task::ready!(future.poll(cx));
                // Answered: no longer in flight, even if the caller keeps this future.
                if let Some(guard) = in_flight.take() {
                    let now = Instant::now();
                    guard
                        .load()
                        .observe(now.saturating_duration_since(*started), now);
                }
                Poll::Ready(answer.map_err(Into::into))
            }
            KindProj::Failed { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
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
