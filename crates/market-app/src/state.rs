//! What every handler shares.

use std::sync::Arc;

use discovery_client::ServiceClient;
use discovery_client::events::EventBus;
use discovery_client::grpc::GrpcChannel;
use service_telemetry::PrometheusHandle;

use crate::cart::CartStore;
use crate::catalog::Catalog;
use crate::ratings::{GrpcRatings, SourceCounter};
use crate::status::{History, HistoryReport, StatusReport, StatusSource};

/// Shared state of the market's handlers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The items for sale.
    pub catalog: Arc<Catalog>,
    /// The resilient client for the ratings service.
    pub ratings: ServiceClient,
    /// With `--ratings-protocol grpc`: the gRPC client ratings are fetched with instead.
    pub ratings_grpc: Option<GrpcRatings>,
    /// The client that carries the ratings calls (`ratings`, or the gRPC channel), whose
    /// instances `/status`, `/api/status` and `/health` show.
    pub status_source: StatusSource,
    /// Every visitor's cart.
    pub carts: CartStore,
    /// How many ratings shown came from each source, for `/status` (the per-instance
    /// figures are the ratings client's).
    pub shown: SourceCounter,
    /// The process's Prometheus recorder, rendered by `/metrics`.
    pub metrics: PrometheusHandle,
    /// The last minutes of each ratings instance and the last events, for the live
    /// dashboard; filled by [`History::run`], which [`crate::run`] starts.
    pub history: History,
}

impl AppState {
    /// State from its parts. Installs the process-wide metrics recorder if it is not yet
    /// installed.
    pub fn new(catalog: Catalog, ratings: ServiceClient, carts: CartStore) -> Self {
        let status_source = StatusSource::Http(ratings.clone());
        Self {
            catalog: Arc::new(catalog),
            history: History::following(&status_source),
            ratings,
            ratings_grpc: None,
            status_source,
            carts,
            shown: SourceCounter::new(),
            metrics: service_telemetry::prometheus::install(),
        }
    }

    /// The same state, fetching ratings over gRPC through `channel`, which publishes its
    /// events to `events`: the status pages and their history follow the channel.
    pub fn with_grpc(self, channel: GrpcChannel, events: EventBus) -> Self {
        let status_source = StatusSource::Grpc {
            channel: channel.clone(),
            events,
        };
        Self {
            ratings_grpc: Some(GrpcRatings::new(channel)),
            history: History::following(&status_source),
            status_source,
            ..self
        }
    }

    /// What `/status` and `/api/status` show: each ratings instance as the client that
    /// carries the calls sees it, and the ratings shown by source.
    pub fn status_report(&self) -> StatusReport {
        let source = &self.status_source;
        StatusReport::new(source.service(), &source.instances(), self.shown.totals())
    }

    /// What `/api/status/history` answers and every dashboard stream starts with.
    pub fn history_report(&self) -> HistoryReport {
        self.history.report(self.shown.totals())
    }
}
