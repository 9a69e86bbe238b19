//! The response cache: fresh answers with a TTL, coalesced misses, and stale fallback.
//!
//! Two moka caches hold the raw bodies of successful GETs, keyed by path:
//!
//! - the **fresh** cache answers without an upstream call while an entry is younger than the
//!   TTL, and coalesces concurrent misses: N callers missing the same key make one upstream
//!   call and all receive its result (moka's `try_get_with`);
//! - the **stale** store keeps the last good answer for much longer (default one hour), and is
//!   used only when the upstream call fails, with the answer marked [`Source::Stale`].
//!
//! A fresh TTL of zero turns fresh answers off: every call goes upstream, except when the
//! client is swamped. With more than 32 calls through the cache in flight at once, a call that finds a fetch of its key in flight shares that fetch's answer
//! ([`Source::Cache`]), as nginx's `proxy_cache_lock` and Go's `singleflight` do. That is what
//! a client starved of CPU needs: it queues many page loads at once, and they share a few
//! upstream calls instead of each making its own, which kept a market under a 40 ms-per-second
//! CPU quota serving 200 pages/s (docs/BENCHMARKS.md, starved client). Below the threshold
//! calls do not wait on each other, so one slow attempt (a gray instance, a hedge) delays no
//! other caller. The stale fallback is kept either way. moka runs on its own clock, so cache
//! expiry is tested with short real TTLs.
//!
//! [`ServiceClient::get_json_cached`](crate::ServiceClient::get_json_cached) caches bodies;
//! [`CacheLayer`] offers the same cache as tower middleware for `GET` requests. Every lookup
//! is counted in `discovery_client_cache_total{service,result=hit|miss|stale}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use metrics::Counter;
use moka::future::Cache;

#[cfg(test)]
use crate::Error;
use crate::Instance;
use crate::telemetry::CacheCounters;

mod layer;
mod service;

pub use layer::CacheLayer;
pub use service::CacheService;

/// Where an answer came from.
///
/// ```
/// use discovery_client::Source;
///
/// assert_eq!(Source::Stale.as_str(), "stale");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Fetched from an instance by this call.
    Live,
    /// From the fresh cache (or from a concurrent caller's fetch of the same key).
    Cache,
    /// The upstream failed; this is the last good answer, older than the fresh TTL.
    Stale,
}

impl Source {
    /// `live`, `cache` or `stale`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Live => "live",
            Source::Cache => "cache",
            Source::Stale => "stale",
        }
    }
}

/// A decoded answer, where it came from, and which instance gave it.
///
/// ```no_run
/// use discovery_client::{Cached, ServiceClient, Source, StaticDiscovery};
///
/// #[derive(Debug, serde::Deserialize)]
/// struct Rating { rating: u8 }
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(StaticDiscovery::new(["http://127.0.0.1:8001"]))
///     .build()?;
/// let Cached { value, source, instance } = ratings.get_json_cached::<Rating>("/ratings/widget").await?;
/// if source == Source::Stale {
///     println!("ratings is down; instance {} last said {} stars", instance.id, value.rating);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Cached<T> {
    /// The answer.
    pub value: T,
    /// Whether it is live, cached, or a stale fallback.
    pub source: Source,
    /// The instance that gave the answer (for a cached or stale answer, when it was
    /// fetched), shared with the client.
    pub instance: Arc<Instance>,
}

/// Sizes and lifetimes of the response cache.
///
/// ```
/// use std::time::Duration;
/// use discovery_client::cache::CacheConfig;
///
/// let config = CacheConfig {
///     ttl: Duration::from_secs(10),
///     ..CacheConfig::default()
/// };
/// assert_eq!(config.stale_ttl, Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// How long an answer is served without asking upstream (zero: ask every time, except
    /// that in a swamped client, over 32 calls in flight, callers arriving while a fetch of
    /// the same key is in flight share it).
    pub ttl: Duration,
    /// How long the last good answer is kept for use when upstream fails.
    pub stale_ttl: Duration,
    /// Entries kept at most, in each of the two caches.
    pub max_entries: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(5),
            stale_ttl: Duration::from_secs(3600),
            max_entries: 10_000,
        }
    }
}

/// With a fresh TTL of zero, concurrent misses of one key share one fetch only when more
/// than this many calls through the cache are in flight: a client that is queueing work
/// (an unloaded market at 200 pages/s has about 3 in flight; one thawing from a CPU quota,
/// hundreds).
pub(crate) const COALESCE_ABOVE: usize = 32;

