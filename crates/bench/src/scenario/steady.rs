//! Scenario 1, steady-state overhead: the same closed-loop load of `GET /ratings/{id}`
//! through every contender, interleaved in rounds (each round runs every contender once,
//! starting with a different one), so background noise falls on all of them alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Bed, Entry, Kind, kinds, make};
use crate::config::Plan;
use crate::contender::paths;
use crate::latency::{Latencies, show};
use crate::load::closed_loop;
use crate::report::{Section, Table, ratio};

/// What one contender did over all rounds.
struct Tally {
    kind: Kind,
    ok: u64,
    failed: u64,
    measured: Duration,
    latencies: Latencies,
    per_round: Vec<f64>,
    /// CPU used during the measured windows: this process (the caller), the proxy (if any),
    /// the three instances.
    cpu_caller: Duration,
    cpu_proxy: Duration,
    cpu_instances: Duration,
}

/// CPU time so far of the caller (this process), a proxy, and the instances.
fn cpu_now(bed: &Bed, entry: &Entry) -> (Duration, Duration, Duration) {
    let caller = crate::procs::cpu_time_of(std::process::id() as i32).unwrap_or_default();
    let proxy = entry
        .peer
        .as_ref()
        .map_or(Duration::ZERO, |p| p.process.group_cpu_time());
    let instances = bed
        .instances
        .iter()
        .map(|i| i.process.group_cpu_time())
        .sum();
    (caller, proxy, instances)
}

impl Tally {
    fn throughput(&self) -> f64 {
        self.ok as f64 / self.measured.as_secs_f64().max(1e-9)
    }
}

/// Figures later scenarios compare against.
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    /// Our client's p99 in this scenario.
    pub ours_p99: Duration,
}

/// Runs scenario 1 and reports it.
pub async fn run(bed: &Bed, plan: &Plan) -> Result<(Section, Option<Baseline>), String> {
    let kinds = kinds(bed, plan, false);
    let paths = Arc::new(paths());
    let mut entries: Vec<Entry> = Vec::new();
    for &kind in &kinds {
        entries.push(make(bed, kind, plan, Duration::from_secs(30)).await?);
    }
    // Warm every contender up once (connections pooled, code paged in).
    for entry in &entries {
        let origin = Instant::now();
        let _ = closed_loop(
            Arc::clone(&entry.contender),
            Arc::clone(&paths),
            plan.concurrency,
            origin,
            plan.warmup,
            usize::MAX,
        )
        .await;
    }
    let mut tallies: Vec<Tally> = kinds
        .iter()
        .map(|&kind| Tally {
            kind,
            ok: 0,
            failed: 0,
            measured: Duration::ZERO,
            latencies: Latencies::new(),
            per_round: Vec::new(),
            cpu_caller: Duration::ZERO,
            cpu_proxy: Duration::ZERO,
            cpu_instances: Duration::ZERO,
        })
        .collect();
    let n = entries.len();
    for round in 0..plan.steady_rounds {
        for k in 0..n {
            let i = (round + k) % n;
            eprintln!(
                "  steady: round {}/{}, {}",
                round + 1,
                plan.steady_rounds,
                entries[i].name
            );
            let cpu_before = cpu_now(bed, &entries[i]);
            let origin = Instant::now();
            let run = closed_loop(
                Arc::clone(&entries[i].contender),
                Arc::clone(&paths),
                plan.concurrency,
                origin,
                plan.steady_window,
                usize::MAX,
            )
            .await;
            let cpu_after = cpu_now(bed, &entries[i]);
            let tally = &mut tallies[i];
            tally.cpu_caller += cpu_after.0.saturating_sub(cpu_before.0);
            tally.cpu_proxy += cpu_after.1.saturating_sub(cpu_before.1);
            tally.cpu_instances += cpu_after.2.saturating_sub(cpu_before.2);
            let ok = run.samples.iter().filter(|s| s.instance.is_some()).count() as u64;
            tally.ok += ok;
            tally.failed += run.samples.len() as u64 - ok;
            tally.measured += run.elapsed;
            tally
                .per_round
                .push(ok as f64 / run.elapsed.as_secs_f64().max(1e-9));
            for sample in &run.samples {
                tally.latencies.record(sample.latency);
            }
        }
    }
    drop(entries);
    Ok(report(&tallies, plan))
}

fn report(tallies: &[Tally], plan: &Plan) -> (Section, Option<Baseline>) {
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
    let base_tp = direct.map_or(0.0, Tally::throughput);
    let base_p99 = direct.map_or(0.0, |t| t.latencies.percentile(99.0).as_secs_f64());
    let ours_tp = ours.map_or(0.0, Tally::throughput);
    let mut table = Table::new([
        "contender",
        "req/s",
        "× reqwest one instance",
        "ours ÷ this",
        "p50",
        "p99",
        "p99 × reqwest one instance",
        "failed",
        "req/s per round (min–max)",
    ]);
    for t in tallies {
        let min = t.per_round.iter().copied().fold(f64::INFINITY, f64::min);
        let max = t.per_round.iter().copied().fold(0.0, f64::max);
        table.row([
            t.kind.name().to_string(),
            format!("{:.0}", t.throughput()),
            ratio(t.throughput(), base_tp),
            ratio(ours_tp, t.throughput()),
            show(t.latencies.percentile(50.0)),
            show(t.latencies.percentile(99.0)),
            ratio(t.latencies.percentile(99.0).as_secs_f64(), base_p99),
            t.failed.to_string(),
            format!("{min:.0}–{max:.0}"),
        ]);
    }
    section.table(&table);

    section.note(
        "CPU per successful request (from /proc, 10 ms ticks, summed over the measured windows) and \
         its inverse, requests per CPU-second: what each request costs the machine, whatever else ran \
         on it at the time. \"cores busy\" is how much of the 2 cores this contender's processes got.",
    );
    let per_req = |d: Duration, t: &Tally| d.as_secs_f64() * 1e6 / (t.ok.max(1) as f64);
    let total_of = |t: &Tally| per_req(t.cpu_caller + t.cpu_proxy + t.cpu_instances, t);
    let base_cpu = direct.map_or(0.0, total_of);
    let ours_cpu = ours.map_or(0.0, total_of);
    let mut cpu = Table::new([
        "contender",
        "caller µs/req",
        "proxy µs/req",
        "instances µs/req",
        "total µs/req",
        "req per CPU-second",
        "× reqwest one instance",
        "ours ÷ this",
        "cores busy",
    ]);
    for t in tallies {
        let total = total_of(t);
        cpu.row([
            t.kind.name().to_string(),
            format!("{:.1}", per_req(t.cpu_caller, t)),
            format!("{:.1}", per_req(t.cpu_proxy, t)),
            format!("{:.1}", per_req(t.cpu_instances, t)),
            format!("{total:.1}"),
            format!("{:.0}", 1e6 / total.max(1e-9)),
            ratio(base_cpu, total),
            ratio(total, ours_cpu),
            format!(
                "{:.2}",
                (t.cpu_caller + t.cpu_proxy + t.cpu_instances).as_secs_f64()
                    / t.measured.as_secs_f64().max(1e-9)
            ),
        ]);
    }
    section.table(&cpu);
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
