//! Scenario 1, steady-state overhead: the same closed-loop load of `GET /ratings/{id}`
//! through every contender, interleaved in rounds (each round runs every contender once,
//! starting with a different one), so background noise falls on all of them alike.

use std::time::Duration;

use super::rounds::{self, CPU_NOTE, Tally, measure};
use super::{Bed, Kind, kinds, make};
use crate::config::Plan;
use crate::report::Section;

/// Figures later scenarios compare against.
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    /// Our client's p99 in this scenario.
    pub ours_p99: Duration,
}

/// Runs scenario 1 and reports it.
pub async fn run(bed: &Bed, plan: &Plan) -> Result<(Section, Option<Baseline>), String> {
    let mut entries = Vec::new();
    for kind in kinds(bed, plan, false) {
        entries.push((kind, make(bed, kind, plan, Duration::from_secs(30)).await?));
    }
    let instances: Vec<_> = bed.instances.iter().collect();
    let tallies = measure(entries, &instances, plan, "steady").await;
    Ok(report(&tallies, plan))
}

fn report(tallies: &[Tally<Kind>], plan: &Plan) -> (Section, Option<Baseline>) {
    let mut section = Section::new("1. Steady-state overhead");
    section.note(format!(
        "Closed loop, {} workers, `GET /ratings/{{id}}` over 7 items, cache off, 3 ratings instances. \
         {} rounds × {} s per contender, interleaved (each round starts with the next contender); \
         {} ms warm-up each. Throughput counts successful answers; latency is per request as the caller saw it.",
        plan.concurrency,
        plan.steady_rounds,
        plan.steady_window.as_secs_f64(),
        plan.warmup.as_millis()
    ));
    let find = |kind: Kind| tallies.iter().find(|t| t.kind == kind);
    let direct = find(Kind::Direct);
    let rr = find(Kind::RoundRobin);
    let ours = find(Kind::Ours);
    let ours_tp = ours.map_or(0.0, Tally::throughput);
    let base = "reqwest one instance";
    section.table(&rounds::throughput_table(tallies, direct, base, ours));
    section.note(CPU_NOTE);
    section.table(&rounds::cpu_table(tallies, direct, base, ours));
    if let Some(ours) = ours {
        for (label, other) in [
            ("reqwest, one instance", direct),
            ("reqwest, round-robin by hand", rr),
        ] {
            if let Some(other) = other {
                let r = ours_tp / other.throughput();
                section.target(
                    r >= 0.95,
                    format!("throughput ≥ 0.95× plain {label}: {r:.2}×"),
                );
                let p = ours.latencies.percentile(99.0).as_secs_f64()
                    / other.latencies.percentile(99.0).as_secs_f64();
                section.target(p <= 1.10, format!("p99 ≤ plain {label} + 10 %: {p:.2}×"));
            }
        }
        for t in tallies.iter().filter(|t| matches!(t.kind, Kind::Peer(_))) {
            let r = ours_tp / t.throughput();
            section.target(
                r >= 1.5,
                format!("throughput ≥ 1.5× {}: {r:.2}×", t.kind.name()),
            );
        }
        section.end_list();
    }
    let baseline = ours.map(|t| Baseline {
        ours_p99: t.latencies.percentile(99.0),
    });
    (section, baseline)
}
