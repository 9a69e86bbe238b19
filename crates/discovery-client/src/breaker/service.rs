//! [`BreakerService`]: one instance's service, guarded by its [`Breaker`](super::Breaker).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{BoxError, Service};

use super::future::ResponseFuture;
use super::streamed::{JudgedBody, StreamedAnswer, StreamedResponseFuture, Verdict, WholeAnswer};
use super::{Gate, Permit};
use crate::Error;
use crate::classify::Classify;

/// A per-instance service guarded by a circuit [`Breaker`](super::Breaker); made by a
/// [`BreakerLayer`](super::BreakerLayer).
///
/// - [`poll_ready`](Service::poll_ready) only asks the inner service: an open breaker never
///   makes it fail or wait.
/// - [`call`](Service::call) uses the permit a balancer took ahead with
///   [`AcquirePermit::try_acquire`], or asks the breaker for one. Without one (the breaker is
///   open, or in Retest with its single probe already out) the call is turned away at once
///   with a ready [`Error::CircuitOpen`] and the inner service is not called.
/// - Permitted calls are logged (`ratings using instance 1: ...`), timed, judged by the
///   [`Classify`] rule (5xx, transport errors and timeouts are failures; 4xx is the
///   caller's problem; 429, or 503 with `Retry-After`, is back-pressure, which the breaker
///   counts as neither), and the outcome goes to the breaker. Transitions are logged (`OPEN
///   breaker on [ratings at http://..]`, `RETEST ..`, `CLOSE ..`), published as
///   [`Event`](crate::Event)s and counted in the metrics; an opened breaker moves to Retest
///   on time by itself.
///
/// The inner service's errors are judged as [`Error::from_leaf`] says: this crate's own
/// [`Error`]s are kept, an error with an [`std::io::Error`] (or a hyper or timeout error) in
/// its chain is a transport failure ([`Error::Http`], the instance's failure), anything
/// else is [`Error::Middleware`], which is not. A leaf of your own reports a transport
/// failure with [`Error::http`].
///
/// By default ([`WholeAnswer`]) the breaker judges whole answers: the response body must be
/// at hand (`AsRef<[u8]>`, such as [`Bytes`](bytes::Bytes)), as
/// [`HttpEndpoint`](crate::transport::HttpEndpoint) gives. Made with
/// [`BreakerLayer::streamed`](super::BreakerLayer::streamed) ([`StreamedAnswer`]) it takes
/// any [`http_body::Body`] and judges the answer by its head, and a gRPC answer by the
/// `grpc-status` of its trailers when the stream ends (see [`StreamedAnswer`]).
///
/// ```
/// use std::convert::Infallible;
/// use discovery_client::breaker::{BreakerConfig, BreakerLayer, BreakerState};
/// use discovery_client::{Error, Instance};
/// use tower::{Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let instance = Instance::new("1", "http://127.0.0.1:8001");
/// let layer = BreakerLayer::new("ratings", &instance, BreakerConfig::default());
/// // An instance that always answers 503.
/// let mut svc = layer.layer(tower::service_fn(|_req: http::Request<()>| async {
///     let mut answer = http::Response::new(bytes::Bytes::new());
///     *answer.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
///     Ok::<_, Infallible>(answer)
/// }));
/// let answer = svc.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
/// assert_eq!(answer.status(), 503);
/// assert_eq!(layer.breaker().state(), BreakerState::Open);
/// // Open: turned away without calling the instance.
/// let refused = svc.ready().await.unwrap().call(http::Request::new(())).await;
/// assert!(matches!(refused, Err(Error::CircuitOpen { .. })));
/// # }
/// ```
pub struct BreakerService<S, A = WholeAnswer> {
    /// The instance's own service (a timeout around an HTTP endpoint, typically).
    inner: S,
    /// The instance's breaker and reporting, shared by every clone.
    gate: Gate,
    /// Decides whether an attempt failed.
    classifier: Arc<dyn Classify>,
    /// A permit taken ahead of the next call by [`AcquirePermit::try_acquire`].
    permit: Option<Permit>,
    /// How answers are judged: whole, or by their head and trailers.
    answers: PhantomData<fn() -> A>,
}

impl<S, A> BreakerService<S, A> {
    pub(crate) fn new(inner: S, gate: Gate, classifier: Arc<dyn Classify>) -> Self {
        Self {
            inner,
            gate,
            classifier,
            permit: None,
            answers: PhantomData,
        }
    }

    /// The permit for a call made at `started`: the one taken ahead, or one asked for now.
    /// Without one, counts the refusal and answers [`Error::CircuitOpen`].
    fn permit_for_call(&mut self, started: Instant) -> Result<Permit, Error> {
        let permit = match self.permit.take() {
            Some(permit) => Some(permit),
            None => self.gate.acquire(started),
        };
        match permit {
            Some(permit) => {
                self.gate.sending();
                Ok(permit)
            }
            None => {
                self.gate.rejected();
                Err(Error::CircuitOpen {
                    address: self.address().to_string(),
                })
            }
        }
    }

