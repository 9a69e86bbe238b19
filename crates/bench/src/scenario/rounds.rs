//! Interleaved rounds of closed-loop load over a set of contenders, with what each request
//! cost in CPU: the measurement both steady scenarios (plain and TLS) make, and their two
//! tables. Each round runs every contender once, starting with a different one, so
//! background noise falls on all of them alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Entry;
use crate::config::Plan;
use crate::contender::paths;
use crate::latency::{Latencies, show};
use crate::load::{closed_loop, warm};
use crate::report::{Table, ratio};
use crate::servers::Server;

/// What one contender did over all rounds.
pub struct Tally<K> {
    /// Which contender.
    pub kind: K,
    /// Its name in tables.
    pub name: String,
    /// Successful answers.
    pub ok: u64,
    /// Failed calls.
    pub failed: u64,
    /// Time measured, over all rounds.
    pub measured: Duration,
    /// Every call's latency.
    pub latencies: Latencies,
    /// Successful answers per second, per round.
    pub per_round: Vec<f64>,
    /// CPU used during the measured windows by this process (the caller), by the proxy (if
    /// any), and by the instances.
    pub cpu_caller: Duration,
    /// See `cpu_caller`.
    pub cpu_proxy: Duration,
    /// See `cpu_caller`.
    pub cpu_instances: Duration,
}

impl<K> Tally<K> {
    /// Successful answers per second over all rounds.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    /// `cpu` per successful answer, in µs.
    pub fn per_request(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / (self.ok.max(1) as f64)
    }

    /// The caller's CPU per successful answer, in µs.
    pub fn caller_per_request(&self) -> f64 {
        self.per_request(self.cpu_caller)
    }

    /// Everyone's CPU (caller, proxy, instances) per successful answer, in µs.
    pub fn total_per_request(&self) -> f64 {
        self.per_request(self.cpu_caller + self.cpu_proxy + self.cpu_instances)
    }
}

/// CPU time so far of the caller (this process), a proxy, and the instances.
fn cpu_now(instances: &[&Server], entry: &Entry) -> (Duration, Duration, Duration) {
    let caller = crate::procs::cpu_time_of(std::process::id() as i32).unwrap_or_default();
    let proxy = entry
        .peer
        .as_ref()
        .map_or(Duration::ZERO, |p| p.process.group_cpu_time());
    let instances = instances.iter().map(|i| i.process.group_cpu_time()).sum();
    (caller, proxy, instances)
}

/// Warms every contender up once, then runs `plan.steady_rounds` rounds of
/// `plan.steady_window` each with `plan.concurrency` workers, counting the CPU of
/// `instances` (every instance any contender reaches). `scenario` prefixes progress lines.
pub async fn measure<K: Copy>(
    entries: Vec<(K, Entry)>,
    instances: &[&Server],
    plan: &Plan,
    scenario: &str,
) -> Vec<Tally<K>> {
    let paths = Arc::new(paths());
    // Warm every contender up once (connections pooled, code paged in).
    for (_, entry) in &entries {
        warm(&entry.contender, &paths, plan.concurrency, plan.warmup).await;
    }
    let mut tallies: Vec<Tally<K>> = entries
        .iter()
        .map(|(kind, entry)| Tally {
            kind: *kind,
            name: entry.name.clone(),
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
            let entry = &entries[i].1;
            eprintln!(
                "  {scenario}: round {}/{}, {}",
                round + 1,
                plan.steady_rounds,
                entry.name
            );
            let cpu_before = cpu_now(instances, entry);
            let origin = Instant::now();
            let run = closed_loop(
                Arc::clone(&entry.contender),
                Arc::clone(&paths),
                plan.concurrency,
                origin,
                plan.steady_window,
                usize::MAX,
            )
            .await;
            let cpu_after = cpu_now(instances, entry);
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
    tallies
}

/// Throughput and latency, each contender against `base` (named `base_name` in the
/// headers) and against `ours`.
pub fn throughput_table<K>(
    tallies: &[Tally<K>],
    base: Option<&Tally<K>>,
    base_name: &str,
    ours: Option<&Tally<K>>,
) -> Table {
    let base_tp = base.map_or(0.0, Tally::throughput);
    let base_p99 = base.map_or(0.0, |t| t.latencies.percentile(99.0).as_secs_f64());
    let ours_tp = ours.map_or(0.0, Tally::throughput);
    let mut table = Table::new([
        "contender".to_string(),
        "req/s".into(),
        format!("× {base_name}"),
        "ours ÷ this".into(),
        "p50".into(),
        "p99".into(),
        format!("p99 × {base_name}"),
        "failed".into(),
        "req/s per round (min–max)".into(),
    ]);
    for t in tallies {
        let min = t.per_round.iter().copied().fold(f64::INFINITY, f64::min);
        let max = t.per_round.iter().copied().fold(0.0, f64::max);
        table.row([
            t.name.clone(),
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
    table
}

/// The note that goes before [`cpu_table`].
pub const CPU_NOTE: &str = "CPU per successful request (from /proc, 10 ms ticks, summed over the measured windows) and \
     its inverse, requests per CPU-second: what each request costs the machine, whatever else ran \
     on it at the time. \"cores busy\" is how much of the 2 cores this contender's processes got.";

/// CPU per request of each contender's caller, proxy and instances, against `base` (named
/// `base_name`) and `ours`.
pub fn cpu_table<K>(
    tallies: &[Tally<K>],
    base: Option<&Tally<K>>,
    base_name: &str,
    ours: Option<&Tally<K>>,
) -> Table {
    let base_cpu = base.map_or(0.0, Tally::total_per_request);
    let ours_cpu = ours.map_or(0.0, Tally::total_per_request);
    let mut cpu = Table::new([
        "contender".to_string(),
        "caller µs/req".into(),
        "proxy µs/req".into(),
        "instances µs/req".into(),
        "total µs/req".into(),
        "req per CPU-second".into(),
        format!("× {base_name}"),
        "ours ÷ this".into(),
        "cores busy".into(),
    ]);
    for t in tallies {
        let total = t.total_per_request();
        cpu.row([
            t.name.clone(),
            format!("{:.1}", t.per_request(t.cpu_caller)),
            format!("{:.1}", t.per_request(t.cpu_proxy)),
            format!("{:.1}", t.per_request(t.cpu_instances)),
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
    cpu
}
