//! What every handler shares.

use std::sync::Arc;

use discovery_client::ServiceClient;
use service_telemetry::PrometheusHandle;

use crate::cart::CartStore;
use crate::catalog::Catalog;
use crate::status::{StatusBook, StatusReport};

/// Shared state of the market's handlers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The items for sale.
    pub catalog: Arc<Catalog>,
    /// The resilient client for the ratings service.
    pub ratings: ServiceClient,
    /// Every visitor's cart.
    pub carts: CartStore,
    /// The market's record of its ratings calls, for `/status`.
    pub status: StatusBook,
    /// The process's Prometheus recorder, rendered by `/metrics`.
    pub metrics: PrometheusHandle,
}

impl AppState {
    /// State from its parts. Installs the process-wide metrics recorder if it is not yet
    /// installed, and starts counting the ratings client's breaker openings (so call it
    /// inside a tokio runtime, as building the client already requires).
    pub fn new(catalog: Catalog, ratings: ServiceClient, carts: CartStore) -> Self {
        let status = StatusBook::new();
        status.follow(ratings.subscribe());
        Self {
            catalog: Arc::new(catalog),
            ratings,
            carts,
            status,
            metrics: service_telemetry::prometheus::install(),
        }
    }

    /// What `/status` and `/api/status` show: each ratings instance with its breaker state
    /// and the market's counts and latencies for it.
    pub fn status_report(&self) -> StatusReport {
        self.status
            .report(self.ratings.service(), &self.ratings.instances())
    }
}
