//! The registry's own metrics, beside the per-route request metrics every service has:
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `registry_instances{service}` | gauge | live instances of each service |
//! | `registry_services` | gauge | services with at least one live instance |
//! | `registry_lease_expiries_total{service}` | counter | instances removed because their lease ran out, as this registry saw it (below) |
//! | `registry_blocking_queries` | gauge | blocking queries waiting right now |
//!
//! Gauges are read from the store when `/metrics` is scraped ([`refresh`]), so they are
//! never stale and cost nothing between scrapes; a service that lost its last instance
//! reports 0 once and is then dropped from the bookkeeping. Expiries are counted where
//! they happen ([`lease_expired`]); a deregistration is never one.
//!
//! With the etcd store, etcd itself deletes an instance whose lease ran out, and every
//! registry process following that etcd sees the deletion on its watch and counts it. So
//! each registry's `registry_lease_expiries_total` counts the expiries of the whole etcd
//! that it observed, not a share of them: N registries on one etcd each report every
//! expiry, and a sum across them counts each N times (take one registry's, or the max).
//! Deletions a registry's watch missed because etcd compacted past it are not counted.
//!
//! The `metrics` recorder is process-wide, so these are too: two registries in one test
//! process report into the same gauges.

use std::collections::BTreeSet;
use std::sync::{Mutex, Once, PoisonError};

use crate::store::Store;

/// Live instances per service.
pub const INSTANCES: &str = "registry_instances";
/// Services with at least one live instance.
pub const SERVICES: &str = "registry_services";
/// Instances removed because their lease ran out.
pub const LEASE_EXPIRIES_TOTAL: &str = "registry_lease_expiries_total";
/// Blocking queries waiting.
pub const BLOCKING_QUERIES: &str = "registry_blocking_queries";

/// Counts one instance of `service` removed because its lease ran out (with the etcd store:
/// one this process saw etcd remove).
pub fn lease_expired(service: &str) {
    metrics::counter!(LEASE_EXPIRIES_TOTAL, "service" => service.to_owned()).increment(1);
}

/// Sets the gauges from the store's current contents and the number of waiting blocking
/// queries. Called by `/metrics` just before rendering.
pub fn refresh(store: &dyn Store, blocking_queries: usize) {
    /// Services given a non-zero gauge last time, so the gauge of one that lost its last
    /// instance is set back to 0 rather than left at its old value.
    static REPORTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

    describe();
    let live = store.services();
    let mut reported = REPORTED.lock().unwrap_or_else(PoisonError::into_inner);
    for gone in reported.iter().filter(|name| !live.contains(name)) {
        metrics::gauge!(INSTANCES, "service" => gone.clone()).set(0.0);
    }
    for service in &live {
        let count = store.snapshot(service).instances.len();
        metrics::gauge!(INSTANCES, "service" => service.clone()).set(count as f64);
    }
    metrics::gauge!(SERVICES).set(live.len() as f64);
    metrics::gauge!(BLOCKING_QUERIES).set(blocking_queries as f64);
    *reported = live.into_iter().collect();
}

/// Registers the help texts, once per process (the recorder is installed by then: `app`
/// installs it before anything can scrape).
fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_gauge!(INSTANCES, "Live instances of each service");
        metrics::describe_gauge!(SERVICES, "Services with at least one live instance");
        metrics::describe_counter!(
            LEASE_EXPIRIES_TOTAL,
            "Instances removed because their lease ran out without a heartbeat"
        );
        metrics::describe_gauge!(BLOCKING_QUERIES, "Blocking queries waiting for a change");
    });
}
