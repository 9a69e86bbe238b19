//! Ratings for the catalog, fetched from the ratings service through the resilient client.
//!
//! [`fetch_all`] asks for every item's rating at once (one `GET /ratings/{id}` per item,
//! joined with `futures::future::join_all`), so a page load costs one round trip, not four.
//! Each call goes through [`ServiceClient::get_json_cached`]: the client picks an instance
//! round-robin, bounds the attempt with its timeout, trips breakers, retries elsewhere, and
//! when every instance fails serves the last good answer marked stale. An item whose rating
//! cannot be had at all becomes [`RatingView::none`]: the page shows "no rating yet" and
//! nothing errors.
//!
//! Each call carries the page load's trace as a W3C `traceparent` (same trace id, a new span
//! id per call), so the ratings instance that answers logs the same trace id. Each rating's
//! view names the instance that gave it, as the client reports it, and its source is counted
//! in the [`SourceCounter`] for `/status`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use discovery_client::grpc::GrpcChannel;
use discovery_client::{ServiceClient, Source};
use futures::future::join_all;
use ratings_api::GetRatingRequest;
use ratings_api::ratings_client::RatingsClient;
use serde::{Deserialize, Serialize};
use service_telemetry::TraceContext;
use tonic::Code;
use tracing::Instrument;

use crate::catalog::Item;

/// The ratings service's answer to `GET /ratings/{item_id}`. Other fields (ratings also
/// sends its instance number) are ignored: the client says which instance answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Rating {
    /// The item rated.
    pub item_id: String,
    /// Stars, 1 to 5.
    pub rating: u8,
}

/// Where a shown rating came from: the library's [`Source`], plus `none` for no rating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RatingSource {
    /// Fetched from an instance for this page load.
    Live,
    /// Served from the market's fresh cache.
    Cache,
    /// Every instance failed; this is the last good rating.
    Stale,
    /// No rating could be had.
    None,
}

impl RatingSource {
    /// `live`, `cache`, `stale` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            RatingSource::Live => "live",
            RatingSource::Cache => "cache",
            RatingSource::Stale => "stale",
            RatingSource::None => "none",
        }
    }
}

impl From<Source> for RatingSource {
    fn from(source: Source) -> Self {
        match source {
            Source::Live => RatingSource::Live,
            Source::Cache => RatingSource::Cache,
            Source::Stale => RatingSource::Stale,
        }
    }
}

/// What the page shows for one item's rating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatingView {
    /// Stars, or `None` for "no rating yet".
    pub rating: Option<u8>,
    /// Where the rating came from.
    pub source: RatingSource,
    /// The id of the instance that gave it (for a cached or stale rating, the one that gave
    /// it when it was fetched); `None` with no rating.
    pub instance: Option<String>,
}

impl RatingView {
    /// No rating.
    pub const fn none() -> Self {
        Self {
            rating: None,
            source: RatingSource::None,
            instance: None,
        }
    }
}

/// What a page load's ratings calls share: the client, the page load's trace, and the
/// counter of the sources shown.
#[derive(Debug, Clone, Copy)]
pub struct Fetch<'a> {
    /// The ratings client.
    pub client: &'a ServiceClient,
    /// With `--ratings-protocol grpc`: the gRPC client used instead of `client`.
    pub grpc: Option<&'a GrpcRatings>,
    /// The page load's trace; each call is sent as a child of it.
    pub trace: &'a TraceContext,
    /// Where each rating's source is counted.
    pub shown: &'a SourceCounter,
}

/// Fetches the ratings of `items` concurrently, in the same order.
pub async fn fetch_all(fetch: Fetch<'_>, items: &[Item]) -> Vec<RatingView> {
    join_all(items.iter().map(|item| fetch_one(fetch, item))).await
}

async fn fetch_one(fetch: Fetch<'_>, item: &Item) -> RatingView {
    let view = call(fetch, item).await;
    fetch.shown.add(view.source);
    view
}

async fn call(fetch: Fetch<'_>, item: &Item) -> RatingView {
    if let Some(grpc) = fetch.grpc {
        return grpc.call(item).await;
    }
    let path = format!("/ratings/{}", item.id);
    // A new span id for each call (the exported client span's, with the `otlp` feature).
    let (trace, span) = service_telemetry::span_link::outgoing(fetch.trace);
    match fetch
        .client
        .get_json_cached_with::<Rating>(&path, &trace.headers())
        .instrument(span)
        .await
    {
        Ok(cached) => RatingView {
            rating: Some(cached.value.rating),
            source: cached.source.into(),
            instance: Some(cached.instance.id.clone()),
        },
        Err(error) => {
            // The client already logs "all services are down" and breaker changes; this
            // detail (a 404 for an item ratings does not know, say) is for debugging.
            tracing::debug!(item = %item.id, %error, "no rating for {}: {error}", item.id);
            RatingView::none()
        }
    }
}

/// Ratings over gRPC (`--ratings-protocol grpc`): the client, and the last good rating of
/// each item, shown marked stale when every instance fails, as the HTTP path's response
/// cache does (the gRPC channel has no cache of its own). Only the catalog's items are
/// asked for, so the store stays as small as the catalog.
#[derive(Debug, Clone)]
pub struct GrpcRatings {
    /// The tonic client over the library's channel.
    client: RatingsClient<GrpcChannel>,
    /// By item id: the last good rating, and the instance that gave it.
    last_good: Arc<Mutex<HashMap<String, (u8, String)>>>,
}

impl GrpcRatings {
    /// Ratings through `channel`, nothing known yet.
    pub fn new(channel: GrpcChannel) -> Self {
        Self {
            client: RatingsClient::new(channel),
            last_good: Arc::default(),
        }
    }

