//! Slow start (issue 13): a fourth instance joins a service that three instances serve
//! under load (closed loop, `--concurrency` callers). With
//! `ServiceClientBuilder::slow_start(window)` its share should follow the configured linear
//! ramp: its weight grows linearly over the window from a tenth of a full one (the floor,
//! as Envoy's `min_weight_percent`) to all of it, so in second `k` its expected share of
//! answers is `f / (3 + f)` with `f = max(0.1, (k + ½) / window)` (25 % once the window is
//! over).
//! Measured per second over the window, with slow start and without it (where it takes a
//! full share at once), with the p99 of the newcomer's answers over the window.
//!
//! The instance joins through a discovery source of the harness's own (a watch channel), so
//! the moment it is published is known exactly.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery_client::discovery::{Discovery, DiscoverySink};
use discovery_client::{Instance, ServiceClient};
use tokio::sync::watch;

use crate::config::Plan;
use crate::contender::{Contender, paths};
use crate::figures::{Figures, percent};
use crate::latency::show;
use crate::load::closed_loop;
use crate::report::{Section, Table};
use crate::servers::Binaries;

/// The newcomer's number (its id, and its number in answers).
const NEWCOMER: u16 = 4;
/// How far (percentage points) the observed share may be from the ramp's.
const TOLERANCE_PP: f64 = 10.0;

/// A discovery source whose instance set the harness changes at will.
#[derive(Debug)]
struct Joining {
    sets: watch::Receiver<Vec<Instance>>,
}

