//! Scenario 13, gRPC: `GetRating` on three ratings instances (real processes, serving gRPC
//! on their one port) through our `grpc::channel` (`GetRating` marked idempotent: retried
//! and hedged) and through tonic's own balanced channel, `Channel::balance_list` (tower's
//! p2c over pending requests, one HTTP/2 connection per instance, tonic's per-request
//! timeout). ginepro, the other tonic balancer, is not in the offline crate mirror and is
//! left out.
//!
//! - Steady: closed loop at `--concurrency` callers, in rounds, each contender once per
//!   round in rotated order, a fresh client per contender warmed up once; throughput,
//!   p50/p99 and the bench process's CPU time per call (the callers' side only: the
//!   instances are other processes) over all rounds.
//! - Sick: a fresh client per contender, warmed up; instance 1 is paused (SIGSTOP) during
//!   the run as in scenario 2; calls that failed and calls that waited at least 90 % of the
//!   timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery_client::grpc::{self, GrpcConfig};
use discovery_client::{Hedging, StaticDiscovery};
use ratings_api::ratings_client::RatingsClient;
use tonic::transport::{Channel, Endpoint};

use crate::config::Plan;
use crate::contender::{Contender, paths};
use crate::figures::Figures;
use crate::latency::show;
use crate::load::{Sample, closed_loop, warm};
use crate::report::{Section, Table, ratio};
use crate::servers::{Binaries, Server};

/// The contenders, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Our `grpc::channel`, `GetRating` idempotent, default hedging.
    Ours,
    /// Our `grpc::channel` with hedging off (retries still on).
    OursUnhedged,
    /// Our `grpc::channel` with `GetRating` not marked idempotent: sent once, never
    /// retried or hedged (what the retry machinery costs, by difference).
    OursOnce,
    /// tonic's `Channel::balance_list`.
    Tonic,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Ours, Kind::OursUnhedged, Kind::OursOnce, Kind::Tonic];

    fn name(self) -> &'static str {
        match self {
            Kind::Ours => "discovery-client grpc::channel",
            Kind::OursUnhedged => "discovery-client grpc::channel, hedging off",
            Kind::OursOnce => "discovery-client grpc::channel, not idempotent",
            Kind::Tonic => "tonic Channel::balance_list",
        }
    }
}

/// The instance that gets paused in the sick run.
const SICK: usize = 0;

/// Makes a fresh client of `kind` for the instances at `urls`.
fn make(kind: Kind, urls: &[String], plan: &Plan, retest: Duration) -> Result<Contender, String> {
    match kind {
        Kind::Ours | Kind::OursUnhedged | Kind::OursOnce => {
            let mut config = GrpcConfig::default()
                .timeout(plan.timeout)
                .failure_limit(1)
                .retest_delay(retest)
                .max_retries(plan.retries);
            if kind != Kind::OursOnce {
                config = config.idempotent(ratings_api::GET_RATING_PATH);
            }
            if kind == Kind::OursUnhedged {
                config = config.hedging(Hedging::Off);
            }
            let channel = grpc::channel("ratings", StaticDiscovery::new(urls.to_vec()), config)
                .map_err(|e| format!("grpc::channel: {e}"))?;
            Ok(Contender::Grpc(RatingsClient::new(channel)))
        }
        Kind::Tonic => {
            let mut endpoints = Vec::new();
            for url in urls {
                let endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|e| format!("tonic endpoint {url}: {e}"))?
                    .timeout(plan.timeout)
                    .connect_timeout(plan.timeout);
                endpoints.push(endpoint);
            }
            let channel = Channel::balance_list(endpoints.into_iter());
            Ok(Contender::GrpcTonic(RatingsClient::new(channel)))
        }
    }
}

/// Runs scenario 13 on three fresh ratings instances.
pub async fn run(bins: &Binaries, plan: &Plan) -> Result<Section, String> {
    let mut instances: Vec<Server> = Vec::new();
    for n in 1..=3 {
        instances.push(bins.ratings_with(n, None, &[]).await?);
    }
    let urls: Vec<String> = instances.iter().map(|s| s.url.clone()).collect();
    let kinds: Vec<Kind> = Kind::ALL.to_vec();
    let steady = steady(&urls, &kinds, plan).await?;
    let mut sick = Vec::new();
    // Sent once, the calls caught on the paused instance fail: that row says nothing new.
    for &kind in kinds.iter().filter(|&&k| k != Kind::OursOnce) {
        eprintln!("  grpc sick: {}", kind.name());
        sick.push(sick_one(&mut instances, &urls, kind, plan).await?);
    }
    Ok(report(&steady, &sick, plan))
}

/// One contender's steady figures.
struct Steady {
    kind: Kind,
    figures: Figures,
    measured: Duration,
    /// This process's CPU time during the contender's windows.
    cpu: Duration,
}

