//! The conditions of tower's `examples/tower-balance.rs`: ten endpoints whose latencies are
//! drawn uniformly from zero to 1, 5, 10, 10, 10, 100, 100, 100, 500 and 1000 ms, and many
//! concurrent requests (tower's example: 500 at a time, 100,000 in all). Here the endpoints
//! are in-process servers on loopback sockets ([`crate::loopback_ratings`]), so every
//! contender pays for real HTTP calls: our client with its default balancing and with plain
//! round-robin, and tower's own `p2c::Balance` over `PeakEwmaDiscover` (tower's example's
//! decay and default RTT) and over `PendingRequestsDiscover`. No warm-up, as in tower's
//! example: each contender starts fresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Kind, make_for};
use crate::config::Plan;
use crate::figures::Figures;
use crate::latency::show;
use crate::load::closed_loop;
use crate::loopback_ratings;
use crate::report::{Section, Table};

/// The endpoints' maximum latencies, as in tower's example.
pub const MAX_LATENCIES_MS: [u64; 10] = [1, 5, 10, 10, 10, 100, 100, 100, 500, 1000];
/// Per-attempt timeout here: above the slowest endpoint's worst answer, so that no contender
/// fails a call because of it (tower's example has none).
const TIMEOUT: Duration = Duration::from_secs(5);

/// The contenders, in table order; `--contender` picks among them.
pub fn kinds(plan: &Plan) -> Vec<Kind> {
    let mut kinds = vec![
        Kind::Ours,
        Kind::TowerPeakEwma,
        Kind::OursRoundRobin,
        Kind::TowerPendingRequests,
    ];
    if !plan.contenders.is_empty() {
        kinds.retain(|k| plan.contenders.contains(&k.flag()));
    }
    kinds
}

/// What one contender did.
struct Outcome {
    kind: Kind,
    figures: Figures,
    elapsed: Duration,
}

/// Runs the tower-balance scenario.
pub async fn run(plan: &Plan) -> Result<Section, String> {
    let maxima: Vec<Duration> = MAX_LATENCIES_MS
        .iter()
        .map(|&ms| Duration::from_millis(ms))
        .collect();
    let endpoints = loopback_ratings::start(&maxima).await?;
    let mut plan = plan.clone();
    plan.timeout = TIMEOUT;
    let paths = Arc::new(crate::contender::paths());
    let mut outcomes = Vec::new();
    for kind in kinds(&plan) {
        eprintln!("  tower-balance: {}", kind.name());
        let entry = make_for(&endpoints.urls, &[], kind, &plan, Duration::from_secs(30)).await?;
        let run = closed_loop(
            Arc::clone(&entry.contender),
            Arc::clone(&paths),
            plan.tower_concurrency,
            Instant::now(),
            plan.tower_limit,
            plan.tower_requests,
        )
        .await;
        outcomes.push(Outcome {
            kind,
            figures: Figures::of(&run.samples),
            elapsed: run.elapsed,
        });
    }
    drop(endpoints);
    Ok(report(&outcomes, &plan))
}

fn report(outcomes: &[Outcome], plan: &Plan) -> Section {
    let mut section = Section::new("10. tower's balance example: latencies from 1 ms to 1 s");
    let maxima: Vec<String> = MAX_LATENCIES_MS.iter().map(|ms| format!("{ms}")).collect();
    section.note(format!(
        "10 in-process loopback endpoints, each answering after a latency drawn uniformly from 0 \
         to its maximum ({} ms), as in tower's `examples/tower-balance.rs`. Closed loop, {} \
         concurrent requests, {} requests per contender (or {} at most). Per-attempt timeout {} \
         for every contender. Latency is per request as the caller saw it. tower's balancers run \
         behind a `Buffer` so that many callers can share them.",
        maxima.join(", "),
        plan.tower_concurrency,
        plan.tower_requests,
        show(plan.tower_limit),
        show(TIMEOUT),
    ));
    let mut table = Table::new([
        "contender",
        "requests",
        "failed",
        "req/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "share per endpoint (max latency: share)",
    ]);
    for o in outcomes {
        let f = &o.figures;
        let shares: Vec<String> = MAX_LATENCIES_MS
            .iter()
            .enumerate()
            .map(|(i, ms)| {
                let n = u16::try_from(i + 1).unwrap_or(u16::MAX);
                format!("{ms}: {:.1}", 100.0 * f.share(n).unwrap_or(0.0))
            })
            .collect();
        table.row([
            o.kind.name().to_string(),
            (f.ok + f.failed).to_string(),
            f.failed.to_string(),
            format!("{:.0}", f.ok as f64 / o.elapsed.as_secs_f64().max(1e-9)),
            show(f.latencies.percentile(50.0)),
            show(f.latencies.percentile(90.0)),
            show(f.latencies.percentile(99.0)),
            show(f.latencies.percentile(99.9)),
            show(f.latencies.max()),
            format!("{} %", shares.join(", ")),
        ]);
    }
    section.table(&table);
    let find = |kind| outcomes.iter().find(|o| o.kind == kind);
    match (find(Kind::Ours), find(Kind::TowerPeakEwma)) {
        (Some(ours), Some(tower)) => {
            for (name, p) in [("p99", 99.0), ("p99.9", 99.9)] {
                let (a, b) = (
                    ours.figures.latencies.percentile(p),
                    tower.figures.latencies.percentile(p),
                );
                section.target(
                    a <= b,
                    format!(
                        "ours at or below tower's PeakEwma at {name}: {} vs {}",
                        show(a),
                        show(b)
                    ),
                );
            }
            section.end_list();
        }
        _ => section.note("(targets not judged: ours or tower's PeakEwma did not run.)"),
    }
    section
}