    /// The instance's breaker.
    pub fn breaker(&self) -> &Arc<super::Breaker> {
        self.gate.breaker()
    }

    /// The address of the instance this service guards.
    pub fn address(&self) -> &str {
        self.gate.address()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone, A> Clone for BreakerService<S, A> {
    /// A clone shares the breaker; a permit taken ahead stays with the original.
    fn clone(&self) -> Self {
        Self::new(
            self.inner.clone(),
            self.gate.clone(),
            Arc::clone(&self.classifier),
        )
    }
}

impl<S: fmt::Debug, A> fmt::Debug for BreakerService<S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerService")
            .field("address", &self.address())
            .field("state", &self.breaker().state())
            .field("permit", &self.permit.is_some())
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, B, ResB> Service<http::Request<B>> for BreakerService<S, WholeAnswer>
where
    S: Service<http::Request<B>, Response = http::Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: AsRef<[u8]>,
{
    type Response = http::Response<ResB>;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The breaker never holds readiness back: an open breaker turns calls away in `call`.
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::from_leaf(e.into(), self.gate.address()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        match self.permit_for_call(started) {
            Ok(permit) => ResponseFuture::called(
                self.inner.call(request),
                permit,
                self.gate.clone(),
                Arc::clone(&self.classifier),
                started,
            ),
            Err(refused) => ResponseFuture::rejected(refused),
        }
    }
}

impl<S, B, ResB> Service<http::Request<B>> for BreakerService<S, StreamedAnswer>
where
    S: Service<http::Request<B>, Response = http::Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: http_body::Body,
{
    type Response = http::Response<JudgedBody<ResB>>;
    type Error = Error;
    type Future = StreamedResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The breaker never holds readiness back: an open breaker turns calls away in `call`.
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::from_leaf(e.into(), self.gate.address()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        match self.permit_for_call(started) {
            Ok(permit) => StreamedResponseFuture::called(
                self.inner.call(request),
                Verdict::new(
                    permit,
                    self.gate.clone(),
                    Arc::clone(&self.classifier),
                    started,
                ),
            ),
            Err(refused) => StreamedResponseFuture::rejected(refused),
        }
    }
}

/// A per-instance service whose breaker a balancer can ask for a permit before calling it.
///
/// [`Balancer`](crate::balance::Balancer) walks its endpoints and calls
/// [`try_acquire`](AcquirePermit::try_acquire) on each candidate; the first that is granted
/// a permit receives the next call, which then uses that permit instead of asking the breaker
/// again. A permit that will not be used is handed back with
/// [`release`](AcquirePermit::release) (it matters in Retest, where only one probe may be
/// out at a time).
///
/// [`BreakerService`] implements it; put the breaker outermost in each endpoint's stack (your
/// own per-instance middleware goes inside it), or implement `AcquirePermit` for your
/// wrapper by delegating to the breaker inside.
///
/// ```
/// use discovery_client::breaker::{AcquirePermit, BreakerConfig, BreakerLayer};
/// use discovery_client::Instance;
/// use tokio::time::Instant;
/// use tower::Layer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let instance = Instance::new("1", "http://127.0.0.1:8001");
/// let layer = BreakerLayer::new("ratings", &instance, BreakerConfig::default());
/// let mut svc = layer.layer(tower::service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(bytes::Bytes::new()))
/// }));
/// assert!(svc.try_acquire(Instant::now()), "a closed breaker grants a permit");
/// svc.release();
/// # }
/// ```
pub trait AcquirePermit {
    /// Asks the breaker for a permit to send the next call at `now`; `true` when granted.
    /// The permit is kept for the next call. Refused, without asking the breaker, while the
    /// instance is left alone after it pushed back.
    fn try_acquire(&mut self, now: Instant) -> bool;

    /// Hands back a permit taken by [`try_acquire`](AcquirePermit::try_acquire) that will
    /// not be used.
    fn release(&mut self);

    /// How much longer the instance is left alone at `now` after it pushed back (a 429, or
    /// a 503 with `Retry-After`); `None` if it is not, the default.
    fn pushed_back_for(&self, now: Instant) -> Option<Duration> {
        let _ = now;
        None
    }
}

impl<S, A> AcquirePermit for BreakerService<S, A> {
    fn try_acquire(&mut self, now: Instant) -> bool {
        if self.permit.is_none() {
            if self.gate.avoided_for(now).is_some() {
                return false;
            }
            self.permit = self.gate.acquire(now);
        }
        self.permit.is_some()
    }

    fn release(&mut self) {
        self.permit = None;
    }

    fn pushed_back_for(&self, now: Instant) -> Option<Duration> {
        self.gate.avoided_for(now)
    }
}
