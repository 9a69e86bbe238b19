//! Scenario 2, a sick instance: during each contender's run, instance 1 of 3 is paused with
//! SIGSTOP (it keeps its sockets, so connections and requests are accepted by the kernel and
//! then nothing happens) and later resumed with SIGCONT. Each contender gets a fresh client
//! or a fresh proxy process, so none starts with knowledge from an earlier run.
//!
//! After the measured run, light load continues (4 workers) until the resumed instance
//! answers a request sent after the resume, or until the retest delay plus 5 s has passed:
//! that is "time to use the instance again".

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use discovery_client::Event;

use super::steady::Baseline;
use super::{Bed, Kind, kinds, make};
use crate::config::Plan;
use crate::contender::{Contender, paths};
use crate::latency::{Latencies, show};
use crate::load::{Sample, closed_loop, warm};
use crate::report::{Section, Table};

/// The instance that gets paused (the first; plain reqwest to one instance calls it).
const SICK: usize = 0;

/// Breaker events of our client, with when they happened (from the run's start).
type EventLog = Arc<Mutex<Vec<(Duration, Event)>>>;

/// What one contender did.
struct Outcome {
    kind: Kind,
    window: Vec<Sample>,
    paused_at: Duration,
    resumed_at: Duration,
    reuse_after_resume: Option<Duration>,
    tail_limit: Duration,
    events: Vec<(Duration, Event)>,
}

/// Runs scenario 2 and reports it.
pub async fn run(
    bed: &mut Bed,
    plan: &Plan,
    baseline: Option<Baseline>,
) -> Result<Section, String> {
    let mut outcomes = Vec::new();
    for kind in kinds(bed, plan, true) {
        eprintln!("  sick: {}", kind.name());
        outcomes.push(run_one(bed, plan, kind).await?);
    }
    Ok(report(&outcomes, plan, baseline))
}

async fn run_one(bed: &mut Bed, plan: &Plan, kind: Kind) -> Result<Outcome, String> {
    let entry = make(bed, kind, plan, plan.sick_retest).await?;
    let paths = Arc::new(paths());
    let sick_id = u16::try_from(SICK + 1).unwrap_or(1);
    let sick_address = bed.instances[SICK].url.clone();
    // Warm up (pools filled) without pausing anything.
    warm(&entry.contender, &paths, plan.concurrency, plan.warmup).await;

    let origin = Instant::now();
    let log: EventLog = Arc::new(Mutex::new(Vec::new()));
    let listener = if let Contender::Ours(client) = &*entry.contender {
        let mut events = client.subscribe();
        let log = Arc::clone(&log);
        Some(tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((origin.elapsed(), event));
            }
        }))
    } else {
        None
    };
    let load = tokio::spawn(closed_loop(
        Arc::clone(&entry.contender),
        Arc::clone(&paths),
        plan.concurrency,
        origin,
        plan.sick_run,
        usize::MAX,
    ));
    tokio::time::sleep_until((origin + plan.sick_pause_at).into()).await;
    bed.instances[SICK].process.pause()?;
    let paused_at = origin.elapsed();
    tokio::time::sleep_until((origin + plan.sick_pause_at + plan.sick_pause_for).into()).await;
    bed.instances[SICK].process.resume()?;
    let resumed_at = origin.elapsed();
    let run = load.await.map_err(|e| format!("load task: {e}"))?;

    let reuse = |samples: &[Sample]| {
        samples
            .iter()
            .filter(|s| s.start >= resumed_at && s.instance == Some(sick_id))
            .map(|s| s.end() - resumed_at)
            .min()
    };
    let mut reuse_after_resume = reuse(&run.samples);
    let tail_limit = resumed_at + plan.sick_retest + Duration::from_secs(5);
    while reuse_after_resume.is_none() && origin.elapsed() < tail_limit {
        let tail = closed_loop(
            Arc::clone(&entry.contender),
            Arc::clone(&paths),
            4,
            origin,
            origin.elapsed() + Duration::from_millis(250),
            100_000,
        )
        .await;
        reuse_after_resume = reuse(&tail.samples);
    }
    if let Some(listener) = listener {
        listener.abort();
    }
    let events = log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(_, e)| event_address(e) == Some(sick_address.as_str()))
        .cloned()
        .collect();
    let window = run
        .samples
        .into_iter()
        .filter(|s| s.start < plan.sick_run)
        .collect();
    Ok(Outcome {
        kind,
        window,
        paused_at,
        resumed_at,
        reuse_after_resume,
        tail_limit: tail_limit - resumed_at,
        events,
    })
}

fn event_address(event: &Event) -> Option<&str> {
    match event {
        Event::BreakerOpened { address, .. }
        | Event::BreakerRetesting { address, .. }
        | Event::BreakerClosed { address, .. } => Some(address),
        _ => None,
    }
}

fn event_word(event: &Event) -> &'static str {
    match event {
        Event::BreakerOpened { .. } => "OPEN",
        Event::BreakerRetesting { .. } => "RETEST",
        Event::BreakerClosed { .. } => "CLOSE",
        _ => "other",
    }
}

/// Per-contender figures over the measured window.
struct Figures {
    ok: u64,
    failed: u64,
    waited: u64,
    stuck_at_pause: u64,
    latencies: Latencies,
    ok_during_pause: u64,
}

