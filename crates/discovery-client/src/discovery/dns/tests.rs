//! The schedule on paused time through a scripted [`Lookup`]: TTLs clamped, failures and
//! empty answers keeping the last set, the grace period, outages reported once, refreshes
//! the client asks for. The real name server is in `tests/dns.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use super::lookup::{Answer, Lookup, LookupError};
use super::schedule::Schedule;
use crate::Instance;
use crate::discovery::{DiscoveryReport, DiscoverySink, InstanceSet};

/// Answers lookups from a script, the last entry over and over; notes when each was asked.
struct Script {
    answers: Mutex<VecDeque<Result<Answer, LookupError>>>,
    asked: mpsc::UnboundedSender<Instant>,
}

impl Lookup for Script {
    fn lookup(&self) -> BoxFuture<'static, Result<Answer, LookupError>> {
        let _ = self.asked.send(Instant::now());
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        let answer = if answers.len() > 1 {
            answers.pop_front()
        } else {
            answers.front().cloned()
        };
        let answer = answer.unwrap_or(Err(LookupError::Failed("script ended".into())));
        async move {
            // A hanging lookup is scripted as a failure named "hang".
            if matches!(&answer, Err(LookupError::Failed(r)) if r == "hang") {
                futures::future::pending::<()>().await;
            }
            answer
        }
        .boxed()
    }
}

/// A running schedule and what it publishes.
struct Run {
    script: Arc<Script>,
    asked: mpsc::UnboundedReceiver<Instant>,
    sets: watch::Receiver<Option<InstanceSet>>,
    reports: mpsc::UnboundedReceiver<DiscoveryReport>,
    refresh: Arc<Notify>,
    start: Instant,
    _task: tokio::task::JoinHandle<()>,
}

impl Run {
    fn new(schedule: Schedule, script: Vec<Result<Answer, LookupError>>) -> Self {
        let (asked_tx, asked) = mpsc::unbounded_channel();
        let script = Arc::new(Script {
            answers: Mutex::new(script.into()),
            asked: asked_tx,
        });
        let (sets_tx, sets) = watch::channel(None);
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let refresh = Arc::new(Notify::new());
        let sink = DiscoverySink {
            sets: sets_tx,
            reports: reports_tx,
            refresh: Arc::clone(&refresh),
        };
        let lookup: Arc<dyn Lookup> = script.clone();
        let task = tokio::spawn(schedule.follow(lookup, "ratings.test".into(), sink));
        Self {
            script,
            asked,
            sets,
            reports,
            refresh,
            start: Instant::now(),
            _task: task,
        }
    }

    /// Replaces what every lookup from now on answers.
    fn answer(&self, answer: Result<Answer, LookupError>) {
        let mut answers = self
            .script
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        answers.clear();
        answers.push_back(answer);
    }

    /// When the next lookup is asked, in ms since the start (at most 10 min of tokio time).
    async fn next_lookup(&mut self) -> u128 {
        let at = tokio::time::timeout(Duration::from_secs(600), self.asked.recv())
            .await
            .expect("a lookup in time")
            .expect("schedule running");
        (at - self.start).as_millis()
    }

    /// The ids of the published set (`None`: nothing published yet).
    fn ids(&mut self) -> Option<Vec<String>> {
        self.sets
            .borrow_and_update()
            .as_ref()
            .map(|set| set.iter().map(|i| i.id.clone()).collect())
    }

    /// The reports so far.
    fn reports(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(report) = self.reports.try_recv() {
            seen.push(match report {
                DiscoveryReport::Outage(reason) => format!("outage: {reason}"),
                DiscoveryReport::Recovered => "recovered".into(),
            });
        }
        seen
    }
}

fn answer(ids: &[&str], ttl_secs: u64) -> Result<Answer, LookupError> {
    Ok(Answer {
        instances: ids
            .iter()
            .map(|id| Instance::new(*id, format!("http://{id}")))
            .collect(),
        ttl: Duration::from_secs(ttl_secs),
    })
}