    /// `GetRating` for `item`: live; or, when the instances failed (`UNAVAILABLE`, which
    /// includes "all services are down", `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`), the
    /// last good rating marked stale; or none.
    async fn call(&self, item: &Item) -> RatingView {
        let request = GetRatingRequest {
            item_id: item.id.to_string(),
        };
        let status = match self.client.clone().get_rating(request).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                let Ok(rating) = u8::try_from(answer.rating) else {
                    return RatingView::none();
                };
                let instance = answer.instance.to_string();
                self.remember(&item.id, rating, &instance);
                return RatingView {
                    rating: Some(rating),
                    source: RatingSource::Live,
                    instance: Some(instance),
                };
            }
            Err(status) => status,
        };
        tracing::debug!(item = %item.id, %status, "no live rating for {}: {status}", item.id);
        let instances_failed = matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
        );
        match self.recall(&item.id).filter(|_| instances_failed) {
            Some((rating, instance)) => RatingView {
                rating: Some(rating),
                source: RatingSource::Stale,
                instance: Some(instance),
            },
            None => RatingView::none(),
        }
    }

    fn remember(&self, item: &str, rating: u8, instance: &str) {
        self.last_good()
            .insert(item.to_owned(), (rating, instance.to_owned()));
    }

    fn recall(&self, item: &str) -> Option<(u8, String)> {
        self.last_good().get(item).cloned()
    }

    fn last_good(&self) -> MutexGuard<'_, HashMap<String, (u8, String)>> {
        // A panic while the lock was held cannot leave the map half-changed (one insert).
        self.last_good
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// How many ratings came from each source: a page load's, for its log line, or every one
/// shown since the market started, in `/api/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCounts {
    /// Fetched from an instance.
    pub live: u64,
    /// From the market's fresh cache.
    pub cache: u64,
    /// Every instance failed; the last good rating was shown.
    pub stale: u64,
    /// No rating could be had ("no rating yet").
    pub none: u64,
}

impl SourceCounts {
    /// Counts the sources of `views`.
    pub fn of(views: &[RatingView]) -> Self {
        let mut counts = Self::default();
        for view in views {
            match view.source {
                RatingSource::Live => counts.live += 1,
                RatingSource::Cache => counts.cache += 1,
                RatingSource::Stale => counts.stale += 1,
                RatingSource::None => counts.none += 1,
            }
        }
        counts
    }
}

impl fmt::Display for SourceCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} live, {} cache, {} stale, {} none",
            self.live, self.cache, self.stale, self.none
        )
    }
}

/// How many ratings shown since the market started came from each source: the one figure
/// of `/status` the ratings client does not know (it keeps the per-instance ones). Four
/// counters shared by every clone, with no lock on the page loads' path.
#[derive(Debug, Clone, Default)]
pub struct SourceCounter {
    /// Shared by every clone.
    counts: Arc<Counters>,
}

/// One count per [`RatingSource`].
#[derive(Debug, Default)]
struct Counters {
    live: AtomicU64,
    cache: AtomicU64,
    stale: AtomicU64,
    none: AtomicU64,
}

impl SourceCounter {
    /// All zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one rating shown from `source`.
    pub fn add(&self, source: RatingSource) {
        let counts = &self.counts;
        let count = match source {
            RatingSource::Live => &counts.live,
            RatingSource::Cache => &counts.cache,
            RatingSource::Stale => &counts.stale,
            RatingSource::None => &counts.none,
        };
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn totals(&self) -> SourceCounts {
        let counts = &self.counts;
        let get = |count: &AtomicU64| count.load(Ordering::Relaxed);
        SourceCounts {
            live: get(&counts.live),
            cache: get(&counts.cache),
            stale: get(&counts.stale),
            none: get(&counts.none),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_decode_whatever_else_the_answer_carries() {
        let decode = |json: &str| serde_json::from_str::<Rating>(json).unwrap();
        let full = decode(r#"{"item_id": "widget", "rating": 4, "instance": 1}"#);
        assert_eq!((full.item_id.as_str(), full.rating), ("widget", 4));
        assert_eq!(
            decode(r#"{"item_id": "w", "rating": 2, "instance": [1]}"#).rating,
            2
        );
        assert_eq!(decode(r#"{"item_id": "w", "rating": 2}"#).rating, 2);
        assert!(serde_json::from_str::<Rating>(r#"{"item_id": "w"}"#).is_err());
    }

    fn view(source: RatingSource) -> RatingView {
        RatingView {
            rating: Some(3),
            source,
            instance: Some("1".into()),
        }
    }

    #[test]
    fn sources_are_counted_and_named() {
        let views = [
            view(RatingSource::Live),
            view(RatingSource::Live),
            view(RatingSource::Stale),
            RatingView::none(),
        ];
        let counts = SourceCounts::of(&views);
        assert_eq!(counts.to_string(), "2 live, 0 cache, 1 stale, 1 none");
        assert_eq!(
            serde_json::to_value(counts).unwrap(),
            serde_json::json!({"live": 2, "cache": 0, "stale": 1, "none": 1})
        );
        assert_eq!(RatingSource::from(Source::Cache).as_str(), "cache");
        assert_eq!(
            serde_json::to_value(RatingSource::None).unwrap(),
            serde_json::json!("none")
        );
    }

    #[test]
    fn the_counter_adds_up_every_source_across_clones() {
        let counter = SourceCounter::new();
        let clone = counter.clone();
        for source in [
            RatingSource::Live,
            RatingSource::Live,
            RatingSource::Cache,
            RatingSource::Stale,
            RatingSource::None,
            RatingSource::None,
        ] {
            clone.add(source);
        }
        counter.add(RatingSource::None);
        assert_eq!(
            counter.totals(),
            SourceCounts {
                live: 2,
                cache: 1,
                stale: 1,
                none: 3,
            }
        );
    }
}
