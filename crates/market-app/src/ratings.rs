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
//! id per call), so the ratings instance that answers logs the same trace id; and each call
//! is timed and recorded in the [`StatusBook`] for `/status`.

use std::fmt;

use discovery_client::{ServiceClient, Source};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use service_telemetry::TraceContext;
use tokio::time::Instant;
use tracing::Instrument;

use crate::catalog::Item;
use crate::status::StatusBook;

/// The ratings service's answer to `GET /ratings/{item_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Rating {
    /// The item rated.
    pub item_id: String,
    /// Stars, 1 to 5.
    pub rating: u8,
    /// Which instance answered (a number; absent or malformed is tolerated).
    #[serde(default, deserialize_with = "lenient_instance")]
    pub instance: Option<u32>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatingView {
    /// Stars, or `None` for "no rating yet".
    pub rating: Option<u8>,
    /// Where the rating came from.
    pub source: RatingSource,
    /// The instance that produced it, when known.
    pub instance: Option<u32>,
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

/// What a page load's ratings calls share: the client, the page load's trace, and the book
/// the calls are recorded in.
#[derive(Debug, Clone, Copy)]
pub struct Fetch<'a> {
    /// The ratings client.
    pub client: &'a ServiceClient,
    /// The page load's trace; each call is sent as a child of it.
    pub trace: &'a TraceContext,
    /// Where each call's instance, latency and source are recorded.
    pub book: &'a StatusBook,
}

/// Fetches the ratings of `items` concurrently, in the same order.
pub async fn fetch_all(fetch: Fetch<'_>, items: &[Item]) -> Vec<RatingView> {
    join_all(items.iter().map(|item| fetch_one(fetch, item))).await
}

async fn fetch_one(fetch: Fetch<'_>, item: &Item) -> RatingView {
    let started = Instant::now();
    let view = call(fetch, item).await;
    fetch.book.record(&view, started.elapsed());
    view
}

async fn call(fetch: Fetch<'_>, item: &Item) -> RatingView {
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
            instance: cached.value.instance,
        },
        Err(error) => {
            // The client already logs "all services are down" and breaker changes; this
            // detail (a 404 for an item ratings does not know, say) is for debugging.
            tracing::debug!(item = %item.id, %error, "no rating for {}: {error}", item.id);
            RatingView::none()
        }
    }
}

/// How many ratings of a page load came from each source, for the page-load log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Fetched live.
    pub live: usize,
    /// From the fresh cache.
    pub cache: usize,
    /// Stale fallbacks.
    pub stale: usize,
    /// No rating.
    pub none: usize,
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

/// Accepts `1` or `"1"`; anything else is `None` rather than a decode failure, since the
/// instance number is only shown, never relied on.
fn lenient_instance<'de, D>(deserializer: D) -> Result<Option<u32>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(match value {
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_decode_with_or_without_a_usable_instance() {
        let decode = |json: &str| serde_json::from_str::<Rating>(json).unwrap();
        let full = decode(r#"{"item_id": "widget", "rating": 4, "instance": 1}"#);
        assert_eq!((full.rating, full.instance), (4, Some(1)));
        assert_eq!(
            decode(r#"{"item_id": "w", "rating": 2, "instance": "3"}"#).instance,
            Some(3)
        );
        assert_eq!(decode(r#"{"item_id": "w", "rating": 2}"#).instance, None);
        assert_eq!(
            decode(r#"{"item_id": "w", "rating": 2, "instance": [1]}"#).instance,
            None
        );
        assert!(serde_json::from_str::<Rating>(r#"{"item_id": "w"}"#).is_err());
    }

    #[test]
    fn sources_are_counted_and_named() {
        let view = |source| RatingView {
            rating: Some(3),
            source,
            instance: None,
        };
        let views = [
            view(RatingSource::Live),
            view(RatingSource::Live),
            view(RatingSource::Stale),
            RatingView::none(),
        ];
        assert_eq!(
            SourceCounts::of(&views).to_string(),
            "2 live, 0 cache, 1 stale, 1 none"
        );
        assert_eq!(RatingSource::from(Source::Cache).as_str(), "cache");
        assert_eq!(
            serde_json::to_value(RatingSource::None).unwrap(),
            serde_json::json!("none")
        );
    }
}