fn nxdomain() -> Result<Answer, LookupError> {
    Err(LookupError::Empty {
        reason: "ratings.test A/AAAA: no such name (NXDOMAIN)".into(),
        ttl: None,
    })
}

fn servfail() -> Result<Answer, LookupError> {
    Err(LookupError::Failed(
        "ratings.test A/AAAA lookup failed: SERVFAIL".into(),
    ))
}

/// Lets the schedule's task run what is ready (without moving paused time).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn looks_again_when_the_ttl_runs_out_clamped_to_min_and_max() {
    let mut run = Run::new(
        Schedule::default(),
        vec![
            answer(&["a"], 5),
            answer(&["a"], 0),
            answer(&["a"], 3600),
            answer(&["a"], 2),
        ],
    );
    assert_eq!(run.next_lookup().await, 0);
    assert_eq!(run.next_lookup().await, 5_000, "the TTL: 5 s");
    assert_eq!(run.next_lookup().await, 6_000, "TTL 0: min_ttl 1 s");
    assert_eq!(run.next_lookup().await, 36_000, "TTL 1 h: max_ttl 30 s");
    assert_eq!(run.next_lookup().await, 38_000);
    assert!(run.reports().is_empty(), "no outage");
}

#[tokio::test(start_paused = true)]
async fn a_failed_lookup_keeps_the_last_set_reports_once_and_backs_off() {
    let mut run = Run::new(
        Schedule::default(),
        vec![answer(&["a", "b"], 1), servfail()],
    );
    assert_eq!(run.next_lookup().await, 0);
    settle().await;
    assert_eq!(run.ids(), Some(vec!["a".into(), "b".into()]));
    let mut at = Vec::new();
    for _ in 0..7 {
        at.push(run.next_lookup().await);
    }
    // Answered at 0 (TTL 1 s), failing from 1 s: retried after 1, 2, 4, 8, 16, 30, 30 s.
    assert_eq!(
        at,
        [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 62_000],
        "backoff from min_ttl to max_ttl"
    );
    settle().await;
    assert_eq!(run.ids(), Some(vec!["a".into(), "b".into()]), "kept");
    assert_eq!(
        run.reports(),
        ["outage: ratings.test A/AAAA lookup failed: SERVFAIL; keeping the last 2 instances"],
        "one report for six failures"
    );
    run.answer(answer(&["b", "c"], 1));
    assert_eq!(run.next_lookup().await, 92_000);
    settle().await;
    assert_eq!(run.ids(), Some(vec!["b".into(), "c".into()]));
    assert_eq!(run.reports(), ["recovered"]);
}

#[tokio::test(start_paused = true)]
async fn an_empty_answer_keeps_the_set_for_the_grace_then_empties_it() {
    let schedule = Schedule {
        empty_grace: Duration::from_millis(2_500),
        ..Schedule::default()
    };
    let mut run = Run::new(schedule, vec![answer(&["a"], 1), nxdomain()]);
    assert_eq!(run.next_lookup().await, 0);
    assert_eq!(run.next_lookup().await, 1_000, "first NXDOMAIN");
    settle().await;
    assert_eq!(run.ids(), Some(vec!["a".into()]), "kept in the grace");
    assert_eq!(run.next_lookup().await, 2_000);
    settle().await;
    assert_eq!(run.ids(), Some(vec!["a".into()]), "kept in the grace");
    assert_eq!(
        run.next_lookup().await,
        3_000,
        "looked up again when the grace would end"
    );
    assert_eq!(run.next_lookup().await, 3_500, "the grace's end");
    settle().await;
    assert_eq!(run.ids(), Some(vec![]), "emptied after the grace");
    assert_eq!(
        run.reports(),
        [
            "outage: ratings.test A/AAAA: no such name (NXDOMAIN); keeping the last 1 instances for 2.5s"
        ]
    );
    run.answer(answer(&["b"], 1));
    run.next_lookup().await;
    settle().await;
    assert_eq!(run.ids(), Some(vec!["b".into()]));
    assert_eq!(run.reports(), ["recovered"]);
}

