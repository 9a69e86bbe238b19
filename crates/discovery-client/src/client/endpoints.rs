//! Turning discovery's instance sets into endpoints with breakers, and reporting what
//! happens to them.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::balance::Endpoint;
use crate::breaker::{Breaker, BreakerConfig, BreakerState, Transition};
use crate::discovery::{DiscoveryReport, InstanceSet};
use crate::events::{Event, EventSender};

/// The endpoints in use right now; `None` until discovery has answered once.
pub(crate) type EndpointSet = Option<Arc<[Endpoint]>>;

/// What the request path and the background tasks of one client share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The service name, for logs and events.
    pub(crate) service: String,
    /// Where typed events go.
    pub(crate) events: EventSender,
    /// Breakers by instance address, so they survive discovery refreshes.
    breakers: DashMap<String, Arc<Breaker>>,
    /// Settings for new breakers.
    breaker_config: BreakerConfig,
}

impl Shared {
    pub(crate) fn new(service: String, events: EventSender, breaker_config: BreakerConfig) -> Self {
        Self {
            service,
            events,
            breakers: DashMap::new(),
            breaker_config,
        }
    }

    fn breaker_for(&self, address: &str) -> Arc<Breaker> {
        if let Some(existing) = self.breakers.get(address) {
            return Arc::clone(&existing);
        }
        let entry = self
            .breakers
            .entry(address.to_string())
            .or_insert_with(|| Arc::new(Breaker::new(self.breaker_config.clone())));
        Arc::clone(&entry)
    }

    /// Logs a breaker transition with the exact words users look for, publishes it as an
    /// event, and, when the breaker opened, arms a timer that moves it to Retest on time
    /// even if no request comes along.
    pub(crate) fn report(self: &Arc<Self>, endpoint: &Endpoint, transition: Transition) {
        let service = &self.service;
        let address = &endpoint.instance.address;
        match transition {
            Transition::Opened { retest_at } => {
                tracing::warn!(service = %service, instance = %endpoint.instance.id, address = %address, state = "open",
                    "OPEN breaker on [{service} at {address}]");
                self.events.send(Event::BreakerOpened {
                    service: service.clone(),
                    address: address.clone(),
                });
                let shared = Arc::clone(self);
                let endpoint = endpoint.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(retest_at).await;
                    if let Some(t) = endpoint.breaker.poll_retest(Instant::now()) {
                        shared.report(&endpoint, t);
                    }
                });
            }
            Transition::Retesting => {
                tracing::warn!(service = %service, instance = %endpoint.instance.id, address = %address, state = "retest",
                    "RETEST breaker on [{service} at {address}]");
                self.events.send(Event::BreakerRetesting {
                    service: service.clone(),
                    address: address.clone(),
                });
            }
            Transition::Closed => {
                tracing::info!(service = %service, instance = %endpoint.instance.id, address = %address, state = "closed",
                    "CLOSE breaker on [{service} at {address}]");
                self.events.send(Event::BreakerClosed {
                    service: service.clone(),
                    address: address.clone(),
                });
            }
        }
    }

    /// Builds endpoints for a new instance set, reusing each address's breaker, and logs
    /// which instances came and went since `previous`.
    fn endpoints_for(&self, set: &InstanceSet, previous: &[Endpoint]) -> Arc<[Endpoint]> {
        let endpoints: Vec<Endpoint> = set
            .iter()
            .map(|instance| Endpoint {
                instance: instance.clone(),
                breaker: self.breaker_for(&instance.address),
            })
            .collect();
        let service = &self.service;
        for added in endpoints
            .iter()
            .filter(|e| !previous.iter().any(|p| p.instance == e.instance))
        {
            let (id, address) = (&added.instance.id, &added.instance.address);
            tracing::info!(service = %service, instance = %id, address = %address,
                "{service} instance {id} added: {address}");
            self.events.send(Event::InstanceAdded {
                service: service.clone(),
                id: id.clone(),
                address: address.clone(),
            });
        }
        for removed in previous
            .iter()
            .filter(|p| !endpoints.iter().any(|e| e.instance == p.instance))
        {
            let (id, address) = (&removed.instance.id, &removed.instance.address);
            tracing::info!(service = %service, instance = %id, address = %address,
                "{service} instance {id} removed: {address}");
            self.events.send(Event::InstanceRemoved {
                service: service.clone(),
                id: id.clone(),
                address: address.clone(),
            });
        }
        // Forget healthy breakers of departed addresses; keep open ones so an instance that
        // flaps out and back in does not get a clean slate.
        self.breakers.retain(|address, breaker| {
            breaker.state() != BreakerState::Closed
                || endpoints.iter().any(|e| &e.instance.address == address)
        });
        endpoints.into()
    }
}

/// Follows discovery: rebuilds the endpoint set on every new instance set and logs discovery
/// outages once each. Ends when discovery ends or nobody reads the endpoints any more.
pub(crate) async fn follow_discovery(
    shared: Arc<Shared>,
    mut sets: watch::Receiver<Option<InstanceSet>>,
    mut reports: mpsc::UnboundedReceiver<DiscoveryReport>,
    out: watch::Sender<EndpointSet>,
) {
    let service = shared.service.clone();
    let mut current: Arc<[Endpoint]> = Arc::from(Vec::new());
    let mut reports_open = true;
    loop {
        tokio::select! {
            changed = sets.changed() => {
                if changed.is_err() {
                    return;
                }
                let set = sets.borrow_and_update().clone();
                if let Some(set) = set {
                    current = shared.endpoints_for(&set, &current);
                    if out.send(Some(Arc::clone(&current))).is_err() {
                        return;
                    }
                }
            }
            report = reports.recv(), if reports_open => match report {
                Some(DiscoveryReport::Outage(reason)) => {
                    tracing::warn!(service = %service, reason = %reason,
                        "discovery outage for {service}, keeping the last known instances: {reason}");
                    shared.events.send(Event::DiscoveryOutage { service: service.clone(), reason });
                    // Nothing known yet: say so now rather than make every call wait for
                    // discovery's first answer.
                    if out.borrow().is_none() && out.send(Some(Arc::clone(&current))).is_err() {
                        return;
                    }
                }
                Some(DiscoveryReport::Recovered) => {
                    tracing::info!(service = %service, "discovery for {service} recovered");
                    shared.events.send(Event::DiscoveryRecovered { service: service.clone() });
                }
                None => reports_open = false,
            },
        }
    }
}

/// A snapshot of one instance for status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// Instance id.
    pub id: String,
    /// Instance address.
    pub address: String,
    /// Its breaker's state.
    pub state: BreakerState,
}

pub(crate) fn status_of(endpoints: &[Endpoint]) -> Vec<InstanceStatus> {
    endpoints
        .iter()
        .map(|e| InstanceStatus {
            id: e.instance.id.clone(),
            address: e.instance.address.clone(),
            state: e.breaker.state(),
        })
        .collect()
}
