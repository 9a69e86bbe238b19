//! Making the store the configuration asks for.

use std::sync::Arc;

use super::{MemoryStore, Store};
use crate::config::{Config, StoreKind};

/// Why the configured store could not be opened. Messages name the flag or the endpoints.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `--store etcd` in a build without the `etcd` feature.
    #[error(
        "--store etcd needs a registry built with the `etcd` feature \
         (cargo build -p registry --features etcd)"
    )]
    NotCompiled,
    /// etcd did not answer (or answered with an error) before the connect timeout.
    #[error("cannot use etcd at {endpoints}: {reason}")]
    Etcd {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// What went wrong.
        reason: String,
    },
}

/// Opens the store named by `config.store`: an empty [`MemoryStore`], or an
/// [`EtcdStore`](super::EtcdStore) connected to `config.etcd_endpoints` whose view of the
/// existing registrations is loaded (so the first answers are already right).
pub async fn open(config: &Config) -> Result<Arc<dyn Store>, OpenError> {
    match config.store {
        StoreKind::Memory => Ok(Arc::new(MemoryStore::new(config.store_limits()))),
        StoreKind::Etcd => open_etcd(config).await,
    }
}

#[cfg(feature = "etcd")]
async fn open_etcd(config: &Config) -> Result<Arc<dyn Store>, OpenError> {
    let options = super::etcd::EtcdOptions {
        endpoints: config.etcd_endpoint_list(),
        prefix: config.etcd_key_prefix(),
        limits: config.store_limits(),
        outage_grace: config.etcd_outage_grace,
        ..super::etcd::EtcdOptions::default()
    };
    let store = super::EtcdStore::connect(options).await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "etcd"))]
async fn open_etcd(_config: &Config) -> Result<Arc<dyn Store>, OpenError> {
    Err(OpenError::NotCompiled)
}
