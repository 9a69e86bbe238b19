//! Gray failure (issue 13): one of three instances answers correctly but slowly. For each
//! added latency (`--gray-latency`, one run each) and each contender, with a fresh client or
//! proxy:
//!
//! 1. **healthy**: three healthy instances, closed loop at each number of callers
//!    (`--gray-concurrency`): the baseline of the same contender in the same run;
//! 2. **slow**: instance 1 slowed through its admin endpoint; at each number of callers, an
//!    unmeasured settling time (the warm-up) and then the measured window;
//! 3. **heal**: the latency removed; the slow instance's share followed in 5 s windows
//!    until it is back to at least 25 % (or 30 s have passed).
//!
//! The share counts answers: each ratings answer names the instance that gave it, whoever
//! sent the request (our client, tower, or a proxy). For our client the share of attempts
//! (from `ServiceClient::instances()`, hedges and retries included) is shown as well.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Bed, Kind, make};
use crate::config::Plan;
use crate::contender::{Contender, paths};
use crate::faults;
use crate::figures::{Figures, percent};
use crate::latency::show;
use crate::load::{Sample, closed_loop};
use crate::openings::Openings;
use crate::peers::PeerKind;
use crate::report::{Section, Table, ratio};

/// The instance that is slowed (its number in answers is `SLOW + 1`).
const SLOW: usize = 0;
/// Its number, as answers name it.
const SLOW_ID: u16 = 1;
/// Retest delay for every contender: nothing fails here, so it only matters if something
/// unexpectedly does.
const RETEST: Duration = Duration::from_secs(30);
/// The heal target: the share the healed instance must be back to.
pub const HEALED_SHARE: f64 = 0.25;

/// Targets for our client with its default balancing.
const P50_LIMIT: f64 = 1.25;
const P99_LIMIT: f64 = 2.0;
const SLOW_SHARE_LIMIT: f64 = 0.05;

/// The contenders of this scenario, in table order: ours (default balancing and plain
/// round-robin), tower's p2c over PeakEwma, and the proxies' least-connection balancing
/// where installed. `--contender` picks among them.
pub fn kinds(bed: &Bed, plan: &Plan) -> Vec<Kind> {
    let mut kinds = vec![Kind::Ours, Kind::OursRoundRobin, Kind::TowerPeakEwma];
    for (peer, _) in &bed.peers {
        match peer {
            PeerKind::Nginx => kinds.push(Kind::Peer(PeerKind::NginxLeastConn)),
            PeerKind::Haproxy => kinds.push(Kind::Peer(PeerKind::HaproxyLeastConn)),
            _ => {}
        }
    }
    if !plan.contenders.is_empty() {
        kinds.retain(|k| plan.contenders.contains(&k.flag()));
    }
    kinds
}

/// One phase at one number of callers.
struct Phase {
    callers: usize,
    figures: Figures,
    /// Our client only: the slow instance's share of attempts.
    attempt_share: Option<f64>,
}

/// What one contender did at one latency.
struct Outcome {
    kind: Kind,
    healthy: Vec<Phase>,
    slow: Vec<Phase>,
    /// The slow instance's share in each heal window (`None`: no answer in it).
    heal: Vec<Option<f64>>,
    /// Our client only: breaker openings over the whole run, any instance.
    openings: Option<usize>,
}

impl Outcome {
    /// When (from the heal) the first window with a share of at least 25 % ended.
    fn healed_after(&self, window: Duration) -> Option<Duration> {
        self.heal
            .iter()
            .position(|s| s.is_some_and(|s| s >= HEALED_SHARE))
            .map(|i| window * u32::try_from(i + 1).unwrap_or(u32::MAX))
    }
}

