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
//! A fresh TTL of zero turns the fresh cache off (every call goes upstream) while keeping the
//! stale fallback. moka runs on its own clock, so cache expiry is tested with short real TTLs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;

use crate::Error;

/// Where an answer came from.
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

/// A decoded answer and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached<T> {
    /// The answer.
    pub value: T,
    /// Whether it is live, cached, or a stale fallback.
    pub source: Source,
}

/// Sizes and lifetimes of the response cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// How long an answer is served without asking upstream (zero: always ask).
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

/// Bodies of successful answers, fresh and stale.
#[derive(Debug, Clone)]
pub(crate) struct ResponseCache {
    fresh: Option<Cache<String, Bytes>>,
    stale: Cache<String, Bytes>,
}

impl ResponseCache {
    pub(crate) fn new(config: &CacheConfig) -> Self {
        let fresh = (!config.ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(config.max_entries)
                .time_to_live(config.ttl)
                .build()
        });
        let stale = Cache::builder()
            .max_capacity(config.max_entries)
            .time_to_live(config.stale_ttl.max(config.ttl))
            .build();
        Self { fresh, stale }
    }

    /// Answers `key` from the fresh cache, or by running `fetch` (once for all concurrent
    /// callers of the same key), or, when that fails, from the stale store.
    pub(crate) async fn get_or_fetch<F>(
        &self,
        key: &str,
        fetch: F,
    ) -> Result<(Bytes, Source), Error>
    where
        F: Future<Output = Result<Bytes, Error>>,
    {
        let fetched_here = AtomicBool::new(false);
        let result = match &self.fresh {
            Some(fresh) => fresh
                .try_get_with_by_ref(key, async {
                    fetched_here.store(true, Ordering::Relaxed);
                    fetch.await
                })
                .await
                .map_err(|shared| (*shared).clone()),
            None => {
                fetched_here.store(true, Ordering::Relaxed);
                fetch.await
            }
        };
        match result {
            Ok(body) => {
                let source = if fetched_here.load(Ordering::Relaxed) {
                    self.stale.insert(key.to_string(), body.clone()).await;
                    Source::Live
                } else {
                    Source::Cache
                };
                Ok((body, source))
            }
            Err(error) => match self.stale.get(key).await {
                Some(body) => Ok((body, Source::Stale)),
                None => Err(error),
            },
        }
    }

    /// Forgets every entry (fresh and stale).
    pub(crate) fn clear(&self) {
        if let Some(fresh) = &self.fresh {
            fresh.invalidate_all();
        }
        self.stale.invalidate_all();
    }
}

#[cfg(test)]
mod tests;
