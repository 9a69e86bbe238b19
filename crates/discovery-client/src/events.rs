//! Typed events that applications can subscribe to instead of parsing logs.
//!
//! Every breaker transition and discovery change is published on a broadcast channel
//! ([`ServiceClient::subscribe`](crate::ServiceClient::subscribe)). A subscriber that falls
//! behind loses the oldest events (and is told so by `RecvError::Lagged`), never blocks calls.

use tokio::sync::broadcast;

/// Something that happened to a service's instances.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The instance's breaker opened: no request goes to it until the retest delay passes.
    BreakerOpened {
        /// Service name.
        service: String,
        /// Instance address.
        address: String,
    },
    /// The retest delay passed: one probe may go to the instance.
    BreakerRetesting {
        /// Service name.
        service: String,
        /// Instance address.
        address: String,
    },
    /// The probe succeeded: the instance takes traffic again.
    BreakerClosed {
        /// Service name.
        service: String,
        /// Instance address.
        address: String,
    },
    /// Discovery reported a new instance.
    InstanceAdded {
        /// Service name.
        service: String,
        /// Instance id.
        id: String,
        /// Instance address.
        address: String,
    },
    /// Discovery no longer reports this instance.
    InstanceRemoved {
        /// Service name.
        service: String,
        /// Instance id.
        id: String,
        /// Instance address.
        address: String,
    },
    /// The discovery source became unreachable; the last known instances are kept.
    DiscoveryOutage {
        /// Service name.
        service: String,
        /// What failed.
        reason: String,
    },
    /// The discovery source answers again.
    DiscoveryRecovered {
        /// Service name.
        service: String,
    },
    /// A call found no instance that admits a request.
    AllInstancesDown {
        /// Service name.
        service: String,
    },
}

/// Sends events to every subscriber; sending with no subscriber is free and never fails.
#[derive(Debug, Clone)]
pub(crate) struct EventSender {
    tx: broadcast::Sender<Event>,
}

impl EventSender {
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    pub(crate) fn send(&self, event: Event) {
        // An error only means nobody is subscribed right now.
        let _ = self.tx.send(event);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