impl Steady {
    /// Calls answered per second.
    fn rate(&self) -> f64 {
        self.figures.ok as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    /// This process's CPU time per call answered, in microseconds.
    fn cpu_per_call(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.figures.ok.max(1) as f64
    }
}

async fn steady(urls: &[String], kinds: &[Kind], plan: &Plan) -> Result<Vec<Steady>, String> {
    let paths = Arc::new(paths());
    let cpu = || crate::procs::cpu_time_of(std::process::id() as i32).unwrap_or_default();
    let mut clients = Vec::new();
    for &kind in kinds {
        let client = Arc::new(make(kind, urls, plan, Duration::from_secs(30))?);
        warm(&client, &paths, plan.concurrency, plan.warmup).await;
        clients.push((
            kind,
            client,
            Vec::<Sample>::new(),
            Duration::ZERO,
            Duration::ZERO,
        ));
    }
    for round in 0..plan.steady_rounds {
        eprintln!("  grpc steady: round {}/{}", round + 1, plan.steady_rounds);
        let n = clients.len();
        for i in 0..n {
            let (_, client, samples, measured, spent) = &mut clients[(i + round) % n];
            let before = cpu();
            let run = closed_loop(
                Arc::clone(client),
                Arc::clone(&paths),
                plan.concurrency,
                Instant::now(),
                plan.steady_window,
                usize::MAX,
            )
            .await;
            *spent += cpu().saturating_sub(before);
            samples.extend(run.samples);
            *measured += run.elapsed;
        }
    }
    Ok(clients
        .into_iter()
        .map(|(kind, _, samples, measured, cpu)| Steady {
            kind,
            figures: Figures::of(&samples),
            measured,
            cpu,
        })
        .collect())
}

/// One contender's sick run.
struct Sick {
    kind: Kind,
    figures: Figures,
    /// Calls that waited at least 90 % of the timeout.
    waited: u64,
}

async fn sick_one(
    instances: &mut [Server],
    urls: &[String],
    kind: Kind,
    plan: &Plan,
) -> Result<Sick, String> {
    let client = Arc::new(make(kind, urls, plan, plan.sick_retest)?);
    let paths = Arc::new(paths());
    warm(&client, &paths, plan.concurrency, plan.warmup).await;
    let origin = Instant::now();
    let load = tokio::spawn(closed_loop(
        Arc::clone(&client),
        Arc::clone(&paths),
        plan.concurrency,
        origin,
        plan.sick_run,
        usize::MAX,
    ));
    tokio::time::sleep_until((origin + plan.sick_pause_at).into()).await;
    instances[SICK].process.pause()?;
    tokio::time::sleep_until((origin + plan.sick_pause_at + plan.sick_pause_for).into()).await;
    instances[SICK].process.resume()?;
    let run = load.await.map_err(|e| format!("load task: {e}"))?;
    let threshold = plan.timeout.mul_f64(0.9);
    let window: Vec<Sample> = run
        .samples
        .into_iter()
        .filter(|s| s.start < plan.sick_run)
        .collect();
    let waited = window.iter().filter(|s| s.latency >= threshold).count();
    Ok(Sick {
        kind,
        figures: Figures::of(&window),
        waited: u64::try_from(waited).unwrap_or(u64::MAX),
    })
}

fn report(steady: &[Steady], sick: &[Sick], plan: &Plan) -> Section {
    let mut section = Section::new("13. gRPC: ours and tonic's balance_list");
    section.note(format!(
        "`GetRating` on 3 ratings instances (real processes, gRPC on their port), {} closed-loop \
         callers. Ours: `grpc::channel` with `GetRating` marked idempotent (retries {}, \
         hedging as set; steady also once with it not marked, so sent once), breakers opening on one failure. tonic: `Channel::balance_list` \
         (p2c over pending requests) with a {} per-request timeout, as ours has per attempt. \
         ginepro is not available offline and is not measured. Steady: {} rounds of {} per \
         contender, rotated order, after {} of warm-up. \"CPU/call\": this process's CPU \
         time (user + system, the callers' side) per call answered.",
        plan.concurrency,
        plan.retries,
        show(plan.timeout),
        plan.steady_rounds,
        show(plan.steady_window),
        show(plan.warmup),
    ));
    let mut table = Table::new([
        "contender",
        "calls",
        "failed",
        "calls/s",
        "p50",
        "p99",
        "CPU/call",
    ]);
    for s in steady {
        table.row([
            s.kind.name().to_string(),
            (s.figures.ok + s.figures.failed).to_string(),
            s.figures.failed.to_string(),
            format!("{:.0}", s.rate()),
            show(s.figures.p50()),
            show(s.figures.p99()),
            format!("{:.1} µs", s.cpu_per_call()),
        ]);
    }
    section.table(&table);
    let find = |kind| steady.iter().find(|s| s.kind == kind);
    if let (Some(ours), Some(tonic)) = (find(Kind::Ours), find(Kind::Tonic)) {
        let (a, b) = (ours.rate(), tonic.rate());
        section.target(
            a >= 0.95 * b,
            format!("steady throughput ours/tonic ≥ 0.95: {}", ratio(a, b)),
        );
        section.end_list();
        section.note(format!(
            "Caller CPU per call, ours/tonic: {}.",
            ratio(ours.cpu_per_call(), tonic.cpu_per_call())
        ));
    }
    section.note(format!(
        "Sick: instance 1 paused (SIGSTOP) {} into a {} run, for {}; a fresh client per \
         contender (retest delay {}).",
        show(plan.sick_pause_at),
        show(plan.sick_run),
        show(plan.sick_pause_for),
        show(plan.sick_retest),
    ));
    let mut table = Table::new([
        "contender",
        "calls",
        "failed",
        "waited ≥ 90 % of timeout",
        "p50",
        "p99",
        "max",
    ]);
    for s in sick {
        table.row([
            s.kind.name().to_string(),
            (s.figures.ok + s.figures.failed).to_string(),
            s.figures.failed.to_string(),
            s.waited.to_string(),
            show(s.figures.p50()),
            show(s.figures.p99()),
            show(s.figures.latencies.max()),
        ]);
    }
    section.table(&table);
    if let Some(ours) = sick.iter().find(|s| s.kind == Kind::Ours) {
        section.target(
            ours.figures.failed == 0,
            format!(
                "ours: 0 failed calls with an instance paused: {}",
                ours.figures.failed
            ),
        );
        section.end_list();
    }
    section
}