impl Discovery for Joining {
    fn watch(
        &self,
        _service: &str,
        sink: DiscoverySink,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let mut sets = self.sets.clone();
        Box::pin(async move {
            loop {
                let set = sets.borrow_and_update().clone();
                if !sink.publish(set) {
                    return;
                }
                if sets.changed().await.is_err() {
                    // The harness is done; keep the last set until the client goes.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

/// One run: with or without slow start.
struct Outcome {
    slow_start: bool,
    /// The newcomer's share of answers in each second after it joined.
    shares: Vec<Option<f64>>,
    /// Its answers' p99 over the window.
    p99: Option<Duration>,
    /// Calls that failed over the whole run.
    failed: u64,
}

/// The ramp's share in second `k` of a window of `window_s` seconds among 3 full instances.
pub fn expected_share(k: usize, window_s: f64) -> f64 {
    let f = ((k as f64 + 0.5) / window_s.max(1e-9)).clamp(0.1, 1.0);
    f / (3.0 + f)
}

/// Runs the slow-start scenario.
pub async fn run(bins: &Binaries, plan: &Plan) -> Result<Section, String> {
    let mut servers = Vec::new();
    for n in 1..=NEWCOMER {
        servers.push(bins.ratings(n, None).await?);
    }
    let instances: Vec<Instance> = servers
        .iter()
        .zip(1..=NEWCOMER)
        .map(|(s, n)| Instance::new(n.to_string(), s.url.clone()))
        .collect();
    let mut outcomes = Vec::new();
    for slow_start in variants() {
        eprintln!(
            "  slow-start: {}",
            if slow_start {
                "with slow start"
            } else {
                "without"
            }
        );
        outcomes.push(run_one(plan, &instances, slow_start).await?);
    }
    drop(servers);
    Ok(report(&outcomes, plan))
}

/// The runs: without slow start, then with it.
fn variants() -> Vec<bool> {
    vec![false, true]
}

/// When the fourth instance joins, from the start of the load: after the warm-up and one
/// window of load, and after the three have been known for longer than the slow-start
/// window, so that a ramp of their own (were the client to apply one to the instances it
/// starts with) is over and each weighs a full share.
fn join_after(plan: &Plan) -> Duration {
    (plan.warmup + plan.gray_window).max(plan.slow_start + Duration::from_secs(1))
}

fn client(plan: &Plan, discovery: Joining, slow_start: bool) -> Result<ServiceClient, String> {
    let builder = ServiceClient::builder("ratings")
        .discovery(discovery)
        .timeout(plan.timeout)
        .failure_limit(1)
        .retest_delay(Duration::from_secs(30))
        .max_retries(plan.retries)
        .cache_ttl(Duration::ZERO);
    let builder = if slow_start {
        builder.slow_start(plan.slow_start)
    } else {
        builder
    };
    builder.build().map_err(|e| format!("ServiceClient: {e}"))
}

async fn run_one(plan: &Plan, instances: &[Instance], slow_start: bool) -> Result<Outcome, String> {
    let (sets, receiver) = watch::channel(instances[..3].to_vec());
    let contender = Arc::new(Contender::Ours(client(
        plan,
        Joining { sets: receiver },
        slow_start,
    )?));
    let paths = Arc::new(paths());
    // Load with three instances, then the fourth joins; load continues over the window and
    // two seconds more.
    let before = join_after(plan);
    let total = before + plan.slow_start + Duration::from_secs(2);
    let origin = Instant::now();
    let load = tokio::spawn(closed_loop(
        Arc::clone(&contender),
        Arc::clone(&paths),
        plan.concurrency,
        origin,
        total,
        usize::MAX,
    ));
    tokio::time::sleep_until((origin + before).into()).await;
    sets.send_replace(instances.to_vec());
    let joined = origin.elapsed();
    let run = load.await.map_err(|e| format!("load task: {e}"))?;

    let seconds = usize::try_from(plan.slow_start.as_secs().max(1)).unwrap_or(1);
    let shares = (0..seconds)
        .map(|k| {
            let from = joined + Duration::from_secs(k as u64);
            Figures::between(&run.samples, from, from + Duration::from_secs(1)).share(NEWCOMER)
        })
        .collect();
    let window = Figures::between(&run.samples, joined, joined + plan.slow_start);
    let p99 = window
        .latency_by_instance
        .get(&NEWCOMER)
        .map(|l| l.percentile(99.0));
    Ok(Outcome {
        slow_start,
        shares,
        p99,
        failed: Figures::of(&run.samples).failed,
    })
}

fn report(outcomes: &[Outcome], plan: &Plan) -> Section {
    let mut section = Section::new("11. Slow start: an instance joins a loaded service (issue 13)");
    let window_s = plan.slow_start.as_secs_f64();
    section.note(format!(
        "3 ratings instances under a closed loop of {} callers (our client, default balancing); \
         after {} (longer than the window, so the first three weigh a full share) a 4th instance \
         is published by discovery. Its share of answers in each second \
         after it joined, against the linear ramp of a {} slow-start window (weight max(0.1, \
         (k + ½) / window) in second k, so share = weight / (3 + weight)).",
        plan.concurrency,
        show(join_after(plan)),
        show(plan.slow_start),
    ));
    let mut header = vec!["second after joining".to_string(), "ramp".to_string()];
    for o in outcomes {
        header.push(name(o).to_string());
    }
    let mut table = Table::new(header);
    let seconds = outcomes.iter().map(|o| o.shares.len()).max().unwrap_or(0);
    for k in 0..seconds {
        let mut row = vec![
            (k + 1).to_string(),
            percent(Some(expected_share(k, window_s))),
        ];
        for o in outcomes {
            row.push(percent(o.shares.get(k).copied().flatten()));
        }
        table.row(row);
    }
    section.table(&table);
    let mut p99s = Table::new(["run", "newcomer's p99 over the window", "failed calls"]);
    for o in outcomes {
        p99s.row([
            name(o).to_string(),
            o.p99.map_or("no answer".to_string(), show),
            o.failed.to_string(),
        ]);
    }
    section.table(&p99s);
    if let Some(o) = outcomes.iter().find(|o| o.slow_start) {
        let worst = o
            .shares
            .iter()
            .enumerate()
            .map(|(k, s)| (100.0 * (s.unwrap_or(0.0) - expected_share(k, window_s))).abs())
            .fold(0.0_f64, f64::max);
        section.target(
            worst <= TOLERANCE_PP,
            format!(
                "its share each second within {TOLERANCE_PP} percentage points of the ramp: worst {worst:.1}"
            ),
        );
        section.end_list();
    }
    section
}

fn name(o: &Outcome) -> &'static str {
    if o.slow_start {
        "with slow start"
    } else {
        "without slow start"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_grows_linearly_in_weight_to_a_full_share() {
        // Second 1 of a 10 s window: weight 0.05 among three full instances.
        // The first half second is under the floor of a tenth of a share.
        assert!((expected_share(0, 10.0) - 0.1 / 3.1).abs() < 1e-12);
        assert!((expected_share(4, 10.0) - 0.45 / 3.45).abs() < 1e-12);
        // After the window (and in its last half second) a full quarter at most.
        assert!((expected_share(10, 10.0) - 0.25).abs() < 1e-12);
        assert!(expected_share(9, 10.0) < 0.25);
        let shares: Vec<f64> = (0..10).map(|k| expected_share(k, 10.0)).collect();
        assert!(shares.windows(2).all(|w| w[0] < w[1]), "{shares:?}");
    }
}
