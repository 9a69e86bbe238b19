//! What happened to the ratings instances lately, for the live dashboard on `/status`, its
//! server-sent events (`/api/status/stream`), `/api/status/history` and `watch --timeline`.
//!
//! [`History`] keeps, in memory and bounded:
//!
//! - per instance, one [`Sample`] a second ([`SAMPLE_EVERY`]) for the last five minutes
//!   ([`KEEP_SAMPLES`]): breaker state, attempts per second, the share of them that failed,
//!   and the client's latency p50 / p99 at that moment;
//! - the last [`KEEP_EVENTS`] events of the ratings client (added, removed, opened, retest,
//!   closed, hedged, all down, discovery outage and recovery), each with its time.
//!
//! Times are milliseconds since the history began (`t_ms`, on tokio's clock, so tests run on
//! paused time); [`HistoryReport::started_at_ms`] is that moment as a Unix time, for showing
//! wall-clock times. Every sample and event is also broadcast as an [`Update`] to the
//! dashboards connected right now, so an open breaker reaches them the moment it opens.
//!
//! [`History::run`] is the background task that samples the client every second and
//! records its events; [`History::close`] ends the streams when the market shuts down.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use discovery_client::{Event, InstanceStatus};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::StatusSource;
use super::report::id_order;
use crate::ratings::{SourceCounter, SourceCounts};

/// How often each instance is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Samples kept per instance: five minutes at one a second.
pub const KEEP_SAMPLES: usize = 300;
/// Events kept.
pub const KEEP_EVENTS: usize = 50;
/// Updates a slow dashboard may fall behind by before it misses some (it then reloads the
/// whole history).
const UPDATE_BACKLOG: usize = 256;

/// One instance at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When, in milliseconds since the history began.
    pub t_ms: u64,
    /// Breaker state: `closed`, `open` or `retest`.
    pub state: String,
    /// Attempts whose outcome became known since the previous sample, per second.
    pub requests_per_s: f64,
    /// The share of those that failed; `null` when there were none.
    pub error_ratio: Option<f64>,
    /// The client's median latency of the instance's latest attempts, in milliseconds.
    pub p50_ms: Option<f64>,
    /// The 99th percentile of the same.
    pub p99_ms: Option<f64>,
}

/// One instance's recent samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceHistory {
    /// Instance id.
    pub id: String,
    /// Its address.
    pub address: String,
    /// Oldest first, at most [`KEEP_SAMPLES`].
    pub samples: VecDeque<Sample>,
}

/// Something the ratings client reported, with when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// When, in milliseconds since the history began.
    pub t_ms: u64,
    /// `added`, `removed`, `opened`, `retest`, `closed`, `hedged`, `all down`,
    /// `discovery outage` or `discovery recovered`.
    pub kind: String,
    /// The instance's id, when the event is about one and its id is known.
    pub instance: Option<String>,
    /// What else there is to say: an address, the hedge's instance, an outage's cause.
    pub detail: String,
}

/// `GET /api/status/history`: everything kept, and the first message of every stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryReport {
    /// The upstream service (`ratings`).
    pub service: String,
    /// The history's start as a Unix time in milliseconds: `t_ms` 0.
    pub started_at_ms: u64,
    /// Now, in milliseconds since the start.
    pub now_ms: u64,
    /// Milliseconds between samples.
    pub sample_every_ms: u64,
    /// Instances, numeric ids in numeric order; gone ones until their samples age out.
    pub instances: Vec<InstanceHistory>,
    /// Events, oldest first, at most [`KEEP_EVENTS`].
    pub events: Vec<EventRecord>,
    /// How the ratings shown since the market started were had (live, cache, stale, none).
    pub ratings: SourceCounts,
}

/// What a connected dashboard is sent after the full history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Update {
    /// One round of samples: every instance the client knows now.
    Sample {
        /// When, in milliseconds since the start.
        t_ms: u64,
        /// Each instance's new sample.
        instances: Vec<InstanceSample>,
        /// The ratings shown so far, by source.
        ratings: SourceCounts,
    },
    /// An event, as it happened.
    Event(EventRecord),
}

/// An instance's newest sample, in an [`Update::Sample`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceSample {
    /// Instance id.
    pub id: String,
    /// Its address.
    pub address: String,
    /// The sample.
    pub sample: Sample,
}

