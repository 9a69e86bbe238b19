//! [`Breakers`]: one service's breakers, kept by instance address.

use std::sync::Arc;

use dashmap::DashMap;

use std::time::Duration;

use super::{Breaker, BreakerConfig, BreakerLayer, BreakerState, Gate, MAX_WAIT, PushBack};
use crate::Instance;
use crate::classify::{Classify, DefaultClassifier};
use crate::events::EventBus;
use crate::stall::StallMonitor;
use crate::telemetry::{InstanceStats, ServiceTelemetry};

/// The breakers of one service's instances, kept by address so that an instance keeps its
/// breaker (and an open breaker stays open) when discovery reports the set again.
///
/// [`layer`](Breakers::layer) gives the [`BreakerLayer`] for an instance, to use when
/// discovery reports it (see [`InstanceStream::endpoints`](crate::discovery::InstanceStream::endpoints)).
/// Cheap to clone; clones share the breakers.
///
/// ```
/// use std::sync::Arc;
/// use discovery_client::breaker::{BreakerConfig, Breakers};
/// use discovery_client::events::EventBus;
/// use discovery_client::Instance;
///
/// let breakers = Breakers::new("ratings", BreakerConfig::default()).events(EventBus::new(64));
/// let one = breakers.layer(&Instance::new("1", "http://127.0.0.1:8001"));
/// // The same address gets the same breaker, whatever the instance's id.
/// let again = breakers.layer(&Instance::new("1b", "http://127.0.0.1:8001"));
/// assert!(Arc::ptr_eq(one.breaker(), again.breaker()));
/// ```
#[derive(Debug, Clone)]
pub struct Breakers {
    /// Service name and event bus for the log lines, events and metrics of every breaker.
    telemetry: ServiceTelemetry,
    /// Settings for new breakers.
    config: BreakerConfig,
    /// Decides whether an attempt failed.
    classifier: Arc<dyn Classify>,
    /// Breakers by instance address, each with the instance's figures.
    by_address: Arc<DashMap<String, Tracked>>,
    /// The longest an instance that pushed back is avoided for.
    max_retry_after: Duration,
    /// The client's record of its own stalls, if it keeps one (given to every gate).
    stalls: Option<StallMonitor>,
}

/// What is kept of one address across discovery refreshes.
#[derive(Debug, Clone)]
struct Tracked {
    /// Its breaker.
    breaker: Arc<Breaker>,
    /// Its attempts, failures and recent latency.
    stats: Arc<InstanceStats>,
    /// Until when it is avoided, after it pushed back.
    push_back: Arc<PushBack>,
}

impl Breakers {
    /// Breakers for `service` with these settings, the
    /// [`DefaultClassifier`] and no event bus.
    pub fn new(service: &str, config: BreakerConfig) -> Self {
        Self::with_telemetry(ServiceTelemetry::new(service, None), config)
    }

    pub(crate) fn with_telemetry(telemetry: ServiceTelemetry, config: BreakerConfig) -> Self {
        Self {
            telemetry,
            config,
            classifier: Arc::new(DefaultClassifier),
            by_address: Arc::new(DashMap::new()),
            max_retry_after: MAX_WAIT,
            stalls: None,
        }
    }

    /// Avoids an instance that pushed back at most this long, whatever it asked.
    pub(crate) fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Excuses timeouts during which the client itself was stalled, as `stalls` records.
    pub(crate) fn stall_monitor(mut self, stalls: StallMonitor) -> Self {
        self.stalls = Some(stalls);
        self
    }

    /// Judges attempts with this rule instead.
    pub fn classifier(mut self, classifier: impl Classify) -> Self {
        self.classifier = Arc::new(classifier);
        self
    }

    pub(crate) fn shared_classifier(mut self, classifier: Arc<dyn Classify>) -> Self {
        self.classifier = classifier;
        self
    }

    /// Publishes every breaker's transitions to `events`.
    pub fn events(mut self, events: EventBus) -> Self {
        self.telemetry = self.telemetry.with_events(events);
        self
    }

    /// The breaker for this address, made on first use.
    pub fn breaker(&self, address: &str) -> Arc<Breaker> {
        self.tracked(address).breaker
    }

    /// What is kept for this address, made on first use.
    fn tracked(&self, address: &str) -> Tracked {
        if let Some(existing) = self.by_address.get(address) {
            return existing.clone();
        }
        let entry = self
            .by_address
            .entry(address.to_string())
            .or_insert_with(|| Tracked {
                breaker: Arc::new(Breaker::new(self.config.clone())),
                stats: Arc::new(InstanceStats::default()),
                push_back: Arc::new(PushBack::new(self.max_retry_after)),
            });
        entry.clone()
    }

    /// The layer that guards `instance` with the breaker of its address.
    pub fn layer(&self, instance: &Instance) -> BreakerLayer {
        BreakerLayer::from_parts(self.gate(instance), Arc::clone(&self.classifier))
    }

    /// The gate of `instance`: the breaker of its address, with reporting for it.
    pub(crate) fn gate(&self, instance: &Instance) -> Gate {
        let Tracked {
            breaker,
            stats,
            push_back,
        } = self.tracked(&instance.address);
        let telemetry = self.telemetry.instance(instance, stats, breaker.state());
        Gate::new(breaker, Arc::new(telemetry), push_back).with_stalls(self.stalls.clone())
    }

    /// Forgets the closed breakers of addresses for which `is_current` is false. Breakers that
    /// are not closed are kept, so an instance that flaps out and back in does not get a
    /// clean slate.
    pub fn forget_departed(&self, is_current: impl Fn(&str) -> bool) {
        self.by_address.retain(|address, tracked| {
            tracked.breaker.state() != BreakerState::Closed || is_current(address)
        });
    }
}
