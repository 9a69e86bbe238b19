//! Typed events that applications can subscribe to instead of parsing logs.
//!
//! Every breaker transition and discovery change is published on an [`EventBus`], a broadcast
//! channel. [`ServiceClient::subscribe`](crate::ServiceClient::subscribe) reads the client's
//! own bus; the tower pieces ([`Breakers`](crate::breaker::Breakers),
//! [`BreakerLayer`](crate::breaker::BreakerLayer),
//! [`Balancer`](crate::balance::Balancer),
//! [`InstanceStream`](crate::discovery::InstanceStream)) publish to a bus you hand them, so a
//! hand-built tower stack gives the same events. A subscriber that falls behind loses the
//! oldest events (and is told so by `RecvError::Lagged`), never blocks calls.
//!
//! ```
//! use discovery_client::events::{Event, EventBus};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let bus = EventBus::new(64);
//! let mut events = bus.subscribe();
//! bus.send(Event::AllInstancesDown { service: "ratings".into() });
//! assert_eq!(
//!     events.recv().await.unwrap(),
//!     Event::AllInstancesDown { service: "ratings".into() }
//! );
//! # }
//! ```

use tokio::sync::broadcast;

/// Something that happened to a service's instances.
///
/// ```
/// use discovery_client::{Event, ServiceClient, StaticDiscovery};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), discovery_client::Error> {
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(StaticDiscovery::new(["http://127.0.0.1:8001"]))
///     .build()?;
/// let mut events = ratings.subscribe();
/// tokio::spawn(async move {
///     while let Ok(event) = events.recv().await {
///         match event {
///             Event::BreakerOpened { address, .. } => println!("{address} is out"),
///             Event::BreakerClosed { address, .. } => println!("{address} is back"),
///             _ => {}
///         }
///     }
/// });
/// # Ok(()) }
/// ```
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
    /// An attempt had not answered within the hedging delay, so the call raced a second
    /// attempt on another instance.
    Hedged {
        /// Service name.
        service: String,
        /// Id of the instance that had not answered.
        slow: String,
        /// Id of the instance the hedge went to.
        hedge: String,
    },
    /// A call found no instance whose breaker grants a permit.
    AllInstancesDown {
        /// Service name.
        service: String,
    },
}

/// A broadcast channel of [`Event`]s: every subscriber gets every event sent after it
/// subscribed. Cheap to clone; clones send into the same channel. Sending with no subscriber
/// is cheap and never fails.
///
/// ```
/// use discovery_client::events::EventBus;
///
/// let bus = EventBus::new(1024);
/// let _receiver = bus.subscribe();
/// let same_channel = bus.clone();
/// # drop(same_channel);
/// ```
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    /// A bus that keeps up to `capacity` events for slow subscribers (at least 1).
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// Publishes an event to every current subscriber.
    pub fn send(&self, event: Event) {
        // An error only means nobody is subscribed right now.
        let _ = self.tx.send(event);
    }

    /// Receives every event sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

impl Default for EventBus {
    /// A bus that keeps 1024 events for slow subscribers.
    fn default() -> Self {
        Self::new(1024)
    }
}