/// Runs the gray scenario on `bed` (instances started with `--admin`) and reports it.
pub async fn run(bed: &Bed, plan: &Plan) -> Result<Section, String> {
    let kinds = kinds(bed, plan);
    let mut by_latency = Vec::new();
    for &latency in &plan.gray_latencies {
        let mut outcomes = Vec::new();
        for &kind in &kinds {
            eprintln!("  gray {}: {}", show(latency), kind.name());
            let outcome = run_one(bed, plan, kind, latency).await;
            // Whatever happened, the next run starts with a healthy instance.
            faults::heal(&bed.instances[SLOW].url).await?;
            outcomes.push(outcome?);
        }
        by_latency.push((latency, outcomes));
    }
    Ok(report(&by_latency, plan))
}

async fn run_one(bed: &Bed, plan: &Plan, kind: Kind, latency: Duration) -> Result<Outcome, String> {
    let slow_url = bed.instances[SLOW].url.clone();
    faults::heal(&slow_url).await?;
    let entry = make(bed, kind, plan, RETEST).await?;
    let contender = Arc::clone(&entry.contender);
    let paths = Arc::new(paths());
    let top = plan.gray_concurrency.iter().copied().max().unwrap_or(1);
    load(&contender, &paths, top, plan.warmup).await;
    let openings = Openings::watch(&contender, None);

    let mut healthy = Vec::new();
    for &callers in &plan.gray_concurrency {
        healthy.push(measure(&contender, &paths, callers, plan.gray_window, &slow_url).await);
    }
    faults::set_latency(&slow_url, latency).await?;
    let mut slow = Vec::new();
    for &callers in &plan.gray_concurrency {
        load(&contender, &paths, callers, plan.warmup).await;
        slow.push(measure(&contender, &paths, callers, plan.gray_window, &slow_url).await);
    }

    faults::heal(&slow_url).await?;
    let healed_at = Instant::now();
    let mut heal = Vec::new();
    let windows = (plan.heal_limit.as_millis() / plan.heal_window.as_millis().max(1)).max(1);
    for i in 0..windows {
        let from = plan.heal_window * u32::try_from(i).unwrap_or(u32::MAX);
        let run = closed_loop(
            Arc::clone(&contender),
            Arc::clone(&paths),
            plan.heal_concurrency,
            healed_at,
            from + plan.heal_window,
            usize::MAX,
        )
        .await;
        let share = Figures::between(&run.samples, from, from + plan.heal_window).share(SLOW_ID);
        heal.push(share);
        if share.is_some_and(|s| s >= HEALED_SHARE) {
            break;
        }
    }
    let openings = openings.map(|o| o.count());
    drop(entry);
    Ok(Outcome {
        kind,
        healthy,
        slow,
        heal,
        openings,
    })
}

/// Unmeasured load: fills pools, lets a balancer settle.
async fn load(contender: &Arc<Contender>, paths: &Arc<Vec<String>>, callers: usize, d: Duration) {
    let _ = closed_loop(
        Arc::clone(contender),
        Arc::clone(paths),
        callers,
        Instant::now(),
        d,
        usize::MAX,
    )
    .await;
}

/// One measured window.
async fn measure(
    contender: &Arc<Contender>,
    paths: &Arc<Vec<String>>,
    callers: usize,
    window: Duration,
    slow_url: &str,
) -> Phase {
    let before = attempts(contender);
    let run = closed_loop(
        Arc::clone(contender),
        Arc::clone(paths),
        callers,
        Instant::now(),
        window,
        usize::MAX,
    )
    .await;
    let after = attempts(contender);
    let attempt_share = after.map(|after| {
        let before = before.unwrap_or_default();
        let delta = |url: &str| {
            after.get(url).copied().unwrap_or(0) - before.get(url).copied().unwrap_or(0)
        };
        let total: u64 = after.keys().map(|url| delta(url)).sum();
        if total == 0 {
            0.0
        } else {
            delta(slow_url) as f64 / total as f64
        }
    });
    let samples: Vec<Sample> = run.samples;
    Phase {
        callers,
        figures: Figures::of(&samples),
        attempt_share,
    }
}

/// Our client's attempts so far, by instance address; `None` for other contenders.
fn attempts(contender: &Contender) -> Option<HashMap<String, u64>> {
    match contender {
        Contender::Ours(client) => Some(
            client
                .instances()
                .into_iter()
                .map(|i| (i.address, i.requests))
                .collect(),
        ),
        _ => None,
    }
}