/// The bounded history and its live feed. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct History {
    /// Shared so clones see one history.
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The upstream service's name.
    service: String,
    /// `t_ms` 0 on tokio's clock.
    started: Instant,
    /// `t_ms` 0 as a Unix time in milliseconds.
    started_at_ms: u64,
    /// The samples, events and counters behind them.
    kept: Mutex<Kept>,
    /// Every sample round and event, to the dashboards connected now.
    updates: broadcast::Sender<Update>,
    /// Becomes true at shutdown: every stream ends.
    closing: watch::Sender<bool>,
    /// The client's events from the moment the history was made, for [`History::run`]: an
    /// instance discovered before the task starts is still listed as added.
    early_events: Mutex<Option<broadcast::Receiver<Event>>>,
}

#[derive(Debug, Default)]
struct Kept {
    /// By address, as the client keys instances.
    instances: BTreeMap<String, Tracked>,
    /// Oldest first.
    events: VecDeque<EventRecord>,
}

#[derive(Debug)]
struct Tracked {
    /// The instance's samples.
    history: InstanceHistory,
    /// Its request and failure counts at the previous sample, and when, for the rates.
    previous: Option<(u64, u64, Instant)>,
}

impl History {
    /// An empty history of `service`, starting now.
    pub fn new(service: &str) -> Self {
        let started_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis_u64);
        let (updates, _) = broadcast::channel(UPDATE_BACKLOG);
        let (closing, _) = watch::channel(false);
        Self {
            inner: Arc::new(Shared {
                service: service.to_owned(),
                started: Instant::now(),
                started_at_ms,
                kept: Mutex::new(Kept::default()),
                updates,
                closing,
                early_events: Mutex::new(None),
            }),
        }
    }

    /// An empty history of `client`'s service, starting now, that [`run`](Self::run) fills
    /// with `client`'s events from this moment on.
    pub fn following(client: &StatusSource) -> Self {
        let history = Self::new(client.service());
        *history
            .inner
            .early_events
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(client.subscribe());
        history
    }

    /// Milliseconds since the history began.
    fn now_ms(&self) -> u64 {
        millis_u64(self.inner.started.elapsed())
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while holding the lock leaves whole records behind; keep going.
        self.inner
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one sample of every instance in `statuses` (the client's
    /// [`StatusSource::instances`]) and broadcasts it with `ratings`. Instances the client
    /// no longer knows keep their samples until these are older than [`KEEP_SAMPLES`]
    /// rounds.
    pub fn sample(&self, statuses: &[InstanceStatus], ratings: SourceCounts) {
        let now = Instant::now();
        let t_ms = self.now_ms();
        let mut instances = Vec::with_capacity(statuses.len());
        {
            let mut kept = self.kept();
            for status in statuses {
                let tracked = kept
                    .instances
                    .entry(status.address.clone())
                    .or_insert_with(|| Tracked {
                        history: InstanceHistory {
                            id: status.id.clone(),
                            address: status.address.clone(),
                            samples: VecDeque::with_capacity(KEEP_SAMPLES),
                        },
                        previous: None,
                    });
                tracked.history.id.clone_from(&status.id);
                let sample = tracked.next(status, now, t_ms);
                instances.push(InstanceSample {
                    id: status.id.clone(),
                    address: status.address.clone(),
                    sample,
                });
            }
            let oldest_kept = t_ms.saturating_sub(millis_u64(SAMPLE_EVERY * KEEP_SAMPLES as u32));
            kept.instances.retain(|_, tracked| {
                tracked
                    .history
                    .samples
                    .back()
                    .is_some_and(|last| last.t_ms >= oldest_kept)
            });
        }
        instances.sort_by(|a, b| id_order(&a.id, &b.id));
        let _ = self.inner.updates.send(Update::Sample {
            t_ms,
            instances,
            ratings,
        });
    }

    /// Records `event` (if the dashboard shows its kind) and broadcasts it.
    pub fn record(&self, event: &Event) {
        let t_ms = self.now_ms();
        let record = {
            let mut kept = self.kept();
            let id_of = |address: &str| {
                kept.instances
                    .get(address)
                    .map(|tracked| tracked.history.id.clone())
            };
            let (kind, instance, detail) = match event {
                Event::InstanceAdded { id, address, .. } => {
                    ("added", Some(id.clone()), address.clone())
                }
                Event::InstanceRemoved { id, address, .. } => {
                    ("removed", Some(id.clone()), address.clone())
                }
                Event::BreakerOpened { address, .. } => ("opened", id_of(address), address.clone()),
                Event::BreakerRetesting { address, .. } => {
                    ("retest", id_of(address), address.clone())
                }
                Event::BreakerClosed { address, .. } => ("closed", id_of(address), address.clone()),
                Event::Hedged { slow, hedge, .. } => (
                    "hedged",
                    Some(slow.clone()),
                    format!("hedged on instance {hedge}"),
                ),
                Event::AllInstancesDown { .. } => ("all down", None, String::new()),
                Event::DiscoveryOutage { reason, .. } => ("discovery outage", None, reason.clone()),
                Event::DiscoveryRecovered { .. } => ("discovery recovered", None, String::new()),
                _ => return,
            };
            let record = EventRecord {
                t_ms,
                kind: kind.to_owned(),
                instance,
                detail,
            };
            if kept.events.len() == KEEP_EVENTS {
                kept.events.pop_front();
            }
            kept.events.push_back(record.clone());
            record
        };
        let _ = self.inner.updates.send(Update::Event(record));
    }

    /// Everything kept, as `/api/status/history` answers it.
    pub fn report(&self, ratings: SourceCounts) -> HistoryReport {
        let kept = self.kept();
        let mut instances: Vec<InstanceHistory> = kept
            .instances
            .values()
            .map(|tracked| tracked.history.clone())
            .collect();
        instances.sort_by(|a, b| id_order(&a.id, &b.id));
        HistoryReport {
            service: self.inner.service.clone(),
            started_at_ms: self.inner.started_at_ms,
            now_ms: self.now_ms(),
            sample_every_ms: millis_u64(SAMPLE_EVERY),
            instances,
            events: kept.events.iter().cloned().collect(),
            ratings,
        }
    }

    /// Every update from now on (subscribe before taking the [`report`](Self::report) a
    /// stream starts with, so nothing falls between them).
    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.inner.updates.subscribe()
    }

    /// Becomes true when the market shuts down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Ends every stream: called at shutdown, so open dashboards do not hold the server up.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Samples `client` every [`SAMPLE_EVERY`] and records its events (since
    /// [`following`](Self::following) if the history was made so), until
    /// [`close`](Self::close). `shown` gives the ratings-by-source totals.
    pub async fn run(self, client: StatusSource, shown: SourceCounter) {
        let early = self
            .inner
            .early_events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut events = early.unwrap_or_else(|| client.subscribe());
        let mut closing = self.closing();
        let mut ticks = tokio::time::interval(SAMPLE_EVERY);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.sample(&client.instances(), shown.totals()),
                event = events.recv() => match event {
                    Ok(event) => self.record(&event),
                    // Missed events are missed; the samples still show the states.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = closing.wait_for(|closing| *closing) => break,
            }
        }
    }
}

