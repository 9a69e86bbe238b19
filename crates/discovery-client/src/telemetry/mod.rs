//! What the request path tells the outside world, in one place: the exact log lines, the
//! typed [`Event`]s, the metrics, and the per-instance figures of
//! [`InstanceStatus`](crate::InstanceStatus) ([`InstanceStats`]).
//!
//! The tower pieces and [`ServiceClient`](crate::ServiceClient) both report through these two
//! types, so the words users grep for (`ratings using instance 1: ...`, `OPEN breaker on
//! [...]`, `RETEST ...`, `CLOSE ...`, `ratings: all services are down`) and the metric names
//! have a single source. Metric handles are registered once, when a service or an instance is
//! first seen, so recording on the hot path is an atomic add with no lookup or allocation.
//! (A consequence, as with any `metrics` handle: install the recorder before building clients
//! or stacks.)

mod stats;

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::breaker::{Breaker, BreakerState, Transition};
use crate::classify::Outcome;
use crate::events::{Event, EventBus};
use crate::{Error, Instance};

pub(crate) use stats::InstanceStats;

pub(crate) const REQUESTS_TOTAL: &str = "discovery_client_requests_total";
pub(crate) const REQUEST_DURATION: &str = "discovery_client_request_duration_seconds";
pub(crate) const BREAKER_STATE: &str = "discovery_client_breaker_state";
pub(crate) const BREAKER_TRANSITIONS: &str = "discovery_client_breaker_transitions_total";
pub(crate) const CACHE_TOTAL: &str = "discovery_client_cache_total";
pub(crate) const ALL_DOWN_TOTAL: &str = "discovery_client_all_down_total";
pub(crate) const RETRIES_TOTAL: &str = "discovery_client_retries_total";
pub(crate) const HEDGES_TOTAL: &str = "discovery_client_hedges_total";
pub(crate) const OVERLOADED_TOTAL: &str = "discovery_client_overloaded_total";

/// Describes every metric to the recorder installed now (names, units, help texts).
fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Requests sent to (or turned away from) one instance, by outcome: success, \
         caller_error, failure, rejected, overloaded (the instance pushed back: 429, or 503 \
         with Retry-After)."
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from sending a request to one instance to its classified outcome."
    );
    metrics::describe_gauge!(
        BREAKER_STATE,
        "Breaker state per instance: 0 closed, 1 retest, 2 open."
    );
    metrics::describe_counter!(
        BREAKER_TRANSITIONS,
        Unit::Count,
        "Breaker transitions per instance, by the state moved to: open, retest, closed."
    );
    metrics::describe_counter!(
        CACHE_TOTAL,
        Unit::Count,
        "Cached GETs by result: hit (fresh cache), miss (went upstream), stale (fallback)."
    );
    metrics::describe_counter!(
        ALL_DOWN_TOTAL,
        Unit::Count,
        "Calls that found no instance whose breaker grants a permit."
    );
    metrics::describe_counter!(
        RETRIES_TOTAL,
        Unit::Count,
        "Attempts sent on another instance after an attempt of the same call failed or \
         pushed back."
    );
    metrics::describe_counter!(
        OVERLOADED_TOTAL,
        Unit::Count,
        "Calls that ended overloaded: every instance they could use pushed back."
    );
    metrics::describe_counter!(
        HEDGES_TOTAL,
        Unit::Count,
        "Hedges sent (an attempt on another instance racing one that had not answered \
         in time), by result: won (the hedge gave the call's answer) or lost."
    );
}

/// The value of `discovery_client_breaker_state` for a state.
fn state_value(state: BreakerState) -> f64 {
    match state {
        BreakerState::Closed => 0.0,
        BreakerState::Retest => 1.0,
        BreakerState::Open => 2.0,
    }
}

/// Reporting for one service: its name, where its events go, its service-wide metrics.
#[derive(Debug, Clone)]
pub(crate) struct ServiceTelemetry {
    /// The service name, for every log line, event and metric label.
    service: Arc<str>,
    /// Where typed events go; `None` publishes nothing.
    events: Option<EventBus>,
    /// `discovery_client_all_down_total{service}`.
    all_down: Counter,
    /// `discovery_client_retries_total{service}`.
    retries: Counter,
    /// `discovery_client_hedges_total{service}` by result: won, lost.
    hedges: [Counter; 2],
    /// `discovery_client_overloaded_total{service}`.
    overloaded: Counter,
    /// Asks the service's discovery source for a fresh look (an instance may be gone);
    /// shared by every clone, and handed to the source's
    /// [`DiscoverySink`](crate::discovery::DiscoverySink).
    refresh: Arc<Notify>,
}