#[tokio::test(start_paused = true)]
async fn records_back_within_the_grace_end_it() {
    let schedule = Schedule {
        empty_grace: Duration::from_secs(3),
        ..Schedule::default()
    };
    let mut run = Run::new(
        schedule,
        vec![answer(&["a"], 1), nxdomain(), answer(&["a"], 1), nxdomain()],
    );
    for _ in 0..4 {
        run.next_lookup().await;
    }
    // Empty again at 3 s: a new grace from there, so still kept at 5 s.
    assert_eq!(run.next_lookup().await, 4_000);
    assert_eq!(run.next_lookup().await, 5_000);
    settle().await;
    assert_eq!(run.ids(), Some(vec!["a".into()]));
    assert_eq!(run.reports().len(), 3, "outage, recovered, outage");
}

#[tokio::test(start_paused = true)]
async fn an_empty_first_answer_is_an_empty_set_and_an_outage() {
    let mut run = Run::new(Schedule::default(), vec![nxdomain()]);
    run.next_lookup().await;
    settle().await;
    assert_eq!(run.ids(), Some(vec![]), "calls fail fast, not wait");
    assert_eq!(
        run.reports(),
        ["outage: ratings.test A/AAAA: no such name (NXDOMAIN)"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_before_any_answer_publishes_nothing() {
    let mut run = Run::new(Schedule::default(), vec![servfail()]);
    run.next_lookup().await;
    settle().await;
    assert_eq!(
        run.ids(),
        None,
        "the client reports the outage as the error"
    );
    assert_eq!(run.reports().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lookup_that_hangs_fails_at_the_limit() {
    let schedule = Schedule {
        lookup_limit: Duration::from_secs(5),
        ..Schedule::default()
    };
    let mut run = Run::new(
        schedule,
        vec![answer(&["a"], 1), Err(LookupError::Failed("hang".into()))],
    );
    assert_eq!(run.next_lookup().await, 0);
    assert_eq!(run.next_lookup().await, 1_000);
    assert_eq!(
        run.next_lookup().await,
        7_000,
        "5 s limit, then 1 s backoff"
    );
    settle().await;
    assert_eq!(run.ids(), Some(vec!["a".into()]));
    assert_eq!(
        run.reports(),
        ["outage: ratings.test: no answer within 5s; keeping the last 1 instances"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_refresh_request_looks_again_at_once_but_not_before_min_ttl() {
    let mut run = Run::new(Schedule::default(), vec![answer(&["a"], 30)]);
    assert_eq!(run.next_lookup().await, 0);
    tokio::time::sleep(Duration::from_secs(10)).await;
    run.refresh.notify_one();
    assert_eq!(run.next_lookup().await, 10_000, "at once, not at 30 s");
    // Two requests right after a lookup: one lookup, min_ttl after it.
    run.refresh.notify_one();
    run.refresh.notify_one();
    assert_eq!(run.next_lookup().await, 11_000);
    assert_eq!(run.next_lookup().await, 41_000, "then the TTL again");
}

#[test]
fn an_instance_is_named_by_its_address_and_port() {
    let v4 = super::lookup::instance("http", "10.0.0.5".parse().expect("ip"), 8080, "r.test");
    assert_eq!(
        (v4.id.as_str(), v4.address.as_str()),
        ("10.0.0.5:8080", "http://10.0.0.5:8080")
    );
    assert!(v4.metadata.is_empty(), "no TLS name over http");
    let v6 = super::lookup::instance("https", "fd00::5".parse().expect("ip"), 443, "r.test");
    assert_eq!(
        (v6.id.as_str(), v6.address.as_str()),
        ("[fd00::5]:443", "https://[fd00::5]:443")
    );
    assert_eq!(
        v6.metadata.get(crate::TLS_SERVER_NAME).map(String::as_str),
        Some("r.test")
    );
}