impl Tracked {
    /// Appends the sample of `status` at `now` (`t_ms`), dropping the oldest if full.
    fn next(&mut self, status: &InstanceStatus, now: Instant, t_ms: u64) -> Sample {
        let (requests, failures) = match self.previous {
            Some((requests, failures, then)) => {
                let seconds = now.saturating_duration_since(then).as_secs_f64();
                let new_requests = status.requests.saturating_sub(requests);
                let new_failures = status.failures.saturating_sub(failures);
                let rate = if seconds > 0.0 {
                    new_requests as f64 / seconds
                } else {
                    0.0
                };
                let ratio = (new_requests > 0).then(|| new_failures as f64 / new_requests as f64);
                (rate, ratio)
            }
            None => (0.0, None),
        };
        self.previous = Some((status.requests, status.failures, now));
        let sample = Sample {
            t_ms,
            state: status.state.as_str().to_owned(),
            requests_per_s: round2(requests),
            error_ratio: failures.map(round2),
            p50_ms: status.latency_p50.map(|d| round2(d.as_secs_f64() * 1000.0)),
            p99_ms: status.latency_p99.map(|d| round2(d.as_secs_f64() * 1000.0)),
        };
        if self.history.samples.len() == KEEP_SAMPLES {
            self.history.samples.pop_front();
        }
        self.history.samples.push_back(sample.clone());
        sample
    }
}