impl ServiceTelemetry {
    pub(crate) fn new(service: &str, events: Option<EventBus>) -> Self {
        describe();
        let service: Arc<str> = Arc::from(service);
        let all_down = metrics::counter!(ALL_DOWN_TOTAL, "service" => Arc::clone(&service));
        let retries = metrics::counter!(RETRIES_TOTAL, "service" => Arc::clone(&service));
        let hedges = ["won", "lost"].map(|result| {
            metrics::counter!(HEDGES_TOTAL, "service" => Arc::clone(&service), "result" => result)
        });
        let overloaded = metrics::counter!(OVERLOADED_TOTAL, "service" => Arc::clone(&service));
        Self {
            service,
            events,
            all_down,
            retries,
            hedges,
            overloaded,
            refresh: Arc::new(Notify::new()),
        }
    }

    /// What the discovery source of this service waits on for a fresh look.
    pub(crate) fn refresh_hint(&self) -> Arc<Notify> {
        Arc::clone(&self.refresh)
    }

    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// The same reporting, publishing to `events` from now on.
    pub(crate) fn with_events(mut self, events: EventBus) -> Self {
        self.events = Some(events);
        self
    }

    pub(crate) fn send(&self, event: Event) {
        if let Some(events) = &self.events {
            events.send(event);
        }
    }

    /// Logs `{service}: all services are down`, publishes the event, counts it, and returns the
    /// error for the caller.
    pub(crate) fn all_down(&self) -> Error {
        let service = &*self.service;
        tracing::warn!(service = %service, "{service}: all services are down");
        self.all_down.increment(1);
        self.send(Event::AllInstancesDown {
            service: service.to_string(),
        });
        Error::AllInstancesDown {
            service: service.to_string(),
        }
    }

    /// Logs `{service}: every instance pushed back`, counts it, and returns the error for
    /// the caller: [`Error::Overloaded`] with `retry_after`.
    pub(crate) fn overloaded(&self, retry_after: Option<Duration>) -> Error {
        let service = &*self.service;
        let error = Error::Overloaded {
            service: service.to_string(),
            retry_after,
        };
        tracing::info!(service = %service, retry_after = ?retry_after, "{error}");
        self.overloaded.increment(1);
        error
    }

    /// Counts a retry: an attempt sent after another attempt of the same call failed.
    pub(crate) fn retried(&self) {
        self.retries.increment(1);
    }

    /// Logs `{service} instance {slow} has not answered in {delay}: hedging on instance
    /// {hedge}` and publishes [`Event::Hedged`] as a hedge is sent.
    pub(crate) fn hedging(&self, slow: &str, delay: Duration, hedge: &str) {
        let service = &*self.service;
        tracing::info!(service = %service, instance = %slow, hedge = %hedge,
            "{service} instance {slow} has not answered in {delay:?}: hedging on instance {hedge}");
        self.send(Event::Hedged {
            service: service.to_string(),
            slow: slow.to_string(),
            hedge: hedge.to_string(),
        });
    }

    /// Counts a hedge once its race is decided: `won` if the hedge gave the call's answer.
    pub(crate) fn hedged(&self, won: bool) {
        self.hedges[usize::from(!won)].increment(1);
    }

    /// Per-instance reporting, with metric handles registered now, counting attempts into
    /// `stats`; the breaker-state gauge starts at `state`.
    pub(crate) fn instance(
        &self,
        instance: &Instance,
        stats: Arc<InstanceStats>,
        state: BreakerState,
    ) -> InstanceTelemetry {
        InstanceTelemetry::new(self.clone(), instance, stats, state)
    }

    /// The counters of the response cache: hit, miss, stale.
    pub(crate) fn cache_counters(&self) -> CacheCounters {
        let counter = |result: &'static str| metrics::counter!(CACHE_TOTAL, "service" => Arc::clone(&self.service), "result" => result);
        CacheCounters {
            hit: counter("hit"),
            miss: counter("miss"),
            stale: counter("stale"),
        }
    }

