//! Chaos under load: proves that the market keeps serving its users while the ratings
//! instances and the registry fail in each of the ways users of such a system meet.
//!
//! A scenario starts the real programs (registry, three ratings instances, market), puts the
//! market under steady open-loop load, injects one fault, heals it, and checks what the users
//! saw (no failed request, every page with its four items and the right ratings) and what
//! the market's log says (the expected breaker transitions, at most one probe per retest).
//!
//! - [`load`]: the bounded open-loop load generator (rate, duration, concurrency cap).
//! - [`tally`]: what the load saw: sent, failed, stale, wrong, latencies.
//! - [`black_hole`]: a TCP listener that accepts connections and never answers.
//! - [`netns`]: a network namespace behind a veth pair, whose packets can be dropped.
//! - [`delay_relay`]: a TCP relay that holds every chunk for a delay: a slow link.
//! - [`cluster`]: the real programs, and the faults that can be done to them.
//! - [`store`]: the registry's store: its memory, or a 3-member etcd cluster on loopback.
//! - [`listing`]: watches the registry's listing, to show no registration was lost.
//! - [`transitions`]: breaker transitions and probes, read back from the market's log.
//! - [`scenario`]: the faults, and what each one must show.
//! - [`runner`]: runs one scenario under load ([`Profile::quick`] for CI, [`Profile::full`]).
//! - [`report`]: Markdown tables of the outcomes.
//! - [`survives`]: one scenario's short form as a test: skipped where it cannot run, else
//!   it must pass.
//!
//! The `chaos` binary runs them: `chaos --quick`, `chaos --full`, `chaos --scenario pause`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod black_hole;
pub mod cluster;
pub mod delay_relay;
pub mod listing;
pub mod load;
pub mod netns;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod store;
pub mod tally;
pub mod transitions;

pub use runner::{Outcome, Profile, run};
pub use scenario::Scenario;

/// Held by the running scenario, so that a test binary's scenarios never overlap (they
/// time real processes and would skew each other's latencies on a small machine).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `scenario`'s short form ([`Profile::quick`]) and panics with the details unless it
/// passed; prints its table row. Where it cannot run ([`Scenario::unavailable`]: no root,
/// no etcd, unless `CI` is set) it is skipped with a message.
pub async fn survives(scenario: Scenario) {
    if let Some(why) = scenario.unavailable() {
        eprintln!("SKIPPED: {} {why}", scenario.name());
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let outcome = run(scenario, &Profile::quick()).await;
    eprintln!("{}", report::table(std::slice::from_ref(&outcome)));
    assert!(outcome.passed(), "{}", report::details(&outcome));
}
