//! What every handler shares: the instance number, the ratings, the faults and who may
//! use the admin endpoint.

use std::fmt;
use std::sync::Arc;

use service_telemetry::PrometheusHandle;

use crate::catalog::{Catalog, CatalogError};
use crate::config::Config;
use crate::faults::{FaultSwitch, Faults, Injected};

/// Who may use the admin endpoint.
#[derive(Clone, PartialEq, Eq)]
pub enum AdminAccess {
    /// No admin routes at all: they answer 404.
    Disabled,
    /// Admin routes without authentication.
    Open,
    /// Admin routes that require `Authorization: Bearer <token>`.
    Token(String),
}

impl fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disabled => f.write_str("Disabled"),
            Self::Open => f.write_str("Open"),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// The handlers' shared state; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Shared by every clone.
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// This instance's number, reported in every answer.
    instance: u16,
    /// The ratings served.
    catalog: Catalog,
    /// The faults injected, changeable at run time.
    faults: FaultSwitch,
    /// Whether and how the admin endpoint is reachable.
    admin: AdminAccess,
    /// The process's Prometheus recorder, rendered by `/metrics`.
    metrics: PrometheusHandle,
}

impl AppState {
    /// State for instance `instance` serving `catalog`, starting with `faults`. Installs the
    /// process-wide metrics recorder if it is not yet installed.
    pub fn new(instance: u16, catalog: Catalog, faults: Faults, admin: AdminAccess) -> Self {
        Self {
            inner: Arc::new(Shared {
                instance,
                catalog,
                faults: FaultSwitch::new(faults),
                admin,
                metrics: service_telemetry::prometheus::install(),
            }),
        }
    }

    /// State from the configuration and the embedded ratings.
    pub fn from_config(config: &Config) -> Result<Self, CatalogError> {
        Ok(Self::new(
            config.instance,
            Catalog::embedded()?,
            config.initial_faults(),
            config.admin_access(),
        ))
    }

    /// This instance's number.
    pub fn instance(&self) -> u16 {
        self.inner.instance
    }

    /// The ratings served.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The faults, to read or change.
    pub fn faults(&self) -> &FaultSwitch {
        &self.inner.faults
    }

    /// Applies the faults to one request for `item`, over HTTP and gRPC alike: waits the
    /// injected latency, then draws what the request suffers, logging it unless nothing.
    pub async fn suffer_faults(&self, item: &str) -> Injected {
        let instance = self.instance();
        let faults = self.faults().get();
        if faults.latency_ms > 0 {
            tokio::time::sleep(faults.latency()).await;
        }
        let injected = faults.roll();
        match injected {
            Injected::Nothing => {}
            Injected::Error => {
                tracing::info!(
                    instance,
                    item,
                    "instance {instance} injected an error for {item}"
                );
            }
            Injected::Throttled => {
                tracing::info!(instance, item, "instance {instance} throttled {item}");
            }
            Injected::Garbage => {
                tracing::info!(
                    instance,
                    item,
                    "instance {instance} injected garbage for {item}"
                );
            }
        }
        injected
    }

    /// Who may use the admin endpoint.
    pub fn admin(&self) -> &AdminAccess {
        &self.inner.admin
    }

    /// The process's metrics, for `/metrics`.
    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }
}