fn report(by_latency: &[(Duration, Vec<Outcome>)], plan: &Plan) -> Section {
    let mut section = Section::new("8. Gray failure: one slow instance (issue 13)");
    let callers: Vec<String> = plan
        .gray_concurrency
        .iter()
        .map(|c| c.to_string())
        .collect();
    section.note(format!(
        "3 ratings instances; instance 1 answers correctly but late (added latency below, set \
         through its admin endpoint). Closed loop at {} callers, `GET /ratings/{{id}}` over 7 \
         items. Each contender starts fresh (new client or proxy process) for each latency and \
         first runs with three healthy instances (the baseline), then with instance 1 slowed \
         ({} unmeasured settling, then {} measured, per number of callers), then instance 1 is \
         healed and its share of answers followed in {} windows at {} callers (stopping once it \
         is back to ≥ 25 %, at most {}). \"share\" = instance 1's share of the answers; for our \
         client \"attempts\" = its share of the attempts sent (hedges and retries included). \
         Nothing fails here, so every breaker our client opens is a healthy one. Proxies: nginx `least_conn` and HAProxy `balance leastconn`, otherwise as in scenario 2.",
        callers.join(", "),
        show(plan.warmup),
        show(plan.gray_window),
        show(plan.heal_window),
        plan.heal_concurrency,
        show(plan.heal_limit),
    ));
    for (latency, outcomes) in by_latency {
        section.note(format!("### Instance 1 slowed by {}", show(*latency)));
        let mut table = Table::new([
            "contender",
            "callers",
            "healthy p50",
            "healthy p99",
            "slow p50",
            "slow p99",
            "p50 × healthy",
            "p99 × healthy",
            "share healthy",
            "share slow",
            "attempts slow",
            "failed",
        ]);
        for o in outcomes {
            for (h, s) in o.healthy.iter().zip(&o.slow) {
                table.row([
                    o.kind.name().to_string(),
                    s.callers.to_string(),
                    show(h.figures.p50()),
                    show(h.figures.p99()),
                    show(s.figures.p50()),
                    show(s.figures.p99()),
                    ratio(s.figures.p50().as_secs_f64(), h.figures.p50().as_secs_f64()),
                    ratio(s.figures.p99().as_secs_f64(), h.figures.p99().as_secs_f64()),
                    percent(h.figures.share(SLOW_ID)),
                    percent(s.figures.share(SLOW_ID)),
                    s.attempt_share
                        .map_or("–".to_string(), |a| percent(Some(a))),
                    (h.figures.failed + s.figures.failed).to_string(),
                ]);
            }
        }
        section.table(&table);

        let windows = outcomes.iter().map(|o| o.heal.len()).max().unwrap_or(0);
        let mut header = vec!["contender".to_string()];
        header.extend((1..=windows).map(|i| {
            let w = plan.heal_window * u32::try_from(i).unwrap_or(u32::MAX);
            format!("share by +{}", show(w))
        }));
        header.push("back to ≥ 25 % after".to_string());
        header.push("breakers opened (ours, whole run)".to_string());
        let mut heal = Table::new(header);
        for o in outcomes {
            let mut row = vec![o.kind.name().to_string()];
            row.extend((0..windows).map(|i| match o.heal.get(i) {
                Some(share) => percent(*share),
                None => "–".to_string(),
            }));
            row.push(match o.healed_after(plan.heal_window) {
                Some(d) => format!("≤ {}", show(d)),
                None => format!("not within {}", show(plan.heal_limit)),
            });
            row.push(o.openings.map_or("–".to_string(), |n| n.to_string()));
            heal.row(row);
        }
        section.table(&heal);

        for o in outcomes.iter().filter(|o| o.kind == Kind::Ours) {
            for (h, s) in o.healthy.iter().zip(&o.slow) {
                let p50 = s.figures.p50().as_secs_f64() / h.figures.p50().as_secs_f64().max(1e-9);
                let p99 = s.figures.p99().as_secs_f64() / h.figures.p99().as_secs_f64().max(1e-9);
                let share = s.figures.share(SLOW_ID);
                section.target(
                    p50 <= P50_LIMIT,
                    format!(
                        "{} slow, {} callers: p50 {} ≤ {P50_LIMIT}× healthy ({}): {p50:.2}×",
                        show(*latency),
                        s.callers,
                        show(s.figures.p50()),
                        show(h.figures.p50())
                    ),
                );
                section.target(
                    p99 <= P99_LIMIT,
                    format!(
                        "{} slow, {} callers: p99 {} ≤ {P99_LIMIT}× healthy ({}): {p99:.2}×",
                        show(*latency),
                        s.callers,
                        show(s.figures.p99()),
                        show(h.figures.p99())
                    ),
                );
                section.target(
                    share.is_some_and(|x| x <= SLOW_SHARE_LIMIT),
                    format!(
                        "{} slow, {} callers: the slow instance's share ≤ 5 %: {}",
                        show(*latency),
                        s.callers,
                        percent(share)
                    ),
                );
            }
            let healed = o.healed_after(plan.heal_window);
            section.target(
                healed.is_some_and(|d| d <= plan.heal_limit),
                format!(
                    "{} slow, healed: its share back to ≥ 25 % within {}: {}",
                    show(*latency),
                    show(plan.heal_limit),
                    healed.map_or("no".to_string(), |d| format!("by +{}", show(d)))
                ),
            );
            section.end_list();
        }
        if !outcomes.iter().any(|o| o.kind == Kind::Ours) {
            section.note("(targets not judged: our client with its defaults did not run.)");
        }
    }
    section
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Sample;

    fn phase(callers: usize, latencies_ms: &[(u64, u16)]) -> Phase {
        let samples: Vec<Sample> = latencies_ms
            .iter()
            .map(|&(ms, instance)| Sample {
                start: Duration::ZERO,
                latency: Duration::from_millis(ms),
                instance: Some(instance),
            })
            .collect();
        Phase {
            callers,
            figures: Figures::of(&samples),
            attempt_share: None,
        }
    }

    fn outcome(heal: Vec<Option<f64>>, slow: Phase) -> Outcome {
        Outcome {
            kind: Kind::Ours,
            healthy: vec![phase(4, &[(1, 1), (1, 2), (1, 3)])],
            slow: vec![slow],
            heal,
            openings: Some(0),
        }
    }

    fn plan() -> Plan {
        use clap::Parser;
        Plan::from_args(&crate::config::Args::parse_from(["bench"]))
    }

    #[test]
    fn healed_after_is_the_end_of_the_first_window_back_to_a_quarter() {
        let window = Duration::from_secs(5);
        let slow = || phase(4, &[(1, 2)]);
        assert_eq!(
            outcome(vec![Some(0.0), Some(0.1), Some(0.3)], slow()).healed_after(window),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            outcome(vec![None, Some(0.24)], slow()).healed_after(window),
            None
        );
    }

    #[test]
    fn targets_are_judged_against_the_same_contenders_healthy_run() {
        let plan = plan();
        let met = outcome(vec![Some(0.3)], phase(4, &[(1, 2), (1, 3)]));
        let text = report(&[(Duration::from_millis(20), vec![met])], &plan)
            .render()
            .to_string();
        assert!(!text.contains("MISSED"), "{text}");
        assert_eq!(text.matches("**MET**").count(), 4, "{text}");
        // Most answers from the slow instance, 20 ms each: every target missed but the heal.
        let missed = outcome(
            vec![Some(0.3)],
            phase(4, &[(20, 1), (20, 1), (20, 1), (1, 2)]),
        );
        let text = report(&[(Duration::from_millis(20), vec![missed])], &plan)
            .render()
            .to_string();
        assert_eq!(text.matches("**MISSED**").count(), 3, "{text}");
    }
}