/// To a hundredth.
fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Whole milliseconds, saturating.
fn millis_u64(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use discovery_client::breaker::BreakerState;

    use super::*;

    fn status(id: &str, state: BreakerState, requests: u64, failures: u64) -> InstanceStatus {
        InstanceStatus {
            id: id.into(),
            address: format!("http://127.0.0.1:800{id}"),
            state,
            in_flight: 0,
            requests,
            failures,
            latency_p50: Some(Duration::from_micros(1_500)),
            latency_p99: Some(Duration::from_millis(300)),
            latency_estimate: None,
            share: 1.0,
            pushed_back_for: None,
        }
    }

    fn opened(id: &str) -> Event {
        Event::BreakerOpened {
            service: "ratings".into(),
            address: format!("http://127.0.0.1:800{id}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn samples_carry_rates_ratios_and_states_per_second() {
        let history = History::new("ratings");
        history.sample(
            &[status("1", BreakerState::Closed, 10, 0)],
            SourceCounts::default(),
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        history.sample(
            &[
                status("1", BreakerState::Open, 14, 2),
                status("2", BreakerState::Closed, 0, 0),
            ],
            SourceCounts::default(),
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        history.sample(
            &[
                status("1", BreakerState::Open, 14, 2),
                status("2", BreakerState::Closed, 6, 0),
            ],
            SourceCounts::default(),
        );

        let report = history.report(SourceCounts::default());
        assert_eq!(report.now_ms, 3000);
        assert_eq!(report.sample_every_ms, 1000);
        let one = &report.instances[0].samples;
        let shape: Vec<(u64, &str, f64, Option<f64>)> = one
            .iter()
            .map(|s| (s.t_ms, s.state.as_str(), s.requests_per_s, s.error_ratio))
            .collect();
        assert_eq!(
            shape,
            [
                (0, "closed", 0.0, None),
                (1000, "open", 4.0, Some(0.5)),
                (3000, "open", 0.0, None),
            ]
        );
        assert_eq!(one[1].p50_ms, Some(1.5));
        assert_eq!(one[1].p99_ms, Some(300.0));
        let two = &report.instances[1];
        assert_eq!(two.id, "2");
        assert_eq!(
            two.samples.back().map(|s| s.requests_per_s),
            Some(3.0),
            "6 over 2 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn samples_and_events_are_bounded_and_gone_instances_age_out() {
        let history = History::new("ratings");
        for round in 0..KEEP_SAMPLES + 20 {
            let mut statuses = vec![status("1", BreakerState::Closed, 0, 0)];
            if round < 10 {
                statuses.push(status("2", BreakerState::Closed, 0, 0));
            }
            history.sample(&statuses, SourceCounts::default());
            history.record(&opened("1"));
            tokio::time::advance(SAMPLE_EVERY).await;
        }
        let report = history.report(SourceCounts::default());
        assert_eq!(report.instances.len(), 1, "instance 2 aged out");
        let samples = &report.instances[0].samples;
        assert_eq!(samples.len(), KEEP_SAMPLES);
        assert_eq!(
            samples.front().map(|s| s.t_ms),
            Some(20_000),
            "the oldest dropped"
        );
        assert_eq!(report.events.len(), KEEP_EVENTS);
        assert_eq!(
            report.events.last().map(|e| e.t_ms),
            Some(millis_u64(SAMPLE_EVERY) * (KEEP_SAMPLES as u64 + 19))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn events_name_the_instance_and_reach_subscribers_at_once() {
        let history = History::new("ratings");
        history.sample(
            &[status("1", BreakerState::Closed, 0, 0)],
            SourceCounts::default(),
        );
        let mut updates = history.subscribe();
        tokio::time::advance(Duration::from_millis(250)).await;
        history.record(&opened("1"));
        history.record(&opened("9"));
        history.record(&Event::Hedged {
            service: "ratings".into(),
            slow: "1".into(),
            hedge: "2".into(),
        });
        history.record(&Event::AllInstancesDown {
            service: "ratings".into(),
        });
        let update = updates.try_recv().unwrap();
        assert_eq!(
            update,
            Update::Event(EventRecord {
                t_ms: 250,
                kind: "opened".into(),
                instance: Some("1".into()),
                detail: "http://127.0.0.1:8001".into(),
            })
        );
        let kinds: Vec<(String, Option<String>)> = history
            .report(SourceCounts::default())
            .events
            .into_iter()
            .map(|e| (e.kind, e.instance))
            .collect();
        assert_eq!(
            kinds,
            [
                ("opened".into(), Some("1".into())),
                ("opened".into(), None),
                ("hedged".into(), Some("1".into())),
                ("all down".into(), None),
            ]
        );
        let json = serde_json::to_value(updates.try_recv().unwrap()).unwrap();
        assert_eq!(json["type"], "event", "{json}");
        assert_eq!(json["kind"], "opened", "{json}");
    }

    #[tokio::test(start_paused = true)]
    async fn run_samples_every_second_until_closed() {
        let client = discovery_client::ServiceClient::builder("ratings")
            .discovery(discovery_client::StaticDiscovery::new([
                "http://127.0.0.1:9",
            ]))
            .build()
            .unwrap();
        let history = History::new("ratings");
        let source = StatusSource::Http(client);
        let task = tokio::spawn(history.clone().run(source, SourceCounter::new()));
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let samples = history.report(SourceCounts::default()).instances[0]
            .samples
            .len();
        assert_eq!(samples, 4, "at 0, 1, 2 and 3 s");
        history.close();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the task ends when closed")
            .unwrap();
    }
}
