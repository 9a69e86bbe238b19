//! What every handler shares.

use std::sync::Arc;

use discovery_client::ServiceClient;

use crate::cart::CartStore;
use crate::catalog::Catalog;

/// Shared state of the market's handlers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The items for sale.
    pub catalog: Arc<Catalog>,
    /// The resilient client for the ratings service.
    pub ratings: ServiceClient,
    /// Every visitor's cart.
    pub carts: CartStore,
}

impl AppState {
    /// State from its parts.
    pub fn new(catalog: Catalog, ratings: ServiceClient, carts: CartStore) -> Self {
        Self {
            catalog: Arc::new(catalog),
            ratings,
            carts,
        }
    }
}
