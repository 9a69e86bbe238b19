//! [`BreakerLayer`]: wraps one instance's service in a [`BreakerService`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use tower::Layer;

use super::{Breaker, BreakerConfig, BreakerService, Breakers, Gate, StreamedAnswer, WholeAnswer};
use crate::Instance;
use crate::classify::Classify;
use crate::events::EventBus;

/// Wraps one instance's service in a [`BreakerService`] that shares this layer's breaker.
///
/// Made for one instance: by [`Breakers::layer`] (breakers kept by address for a whole
/// service, the usual way with discovery), or by [`BreakerLayer::new`] with a breaker of its
/// own. Every service it makes shares the same breaker, so clones of a stack see one state.
///
/// ```
/// use std::time::Duration;
/// use discovery_client::breaker::{BreakerConfig, BreakerLayer, FailurePolicy};
/// use discovery_client::classify::DefaultClassifier;
/// use discovery_client::events::EventBus;
/// use discovery_client::Instance;
///
/// let bus = EventBus::new(64);
/// let config = BreakerConfig {
///     policy: FailurePolicy::ConsecutiveFailures(3),
///     retest_delay: Duration::from_secs(10),
///     ..BreakerConfig::default()
/// };
/// let layer = BreakerLayer::new("ratings", &Instance::new("1", "http://127.0.0.1:8001"), config)
///     .classifier(DefaultClassifier)
///     .events(bus.clone());
/// # let _ = layer;
/// ```
///
/// [`streamed`](BreakerLayer::streamed) makes the layer for services whose answers are
/// streamed (any [`http_body::Body`], gRPC included): see [`StreamedAnswer`].
pub struct BreakerLayer<A = WholeAnswer> {
    /// The instance's breaker and its reporting, shared by every service this layer makes.
    gate: Gate,
    /// Decides whether an attempt failed.
    classifier: Arc<dyn Classify>,
    /// How the services it makes judge answers.
    answers: PhantomData<fn() -> A>,
}

impl<A> Clone for BreakerLayer<A> {
    fn clone(&self) -> Self {
        Self {
            gate: self.gate.clone(),
            classifier: Arc::clone(&self.classifier),
            answers: PhantomData,
        }
    }
}

impl BreakerLayer {
    /// A layer for `instance` of `service` with a breaker of its own, the
    /// [`DefaultClassifier`](crate::classify::DefaultClassifier) and no event bus.
    pub fn new(service: &str, instance: &Instance, config: BreakerConfig) -> Self {
        Breakers::new(service, config).layer(instance)
    }

    pub(crate) fn from_parts(gate: Gate, classifier: Arc<dyn Classify>) -> Self {
        Self {
            gate,
            classifier,
            answers: PhantomData,
        }
    }

    /// The same layer for services whose answers are streamed: any response body, judged
    /// by its head, and a gRPC answer by its `grpc-status` (see [`StreamedAnswer`]).
    ///
    /// ```
    /// use discovery_client::breaker::{BreakerConfig, BreakerLayer};
    /// use discovery_client::Instance;
    ///
    /// let instance = Instance::new("1", "http://127.0.0.1:50051");
    /// let layer = BreakerLayer::new("ratings", &instance, BreakerConfig::default()).streamed();
    /// # let _ = layer;
    /// ```
    pub fn streamed(self) -> BreakerLayer<StreamedAnswer> {
        BreakerLayer {
            gate: self.gate,
            classifier: self.classifier,
            answers: PhantomData,
        }
    }
}

impl<A> BreakerLayer<A> {
    /// Judges attempts with this rule instead.
    pub fn classifier(mut self, classifier: impl Classify) -> Self {
        self.classifier = Arc::new(classifier);
        self
    }

    /// Publishes breaker transitions to `events`.
    pub fn events(mut self, events: EventBus) -> Self {
        let state = self.gate.breaker().state();
        let telemetry = self.gate.telemetry().with_events(events, state);
        self.gate = self.gate.with_telemetry(Arc::new(telemetry));
        self
    }

    /// The breaker every service made by this layer shares.
    pub fn breaker(&self) -> &Arc<Breaker> {
        self.gate.breaker()
    }

    /// The gate every service made by this layer shares.
    #[cfg(feature = "grpc")]
    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
    }
}

impl<S, A> Layer<S> for BreakerLayer<A> {
    type Service = BreakerService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService::new(inner, self.gate.clone(), Arc::clone(&self.classifier))
    }
}

impl<A> fmt::Debug for BreakerLayer<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("address", &self.gate.address())
            .field("state", &self.gate.breaker().state())
            .field("classifier", &self.classifier)
            .finish()
    }
}