    pub(crate) fn instance_added(&self, instance: &Instance) {
        let (service, id, address) = (&*self.service, &instance.id, &instance.address);
        tracing::info!(service = %service, instance = %id, address = %address,
            "{service} instance {id} added: {address}");
        self.send(Event::InstanceAdded {
            service: service.to_string(),
            id: id.clone(),
            address: address.clone(),
        });
    }

    pub(crate) fn instance_removed(&self, instance: &Instance) {
        let (service, id, address) = (&*self.service, &instance.id, &instance.address);
        tracing::info!(service = %service, instance = %id, address = %address,
            "{service} instance {id} removed: {address}");
        self.send(Event::InstanceRemoved {
            service: service.to_string(),
            id: id.clone(),
            address: address.clone(),
        });
    }

    pub(crate) fn discovery_outage(&self, reason: &str) {
        let service = &*self.service;
        tracing::warn!(service = %service, reason = %reason,
            "discovery outage for {service}, keeping the last known instances: {reason}");
        self.send(Event::DiscoveryOutage {
            service: service.to_string(),
            reason: reason.to_string(),
        });
    }

    pub(crate) fn discovery_recovered(&self) {
        let service = &*self.service;
        tracing::info!(service = %service, "discovery for {service} recovered");
        self.send(Event::DiscoveryRecovered {
            service: service.to_string(),
        });
    }
}

/// `discovery_client_cache_total{service,result}` handles.
#[derive(Debug, Clone)]
pub(crate) struct CacheCounters {
    pub(crate) hit: Counter,
    pub(crate) miss: Counter,
    pub(crate) stale: Counter,
}

/// Reporting for one instance of a service: its log lines, events, metrics and figures.
#[derive(Debug)]
pub(crate) struct InstanceTelemetry {
    /// The service's reporting (name, events).
    service: ServiceTelemetry,
    /// Attempts, failures and recent latency, kept by address with the breaker.
    stats: Arc<InstanceStats>,
    /// The instance's id, for log lines.
    id: String,
    /// The instance's address, for log lines, events and the `instance` metric label.
    address: String,
    /// `discovery_client_requests_total` by outcome: success, caller_error, failure, rejected,
    /// overloaded.
    requests: [Counter; 5],
    /// `discovery_client_request_duration_seconds`.
    duration: Histogram,
    /// `discovery_client_breaker_state`.
    state: Gauge,
    /// `discovery_client_breaker_transitions_total` by target: open, retest, closed.
    transitions: [Counter; 3],
}

const OUTCOMES: [&str; 5] = [
    "success",
    "caller_error",
    "failure",
    "rejected",
    "overloaded",
];
const TARGETS: [&str; 3] = ["open", "retest", "closed"];