fn figures(o: &Outcome, plan: &Plan) -> Figures {
    let mut latencies = Latencies::new();
    let threshold = plan.timeout.mul_f64(0.9);
    let mut f = Figures {
        ok: 0,
        failed: 0,
        waited: 0,
        stuck_at_pause: 0,
        latencies: Latencies::new(),
        ok_during_pause: 0,
    };
    for s in &o.window {
        latencies.record(s.latency);
        match s.instance {
            Some(_) => f.ok += 1,
            None => f.failed += 1,
        }
        if s.latency >= threshold {
            f.waited += 1;
        }
        if s.start < o.paused_at && s.end() > o.paused_at + Duration::from_millis(500) {
            f.stuck_at_pause += 1;
        }
        if s.instance.is_some() && s.end() >= o.paused_at && s.end() < o.resumed_at {
            f.ok_during_pause += 1;
        }
    }
    f.latencies = latencies;
    f
}

fn report(outcomes: &[Outcome], plan: &Plan, baseline: Option<Baseline>) -> Section {
    let mut section = Section::new("2. Sick instance (SIGSTOP)");
    section.note(format!(
        "Closed loop, {} workers, 3 instances; instance 1 paused at +{:.0} s for {:.0} s of a {:.0} s run, \
         then resumed. Every contender: {} ms per-attempt timeout, {} retries on another instance where it \
         can retry, one failure marks an instance down, retest after {}. Plain reqwest to one instance calls \
         the instance that is paused. \"waited\" = requests that took ≥ 0.9 × the timeout; \"caught by the \
         pause\" = requests sent before the pause that were still unanswered 0.5 s after it.",
        plan.concurrency,
        plan.sick_pause_at.as_secs_f64(),
        plan.sick_pause_for.as_secs_f64(),
        plan.sick_run.as_secs_f64(),
        plan.timeout.as_millis(),
        plan.retries,
        humantime::format_duration(plan.sick_retest),
    ));
    let mut table = Table::new([
        "contender",
        "failed",
        "waited ≥ 0.9 s",
        "caught by the pause",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "req/s over run",
        "req/s while paused",
        "re-used after resume",
    ]);
    let mut ours = Vec::new();
    for o in outcomes {
        let f = figures(o, plan);
        let reuse = match o.reuse_after_resume {
            Some(d) => show(d),
            None => format!("not within {}", show(o.tail_limit)),
        };
        table.row([
            o.kind.name().to_string(),
            f.failed.to_string(),
            f.waited.to_string(),
            f.stuck_at_pause.to_string(),
            show(f.latencies.percentile(50.0)),
            show(f.latencies.percentile(90.0)),
            show(f.latencies.percentile(99.0)),
            show(f.latencies.percentile(99.9)),
            show(f.latencies.max()),
            format!("{:.0}", f.ok as f64 / plan.sick_run.as_secs_f64()),
            format!(
                "{:.0}",
                f.ok_during_pause as f64 / plan.sick_pause_for.as_secs_f64()
            ),
            reuse,
        ]);
        if matches!(o.kind, Kind::Ours | Kind::OursUnhedged) {
            ours.push((o, f));
        }
    }
    section.table(&table);
    for (o, f) in ours {
        // The lines of the client with hedging off are marked; the default's keep their wording.
        let (whose, mark) = match o.kind {
            Kind::OursUnhedged => ("With hedging off, our client's", "hedging off: "),
            _ => ("Our client's", ""),
        };
        let timeline: Vec<String> = o
            .events
            .iter()
            .map(|(at, e)| format!("{} at +{:.2} s", event_word(e), at.as_secs_f64()))
            .collect();
        section.note(format!(
            "{whose} breaker on instance 1 (paused at +{:.2} s, resumed at +{:.2} s): {}.",
            o.paused_at.as_secs_f64(),
            o.resumed_at.as_secs_f64(),
            if timeline.is_empty() {
                "no transition".to_string()
            } else {
                timeline.join(", ")
            }
        ));
        let probes = o
            .events
            .iter()
            .filter(|(at, e)| {
                matches!(e, Event::BreakerRetesting { .. })
                    && *at >= o.paused_at
                    && *at < o.resumed_at
            })
            .count() as u64;
        section.target(
            f.failed == 0,
            format!("{mark}0 failed requests: {}", f.failed),
        );
        section.target(
            f.waited <= f.stuck_at_pause + probes,
            format!(
                "{mark}requests that waited for a timeout ({}) ≤ those caught by the pause ({}) + one probe per \
                 retest window during the pause ({})",
                f.waited, f.stuck_at_pause, probes
            ),
        );
        match baseline {
            Some(b) => {
                let p99 = f.latencies.percentile(99.0);
                section.target(
                    p99.as_secs_f64() <= 2.0 * b.ours_p99.as_secs_f64(),
                    format!(
                        "{mark}p99 over the run ({}) ≤ 2× our steady-state p99 ({})",
                        show(p99),
                        show(b.ours_p99)
                    ),
                );
            }
            None => section.note("(p99 target not judged: the steady scenario did not run.)"),
        }
        section.end_list();
    }
    section
}
