//! Markdown tables of scenario outcomes.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cluster::ISOLATED;
use crate::runner::Outcome;

/// One table, one row per outcome: load held, sent, failed, stale, latencies, transitions.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| fault | what was done | load held | sent | failed | served stale | wrong / unrated \
         | p50 | p99 | max latency | breaker transitions seen | checks |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    for o in outcomes {
        let t = &o.tally;
        let checks = if o.passed() {
            format!("all {} passed", o.checks.len())
        } else {
            let failed: Vec<&str> = o.failed_checks().map(|c| c.what.as_str()).collect();
            match &o.error {
                Some(error) => format!("**ERROR** {error}"),
                None => format!("**FAILED**: {}", failed.join("; ")),
            }
        };
        let mut transitions = o.transitions.to_string();
        if o.black_hole_connections > 0 {
            let _ = write!(
                transitions,
                "; black hole accepted {}",
                o.black_hole_connections
            );
            if let Some(held) = o.black_hole_max_held {
                let _ = write!(transitions, ", ≤{held} at a time once open");
            }
        }
        if let Some(share) = o.fault_share {
            let id = ISOLATED.to_string();
            let _ = write!(
                transitions,
                "; instance {id}: {:.1} % of attempts during the fault, removed×{} added×{}",
                share * 100.0,
                o.transitions.removed(&id),
                o.transitions.added(&id)
            );
        }
        if let Some(listing) = &o.listing {
            let _ = write!(transitions, "; registry {}", listing.summary());
        }
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} req/s × {:.1} s | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
            o.scenario.name(),
            o.scenario.describe(),
            t.achieved_rate(),
            t.elapsed.as_secs_f64(),
            t.sent,
            t.failed,
            t.stale,
            t.wrong,
            t.unrated,
            ms(t.percentile(0.5)),
            ms(t.percentile(0.99)),
            ms(t.max_latency()),
            transitions,
            checks,
        );
    }
    out
}

/// Every check of one outcome, with what was seen, for a failing run.
pub fn details(outcome: &Outcome) -> String {
    let mut out = format!(
        "### {} ({})\n\n",
        outcome.scenario.name(),
        outcome.profile.name
    );
    if let Some(error) = &outcome.error {
        let _ = writeln!(out, "error: {error}\n");
    }
    for check in &outcome.checks {
        let mark = if check.passed { "ok  " } else { "FAIL" };
        let _ = writeln!(out, "- {mark} {}: {}", check.what, check.observed);
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}