impl InstanceTelemetry {
    fn new(
        service: ServiceTelemetry,
        instance: &Instance,
        stats: Arc<InstanceStats>,
        state: BreakerState,
    ) -> Self {
        let name = Arc::clone(&service.service);
        let address: Arc<str> = Arc::from(instance.address.as_str());
        let requests = OUTCOMES.map(|outcome| {
            metrics::counter!(REQUESTS_TOTAL, "service" => Arc::clone(&name),
                "instance" => Arc::clone(&address), "outcome" => outcome)
        });
        let transitions = TARGETS.map(|to| {
            metrics::counter!(BREAKER_TRANSITIONS, "service" => Arc::clone(&name),
                "instance" => Arc::clone(&address), "to" => to)
        });
        let duration = metrics::histogram!(REQUEST_DURATION, "service" => Arc::clone(&name),
            "instance" => Arc::clone(&address));
        let gauge = metrics::gauge!(BREAKER_STATE, "service" => name, "instance" => address);
        gauge.set(state_value(state));
        Self {
            service,
            stats,
            id: instance.id.clone(),
            address: instance.address.clone(),
            requests,
            duration,
            state: gauge,
            transitions,
        }
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    pub(crate) fn service(&self) -> &str {
        self.service.service()
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The instance's figures.
    pub(crate) fn stats(&self) -> &InstanceStats {
        &self.stats
    }

    /// The same instance's reporting, publishing to `events`; the gauge is set to `state`.
    pub(crate) fn with_events(&self, events: EventBus, state: BreakerState) -> Self {
        let instance = Instance::new(self.id.clone(), self.address.clone());
        let service = self.service.clone().with_events(events);
        Self::new(service, &instance, Arc::clone(&self.stats), state)
    }

    /// Logs `{service} using instance {id}: {address}` for an attempt about to be sent.
    pub(crate) fn using(&self) {
        let (service, id, address) = (self.service.service(), &self.id, &self.address);
        tracing::info!(service = %service, instance = %id, address = %address,
            "{service} using instance {id}: {address}");
    }

    /// Counts one classified attempt and how long it took, in the metrics and the figures.
    pub(crate) fn request(&self, outcome: Outcome, elapsed: Duration) {
        let index = match outcome {
            Outcome::Success => 0,
            Outcome::CallerError => 1,
            Outcome::Failure => 2,
            Outcome::Overloaded => 4,
        };
        self.requests[index].increment(1);
        self.duration.record(elapsed.as_secs_f64());
        self.stats.record(outcome == Outcome::Failure, elapsed);
    }

    /// Counts a request the breaker turned away.
    pub(crate) fn rejected(&self) {
        self.requests[3].increment(1);
    }

    /// Logs `{service} instance {id} pushed back: avoided for {wait}` when it answered 429
    /// (or 503 with `Retry-After`); `asked` is its `Retry-After`, if it said.
    pub(crate) fn pushed_back(&self, asked: Option<Duration>, wait: Duration) {
        let (service, id, address) = (self.service.service(), &self.id, &self.address);
        tracing::info!(service = %service, instance = %id, address = %address,
            retry_after = ?asked, "{service} instance {id} pushed back: avoided for {wait:?}");
    }

    /// Logs a breaker transition with the exact words users look for, publishes it as an
    /// event, updates the metrics, and, when the breaker opened, arms a timer that moves it
    /// to Retest on time even if no request comes along.
    pub(crate) fn transition(self: &Arc<Self>, breaker: &Arc<Breaker>, transition: Transition) {
        let (service, id, address) = (self.service.service(), &self.id, &self.address);
        let (state, event) = match transition {
            Transition::Opened { retest_at } => {
                tracing::warn!(service = %service, instance = %id, address = %address, state = "open",
                    "OPEN breaker on [{service} at {address}]");
                self.arm_retest_timer(breaker, retest_at);
                (
                    BreakerState::Open,
                    Event::BreakerOpened {
                        service: service.to_string(),
                        address: address.clone(),
                    },
                )
            }
            Transition::Retesting => {
                tracing::warn!(service = %service, instance = %id, address = %address, state = "retest",
                    "RETEST breaker on [{service} at {address}]");
                (
                    BreakerState::Retest,
                    Event::BreakerRetesting {
                        service: service.to_string(),
                        address: address.clone(),
                    },
                )
            }
            Transition::Closed => {
                tracing::info!(service = %service, instance = %id, address = %address, state = "closed",
                    "CLOSE breaker on [{service} at {address}]");
                (
                    BreakerState::Closed,
                    Event::BreakerClosed {
                        service: service.to_string(),
                        address: address.clone(),
                    },
                )
            }
        };
        self.state.set(state_value(state));
        let target = match state {
            BreakerState::Open => 0,
            BreakerState::Retest => 1,
            BreakerState::Closed => 2,
        };
        self.transitions[target].increment(1);
        self.service.send(event);
    }

    /// The instance's breaker is open after it could not be connected to: it may be gone,
    /// so ask discovery to look again now rather than when its next look is due. Logged at
    /// debug.
    pub(crate) fn unreachable(&self) {
        let (service, id, address) = (self.service.service(), &self.id, &self.address);
        tracing::debug!(service = %service, instance = %id, address = %address,
            "{service} instance {id} unreachable with its breaker open: asking discovery to look again");
        self.service.refresh.notify_one();
    }

    fn arm_retest_timer(self: &Arc<Self>, breaker: &Arc<Breaker>, retest_at: Instant) {
        // Outside a runtime there is no timer to arm; the breaker then moves to Retest at
        // the first request after the delay instead.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let telemetry = Arc::clone(self);
        let breaker = Arc::clone(breaker);
        runtime.spawn(async move {
            tokio::time::sleep_until(retest_at).await;
            if let Some(t) = breaker.poll_retest(Instant::now()) {
                telemetry.transition(&breaker, t);
            }
        });
    }
}
