//! Back-pressure (issue 13): instance 1 of 3 answers half its calls `429 Too Many Requests`
//! with `Retry-After: 2` (the ratings service's `throttle_rate` fault, set through its admin
//! endpoint). For each contender, with a fresh client or proxy: a healthy window, then a
//! window while instance 1 pushes back, both closed loop at `--concurrency` callers.
//!
//! A 429 is not a failure of the instance: the call should be answered by another instance,
//! the instance's breaker should stay closed, and the instance should get fewer calls while
//! it asks for them to stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Bed, Kind, make};
use crate::config::Plan;
use crate::contender::paths;
use crate::faults;
use crate::figures::{Figures, percent};
use crate::latency::show;
use crate::load::{closed_loop, warm};
use crate::openings::Openings;
use crate::peers::PeerKind;
use crate::report::{Section, Table};

/// The instance that pushes back (index into the bed, and its number in answers).
const THROTTLED: usize = 0;
const THROTTLED_ID: u16 = 1;
/// The share of its calls it answers 429.
pub const THROTTLE_RATE: f64 = 0.5;
/// Retest delay for every contender.
const RETEST: Duration = Duration::from_secs(30);

/// The contenders: ours with its defaults, and the proxies (round-robin, as in scenario 2)
/// where installed; `--contender` picks among ours, ours with round-robin and the proxies.
pub fn kinds(bed: &Bed, plan: &Plan) -> Vec<Kind> {
    let mut kinds = vec![Kind::Ours];
    if plan.contenders.contains(&Kind::OursRoundRobin.flag()) {
        kinds.push(Kind::OursRoundRobin);
    }
    for (peer, _) in &bed.peers {
        if matches!(peer, PeerKind::Nginx | PeerKind::Haproxy) {
            kinds.push(Kind::Peer(*peer));
        }
    }
    if !plan.contenders.is_empty() {
        kinds.retain(|k| plan.contenders.contains(&k.flag()));
    }
    kinds
}

/// What one contender did.
struct Outcome {
    kind: Kind,
    healthy: Figures,
    pushing_back: Figures,
    /// Our client only: how often the throttling instance's breaker opened.
    openings: Option<usize>,
}

/// Runs the back-pressure scenario on `bed` (instances started with `--admin`).
pub async fn run(bed: &Bed, plan: &Plan) -> Result<Section, String> {
    let mut outcomes = Vec::new();
    for kind in kinds(bed, plan) {
        eprintln!("  back-pressure: {}", kind.name());
        let outcome = run_one(bed, plan, kind).await;
        faults::heal(&bed.instances[THROTTLED].url).await?;
        outcomes.push(outcome?);
    }
    Ok(report(&outcomes, plan))
}

/// How long instance 1 pushes back: two measured windows, so that several `Retry-After`
/// periods pass.
fn pushback_window(plan: &Plan) -> Duration {
    plan.gray_window * 2
}

async fn run_one(bed: &Bed, plan: &Plan, kind: Kind) -> Result<Outcome, String> {
    let url = bed.instances[THROTTLED].url.clone();
    faults::heal(&url).await?;
    let entry = make(bed, kind, plan, RETEST).await?;
    let contender = Arc::clone(&entry.contender);
    let paths = Arc::new(paths());
    warm(&contender, &paths, plan.concurrency, plan.warmup).await;

    let healthy = closed_loop(
        Arc::clone(&contender),
        Arc::clone(&paths),
        plan.concurrency,
        Instant::now(),
        plan.gray_window,
        usize::MAX,
    )
    .await;

    let openings = Openings::watch(&contender, Some(&url));
    faults::set(&url, json!({ "throttle_rate": THROTTLE_RATE })).await?;
    let pushing_back = closed_loop(
        Arc::clone(&contender),
        Arc::clone(&paths),
        plan.concurrency,
        Instant::now(),
        pushback_window(plan),
        usize::MAX,
    )
    .await;
    faults::heal(&url).await?;
    let openings = openings.map(|o| o.count());
    drop(entry);
    Ok(Outcome {
        kind,
        healthy: Figures::of(&healthy.samples),
        pushing_back: Figures::of(&pushing_back.samples),
        openings,
    })
}

fn report(outcomes: &[Outcome], plan: &Plan) -> Section {
    let mut section = Section::new("9. Back-pressure: 429 with Retry-After (issue 13)");
    section.note(format!(
        "3 ratings instances, closed loop at {} callers. {} with three healthy instances, then {} \
         while instance 1 answers {:.0} % of its calls `429` with `Retry-After: 2` (the \
         `throttle_rate` fault). Every contender: {} ms per-attempt timeout, {} retries on another \
         instance where it can retry, one failure opens a breaker. \"breaker openings\" = \
         instance 1's breaker opening in our client while it pushed back (from \
         `ServiceClient::subscribe()`).",
        plan.concurrency,
        show(plan.gray_window),
        show(pushback_window(plan)),
        100.0 * THROTTLE_RATE,
        plan.timeout.as_millis(),
        plan.retries,
    ));
    let mut table = Table::new([
        "contender",
        "failed, healthy",
        "failed, pushing back",
        "share healthy",
        "share pushing back",
        "breaker openings",
        "p99 healthy",
        "p99 pushing back",
    ]);
    for o in outcomes {
        table.row([
            o.kind.name().to_string(),
            o.healthy.failed.to_string(),
            o.pushing_back.failed.to_string(),
            percent(o.healthy.share(THROTTLED_ID)),
            percent(o.pushing_back.share(THROTTLED_ID)),
            o.openings.map_or("–".to_string(), |n| n.to_string()),
            show(o.healthy.p99()),
            show(o.pushing_back.p99()),
        ]);
    }
    section.table(&table);
    match outcomes.iter().find(|o| o.kind == Kind::Ours) {
        Some(o) => {
            let failed = o.healthy.failed + o.pushing_back.failed;
            section.target(failed == 0, format!("0 calls failed: {failed}"));
            let openings = o.openings.unwrap_or(0);
            section.target(
                openings == 0,
                format!("instance 1's breaker never opens: {openings} openings"),
            );
            let (before, during) = (
                o.healthy.share(THROTTLED_ID),
                o.pushing_back.share(THROTTLED_ID),
            );
            section.target(
                before.zip(during).is_some_and(|(b, d)| d < b),
                format!(
                    "its share drops while it pushes back: {} → {}",
                    percent(before),
                    percent(during)
                ),
            );
            section.end_list();
        }
        None => section.note("(targets not judged: our client with its defaults did not run.)"),
    }
    section
}
