//! [`BreakerService`]: one instance's service, guarded by its [`Breaker`].

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower::Service;

use super::future::{BodyCheck, Classified, NoCheck, ResponseFuture};
use super::{Breaker, Permit};
use crate::Error;
use crate::classify::Classify;
use crate::telemetry::InstanceTelemetry;

/// A per-instance service guarded by a circuit [`Breaker`]; made by a
/// [`BreakerLayer`](super::BreakerLayer).
///
/// - [`poll_ready`](Service::poll_ready) only asks the inner service: an open breaker never
///   makes it fail or wait.
/// - [`call`](Service::call) asks the breaker for a [`Permit`]. Without one (the breaker is
///   open, or in Retest with its single probe already out) the call is turned away at once
///   with a ready [`Error::CircuitOpen`] and the inner service is not called.
/// - Admitted calls are timed, judged by the [`Classify`] rule (5xx, transport errors and
///   timeouts are failures; 4xx is the caller's problem), and the outcome goes to the
///   breaker. Transitions are logged (`OPEN breaker on [ratings at http://..]`, `RETEST ..`,
///   `CLOSE ..`), published as [`Event`](crate::Event)s and counted in the metrics; an opened
///   breaker moves to Retest on time by itself.
/// - A balancer can take the permit ahead of the call with [`Admit::try_admit`], so that it
///   only picks instances that will accept the request.
///
/// The breaker judges whole answers: the response body must be at hand (`AsRef<[u8]>`, such
/// as [`Bytes`](bytes::Bytes)), as [`HttpEndpoint`](crate::transport::HttpEndpoint) gives.
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
pub struct BreakerService<S> {
    /// The instance's own service (a timeout around an HTTP endpoint, typically).
    inner: S,
    /// The instance's breaker, shared by every clone and kept across discovery refreshes.
    breaker: Arc<Breaker>,
    /// Log lines, events and metrics for this instance.
    telemetry: Arc<InstanceTelemetry>,
    /// Decides whether an attempt failed.
    classifier: Arc<dyn Classify>,
    /// Leave taken ahead of the next call by [`Admit::try_admit`].
    admitted: Option<Permit>,
}

impl<S> BreakerService<S> {
    pub(crate) fn new(
        inner: S,
        breaker: Arc<Breaker>,
        telemetry: Arc<InstanceTelemetry>,
        classifier: Arc<dyn Classify>,
    ) -> Self {
        Self {
            inner,
            breaker,
            telemetry,
            classifier,
            admitted: None,
        }
    }

    /// The instance's breaker.
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// The address of the instance this service guards.
    pub fn address(&self) -> &str {
        self.telemetry.address()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Asks the breaker for leave to send one request at `now`, reporting the transition this
    /// causes (an Open breaker whose delay has passed moves to Retest).
    pub(crate) fn acquire(&self, now: Instant) -> Option<Permit> {
        let (permit, transition) = self.breaker.try_acquire(now);
        if let Some(t) = transition {
            self.telemetry.transition(&self.breaker, t);
        }
        permit
    }

    /// Sends `request` under `permit` (from this service's breaker) at `now`: logs
    /// `{service} using instance {id}: {address}`, then times, judges and records the
    /// attempt. With `check`, a 2xx body that it refuses becomes [`Error::Decode`] (an
    /// instance failure).
    pub(crate) fn call_classified<B, C: BodyCheck>(
        &mut self,
        permit: Permit,
        request: http::Request<B>,
        check: Option<C>,
        now: Instant,
    ) -> Classified<S::Future, C>
    where
        S: Service<http::Request<B>>,
    {
        debug_assert!(Arc::ptr_eq(permit.breaker(), &self.breaker));
        self.telemetry.using();
        let started = now;
        Classified::new(
            self.inner.call(request),
            permit,
            started,
            Arc::clone(&self.telemetry),
            Arc::clone(&self.classifier),
            check,
        )
    }
}

impl<S> BreakerService<S> {
    /// [`call_classified`](Self::call_classified) with the inner future boxed, so that the
    /// attempt can be moved after it was first polled: a hedged call races two of these and
    /// hands the slower one to a task of its own with [`Classified::detach`].
    pub(crate) fn call_detachable<B, C: BodyCheck>(
        &mut self,
        permit: Permit,
        request: http::Request<B>,
        check: Option<C>,
        now: Instant,
    ) -> Classified<Pin<Box<S::Future>>, C>
    where
        S: Service<http::Request<B>>,
    {
        debug_assert!(Arc::ptr_eq(permit.breaker(), &self.breaker));
        self.telemetry.using();
        Classified::new(
            Box::pin(self.inner.call(request)),
            permit,
            now,
            Arc::clone(&self.telemetry),
            Arc::clone(&self.classifier),
            check,
        )
    }
}

impl<S: Clone> Clone for BreakerService<S> {
    /// A clone shares the breaker; leave taken by [`Admit::try_admit`] stays with the original.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breaker: Arc::clone(&self.breaker),
            telemetry: Arc::clone(&self.telemetry),
            classifier: Arc::clone(&self.classifier),
            admitted: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for BreakerService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerService")
            .field("address", &self.address())
            .field("state", &self.breaker.state())
            .field("admitted", &self.admitted.is_some())
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, B, ResB> Service<http::Request<B>> for BreakerService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResB>>,
    S::Error: Into<Error>,
    ResB: AsRef<[u8]>,
{
    type Response = http::Response<ResB>;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The breaker never holds readiness back: an open breaker turns calls away in `call`.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let now = Instant::now();
        let permit = match self.admitted.take() {
            Some(permit) => Some(permit),
            None => self.acquire(now),
        };
        match permit {
            Some(permit) => {
                ResponseFuture::called(self.call_classified(permit, request, None::<NoCheck>, now))
            }
            None => {
                self.telemetry.rejected();
                ResponseFuture::rejected(Error::CircuitOpen {
                    address: self.address().to_string(),
                })
            }
        }
    }
}

/// A per-instance service whose breaker a balancer can ask before calling it.
///
/// [`RoundRobin`](crate::balance::RoundRobin) walks its endpoints and calls
/// [`try_admit`](Admit::try_admit) on each in turn; the first that grants leave receives the
/// next call, which then uses that leave instead of asking the breaker again. Leave that will
/// not be used is handed back with [`release`](Admit::release) (it matters in Retest, where
/// only one probe may be out at a time).
///
/// [`BreakerService`] implements it; put the breaker outermost in each endpoint's stack (your
/// own per-instance middleware goes inside it), or implement `Admit` for your wrapper by
/// delegating to the breaker inside.
///
/// ```
/// use discovery_client::breaker::{Admit, BreakerConfig, BreakerLayer};
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
/// assert!(svc.try_admit(Instant::now()), "a closed breaker admits");
/// svc.release();
/// # }
/// ```
pub trait Admit {
    /// Asks the breaker for leave to send the next call at `now`; `true` when granted. The
    /// leave is kept for the next call.
    fn try_admit(&mut self, now: Instant) -> bool;

    /// Hands back leave taken by [`try_admit`](Admit::try_admit) that will not be used.
    fn release(&mut self);
}

impl<S> Admit for BreakerService<S> {
    fn try_admit(&mut self, now: Instant) -> bool {
        if self.admitted.is_none() {
            self.admitted = self.acquire(now);
        }
        self.admitted.is_some()
    }

    fn release(&mut self) {
        self.admitted = None;
    }
}
