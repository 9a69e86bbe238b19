//! [`CacheLayer`]: the response cache as tower middleware.

use bytes::Bytes;
use tower::Layer;

use super::{CacheConfig, CacheService, ResponseCache};
use crate::telemetry::ServiceTelemetry;

/// Wraps a service in a [`CacheService`]: `GET` answers are served from a moka cache with a
/// TTL, concurrent misses of the same path make one upstream call, and when upstream fails
/// the last good answer is served, marked [`Source::Stale`](super::Source::Stale).
///
/// Every service this layer makes (and every clone of the layer) shares one cache.
///
/// ```
/// use std::time::Duration;
/// use discovery_client::cache::{CacheConfig, CacheLayer};
///
/// let layer = CacheLayer::new("ratings", CacheConfig {
///     ttl: Duration::from_secs(5),
///     ..CacheConfig::default()
/// });
/// layer.clear();
/// ```
#[derive(Debug, Clone)]
pub struct CacheLayer {
    /// The shared cache of whole answers.
    cache: ResponseCache<http::Response<Bytes>>,
}

impl CacheLayer {
    /// A cache for `service` (the name is the `service` label of
    /// `discovery_client_cache_total`) with these sizes and lifetimes.
    pub fn new(service: &str, config: CacheConfig) -> Self {
        let counters = ServiceTelemetry::new(service, None).cache_counters();
        Self {
            cache: ResponseCache::new(&config).with_counters(counters),
        }
    }

    /// Forgets every cached answer, fresh and stale.
    pub fn clear(&self) {
        self.cache.clear();
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService::new(inner, self.cache.clone())
    }
}
