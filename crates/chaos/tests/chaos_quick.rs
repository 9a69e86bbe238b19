//! The chaos suite's short form, run by `cargo test` (and so by CI): every fault at 40 req/s
//! for a few seconds, against the real registry, ratings instances and market. Each must
//! end with no failed request, no wrong or missing rating, at most one probe per retest,
//! and the breaker transitions (or discovery events) that fault calls for.
//!
//! `throttled` needs root to put the market in a cgroup: elsewhere it is skipped with a
//! message, unless `CI` is set (the CI machine runs as root).
//!
//! The scenarios run one at a time (a shared lock), as they time real processes and would
//! skew each other's latencies on a small machine. `chaos --quick` runs the same thing and
//! prints the table; `make chaos` runs the full form.

use chaos::{Scenario, survives};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_instance_opens_its_breaker_and_closes_it_once_resumed() {
    survives(Scenario::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_opens_its_breaker_and_never_closes_it() {
    survives(Scenario::KillOne).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_instance_killed_pages_are_served_stale_until_they_return() {
    survives(Scenario::KillAll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_instance_is_cut_off_by_the_timeout() {
    survives(Scenario::Slow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_answering_500s_is_taken_out_and_back() {
    survives(Scenario::Errors).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bodies_never_reach_the_page() {
    survives(Scenario::Garbage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_never_answers_is_probed_once_per_retest() {
    survives(Scenario::Silent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_empty_registry_is_refilled_while_clients_keep_working() {
    survives(Scenario::RegistryRestart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_instance_is_opened_and_closed_as_it_goes() {
    survives(Scenario::Flap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_correct_instance_opens_no_breaker() {
    survives(Scenario::Gray).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_market_starved_of_cpu_opens_no_breaker_and_shows_nothing_stale() {
    survives(Scenario::Throttled).await;
}