/// Successful answers (bodies for [`ServiceClient`](crate::ServiceClient), whole responses
/// for [`CacheService`]), fresh and stale, keyed by path.
#[derive(Clone)]
pub(crate) struct ResponseCache<V = Bytes> {
    /// Answers younger than the TTL, and the fetches in flight that concurrent misses share
    /// (with a TTL of zero, only those, and only above [`COALESCE_ABOVE`] in flight).
    fresh: Cache<String, V>,
    /// Whether `fresh` keeps answers (a TTL above zero).
    keeps_fresh: bool,
    /// Calls through the cache in flight now, shared by clones.
    in_flight: Arc<AtomicUsize>,
    /// The last good answer per key, for when upstream fails.
    stale: Cache<String, V>,
    /// `discovery_client_cache_total{service,result}`.
    counters: CacheCounters,
}

impl<V> std::fmt::Debug for ResponseCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("fresh", &self.fresh.entry_count())
            .field("stale", &self.stale.entry_count())
            .finish()
    }
}

impl<V: Clone + Send + Sync + 'static> ResponseCache<V> {
    pub(crate) fn new(config: &CacheConfig) -> Self {
        // A TTL of zero keeps nothing fresh: moka's waiters still get the value the
        // fetch they waited on produced.
        let fresh = Cache::builder()
            .max_capacity(config.max_entries)
            .time_to_live(config.ttl)
            .build();
        let stale = Cache::builder()
            .max_capacity(config.max_entries)
            .time_to_live(config.stale_ttl.max(config.ttl))
            .build();
        Self {
            fresh,
            keeps_fresh: !config.ttl.is_zero(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            stale,
            counters: CacheCounters {
                hit: Counter::noop(),
                miss: Counter::noop(),
                stale: Counter::noop(),
            },
        }
    }

    /// Counts hits, misses and stale answers in these counters.
    pub(crate) fn with_counters(mut self, counters: CacheCounters) -> Self {
        self.counters = counters;
        self
    }

    /// Answers `key` from the fresh cache, or by running `fetch` (once for all concurrent
    /// callers of the same key), or, when that fails, from the stale store.
    #[cfg(test)]
    pub(crate) async fn get_or_fetch<F>(&self, key: &str, fetch: F) -> Result<(V, Source), Error>
    where
        F: Future<Output = Result<V, Error>>,
    {
        self.get_or_fetch_when(key, fetch, |_| true).await
    }

    /// [`get_or_fetch`](Self::get_or_fetch), falling back to the stale store only for the
    /// failures for which `use_stale` is true. Each call counts one `hit` (fresh cache, or a
    /// concurrent caller's fetch), `miss` (went upstream) or `stale` (fell back).
    pub(crate) async fn get_or_fetch_when<F, E>(
        &self,
        key: &str,
        fetch: F,
        use_stale: impl Fn(&E) -> bool,
    ) -> Result<(V, Source), E>
    where
        F: Future<Output = Result<V, E>>,
        E: Clone + Send + Sync + 'static,
    {
        let in_flight = InFlight::enter(&self.in_flight);
        let fetched_here = AtomicBool::new(false);
        let result = if self.keeps_fresh || in_flight.others >= COALESCE_ABOVE {
            self.fresh
                .try_get_with_by_ref(key, async {
                    fetched_here.store(true, Ordering::Relaxed);
                    fetch.await
                })
                .await
                .map_err(|shared| (*shared).clone())
        } else {
            fetched_here.store(true, Ordering::Relaxed);
            fetch.await
        };
        drop(in_flight);
        match result {
            Ok(value) => {
                let source = if fetched_here.load(Ordering::Relaxed) {
                    self.counters.miss.increment(1);
                    self.stale.insert(key.to_string(), value.clone()).await;
                    Source::Live
                } else {
                    self.counters.hit.increment(1);
                    Source::Cache
                };
                Ok((value, source))
            }
            Err(error) => {
                let stale = if use_stale(&error) {
                    self.stale.get(key).await
                } else {
                    None
                };
                match stale {
                    Some(value) => {
                        self.counters.stale.increment(1);
                        Ok((value, Source::Stale))
                    }
                    None => {
                        self.counters.miss.increment(1);
                        Err(error)
                    }
                }
            }
        }
    }

    /// Forgets every entry (fresh and stale).
    pub(crate) fn clear(&self) {
        self.fresh.invalidate_all();
        self.stale.invalidate_all();
    }
}

/// One call counted in a cache's in-flight count until dropped (also when the call is).
struct InFlight<'a> {
    count: &'a AtomicUsize,
    /// How many other calls were in flight when this one began.
    others: usize,
}

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let others = count.fetch_add(1, Ordering::Relaxed);
        Self { count, others }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod layer_tests;
#[cfg(test)]
mod tests;
