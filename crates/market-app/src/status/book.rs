//! [`StatusBook`]: the market's own record of its ratings calls, per instance.
//!
//! The library knows each attempt, but all it hands the market is the answer: its value
//! (which names the instance that produced it) and its source. So the book keeps:
//!
//! - per instance id, the calls it answered and the latencies of the last
//!   [`RECENT_CALLS`], timed around each call (a call that was retried elsewhere first is
//!   timed whole, as the page felt it);
//! - per instance address, the failures that opened (or re-opened) its breaker, from the
//!   client's [`Event::BreakerOpened`]. With the default failure limit of 1 every failure
//!   opens the breaker, so this is every failure;
//! - in total, how many ratings were live, cached, stale or missing.
//!
//! Breaker states are not kept here: [`StatusBook::report`] reads them from the client
//! when asked. Memory is bounded: at most [`MAX_TRACKED`] instances are tracked.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use discovery_client::{Event, InstanceStatus};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::report::{InstanceReport, SourceTotals, StatusReport};
use crate::ratings::{RatingSource, RatingView};

/// How many recent latencies each instance's figures are over.
pub const RECENT_CALLS: usize = 20;

/// The most instances (ids, and separately addresses) the book tracks; later ones are not
/// counted.
pub const MAX_TRACKED: usize = 256;

/// The market's per-instance record of its ratings calls. Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub struct StatusBook {
    /// Shared by every clone and the event follower.
    inner: Arc<Mutex<Book>>,
}

#[derive(Debug, Default)]
struct Book {
    /// Answered calls by instance id.
    answered: BTreeMap<String, Answered>,
    /// Breaker-opening failures by instance address.
    errors: BTreeMap<String, u64>,
    /// Ratings shown, by source.
    sources: SourceTotals,
}

#[derive(Debug, Default)]
struct Answered {
    /// Calls answered since the market started.
    count: u64,
    /// The latest latencies, oldest first, at most [`RECENT_CALLS`].
    recent: VecDeque<Duration>,
}

impl StatusBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one rating fetched for a page, and how long the call took.
    pub fn record(&self, view: &RatingView, elapsed: Duration) {
        let mut book = self.lock();
        let sources = &mut book.sources;
        match view.source {
            RatingSource::Live => sources.live += 1,
            RatingSource::Cache => sources.cache += 1,
            RatingSource::Stale => sources.stale += 1,
            RatingSource::None => sources.none += 1,
        }
        let (RatingSource::Live, Some(instance)) = (view.source, view.instance) else {
            return;
        };
        let id = instance.to_string();
        let tracked = book.answered.len();
        let entry = match book.answered.get_mut(&id) {
            Some(entry) => entry,
            None if tracked < MAX_TRACKED => book.answered.entry(id).or_default(),
            None => return,
        };
        entry.count += 1;
        if entry.recent.len() == RECENT_CALLS {
            entry.recent.pop_front();
        }
        entry.recent.push_back(elapsed);
    }

    /// Records a failure of the instance at `address`.
    pub fn record_error(&self, address: &str) {
        let mut book = self.lock();
        let tracked = book.errors.len();
        match book.errors.get_mut(address) {
            Some(count) => *count += 1,
            None if tracked < MAX_TRACKED => {
                book.errors.insert(address.to_owned(), 1);
            }
            None => {}
        }
    }

    /// Counts breaker openings from the client's events, in a background task that ends
    /// when the client is dropped. Does nothing outside a tokio runtime.
    pub fn follow(&self, mut events: broadcast::Receiver<Event>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!("no runtime: ratings breaker openings will not be counted");
            return;
        };
        let book = self.clone();
        runtime.spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::BreakerOpened { address, .. }) => book.record_error(&address),
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "status book missed {missed} ratings events");
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
    }

    /// The report for `/api/status`: each of `instances` (the client's current view, with
    /// breaker states) with what the book knows of it, sorted by id.
    pub fn report(&self, service: &str, instances: &[InstanceStatus]) -> StatusReport {
        let book = self.lock();
        let mut rows: Vec<InstanceReport> = instances
            .iter()
            .map(|instance| {
                let answered = book.answered.get(&instance.id);
                let errors = book.errors.get(&instance.address).copied().unwrap_or(0);
                let recent: Vec<Duration> = answered
                    .map(|a| a.recent.iter().copied().collect())
                    .unwrap_or_default();
                InstanceReport {
                    id: instance.id.clone(),
                    address: instance.address.clone(),
                    state: instance.state.as_str().to_owned(),
                    requests: answered.map_or(0, |a| a.count).saturating_add(errors),
                    errors,
                    latency_p50_ms: median(&recent).map(millis),
                    latency_mean_ms: mean(&recent).map(millis),
                    latency_samples: recent.len(),
                }
            })
            .collect();
        rows.sort_by(|a, b| id_order(&a.id, &b.id));
        StatusReport {
            service: service.to_owned(),
            instances: rows,
            ratings: book.sources,
        }
    }

    /// Locks the book. A panic while it was held leaves counters that are at worst one
    /// call off, which is better than refusing the status page, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Book> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Numeric ids in numeric order (2 before 10), then anything else by text.
fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// The median (the mean of the middle two for an even count).
fn median(samples: &[Duration]) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

fn mean(samples: &[Duration]) -> Option<Duration> {
    let n = u32::try_from(samples.len()).ok().filter(|n| *n > 0)?;
    Some(samples.iter().sum::<Duration>() / n)
}

/// Milliseconds, to a hundredth.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 100_000.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use discovery_client::breaker::BreakerState;

    use super::*;

    fn live(instance: u32) -> RatingView {
        RatingView {
            rating: Some(4),
            source: RatingSource::Live,
            instance: Some(instance),
        }
    }

    fn status(id: &str, address: &str, state: BreakerState) -> InstanceStatus {
        InstanceStatus {
            id: id.into(),
            address: address.into(),
            state,
            in_flight: 0,
            requests: 0,
            failures: 0,
            latency_p50: None,
            latency_p99: None,
        }
    }

    #[test]
    fn answered_calls_and_errors_are_kept_per_instance() {
        let book = StatusBook::new();
        for ms in [10, 30, 20] {
            book.record(&live(1), Duration::from_millis(ms));
        }
        book.record(&live(10), Duration::from_millis(5));
        book.record(&RatingView::none(), Duration::from_millis(1));
        book.record(
            &RatingView {
                source: RatingSource::Stale,
                ..live(2)
            },
            Duration::from_millis(1),
        );
        book.record_error("http://b");
        book.record_error("http://b");

        let report = book.report(
            "ratings",
            &[
                status("10", "http://c", BreakerState::Closed),
                status("2", "http://b", BreakerState::Open),
                status("1", "http://a", BreakerState::Closed),
            ],
        );
        assert_eq!(report.service, "ratings");
        let ids: Vec<&str> = report.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "10"], "numeric order");
        let one = &report.instances[0];
        assert_eq!((one.requests, one.errors, one.latency_samples), (3, 0, 3));
        assert_eq!(one.latency_p50_ms, Some(20.0));
        assert_eq!(one.latency_mean_ms, Some(20.0));
        let two = &report.instances[1];
        assert_eq!(
            (two.state.as_str(), two.requests, two.errors),
            ("open", 2, 2)
        );
        assert_eq!(
            two.latency_p50_ms, None,
            "a stale answer is not the instance's"
        );
        assert_eq!(
            report.ratings,
            SourceTotals {
                live: 4,
                cache: 0,
                stale: 1,
                none: 1
            }
        );
    }

    #[test]
    fn only_the_recent_latencies_count() {
        let book = StatusBook::new();
        for _ in 0..RECENT_CALLS {
            book.record(&live(1), Duration::from_secs(1));
        }
        for _ in 0..RECENT_CALLS {
            book.record(&live(1), Duration::from_millis(2));
        }
        let report = book.report("ratings", &[status("1", "http://a", BreakerState::Closed)]);
        let one = &report.instances[0];
        assert_eq!(one.requests, 2 * RECENT_CALLS as u64);
        assert_eq!(one.latency_samples, RECENT_CALLS);
        assert_eq!(one.latency_p50_ms, Some(2.0));
        assert_eq!(
            median(&[Duration::from_millis(1), Duration::from_millis(4)]),
            Some(Duration::from_micros(2500))
        );
    }

    #[test]
    fn tracking_is_bounded() {
        let book = StatusBook::new();
        for n in 0..(MAX_TRACKED as u32 + 10) {
            book.record(&live(n), Duration::from_millis(1));
            book.record_error(&format!("http://h{n}"));
        }
        let book = book.lock();
        assert_eq!(book.answered.len(), MAX_TRACKED);
        assert_eq!(book.errors.len(), MAX_TRACKED);
    }

    #[tokio::test]
    async fn breaker_openings_from_events_count_as_errors() {
        let (tx, rx) = broadcast::channel(8);
        let book = StatusBook::new();
        book.follow(rx);
        tx.send(Event::BreakerOpened {
            service: "ratings".into(),
            address: "http://a".into(),
        })
        .unwrap();
        tx.send(Event::BreakerClosed {
            service: "ratings".into(),
            address: "http://a".into(),
        })
        .unwrap();
        drop(tx);
        // The follower ends when the sender is gone; wait for that, boundedly.
        for _ in 0..1000 {
            if Arc::strong_count(&book.inner) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let report = book.report("ratings", &[status("1", "http://a", BreakerState::Closed)]);
        assert_eq!(report.instances[0].errors, 1);
    }
}
