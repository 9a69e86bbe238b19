//! Runs one scenario under load and judges it.
//!
//! The timeline: start a fresh cluster, warm the market up (every rating live once, so its
//! stale fallback holds every item), start the load, wait `warmup`, inflict the fault for
//! `fault` (healing it where the scenario heals), then keep the load on until what the
//! scenario must show has been seen, at least `recover_min` and at most `recover_max`.

use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::{Cluster, ClusterConfig, ISOLATED};
use crate::listing::{Listing, ListingWatch};
use crate::load::{Load, LoadConfig};
use crate::scenario::{Check, Expect, Scenario};
use crate::tally::Tally;
use crate::transitions::Transitions;

/// How hard and how long each scenario runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// `quick`, `full` or `custom`, for the report.
    pub name: &'static str,
    /// Requests per second to the market.
    pub rate: u32,
    /// Load before the fault.
    pub warmup: Duration,
    /// How long the fault lasts.
    pub fault: Duration,
    /// Load after the fault, at least.
    pub recover_min: Duration,
    /// Load after the fault, at most (while waiting for what must be seen).
    pub recover_max: Duration,
    /// Most requests in flight.
    pub concurrency: usize,
    /// A request slower than this has failed.
    pub request_timeout: Duration,
}

impl Profile {
    /// The short form CI runs: 40 req/s, about 3 to 4 s per fault.
    pub fn quick() -> Profile {
        Profile {
            name: "quick",
            rate: 40,
            warmup: Duration::from_millis(500),
            fault: Duration::from_millis(1500),
            recover_min: Duration::from_millis(1000),
            recover_max: Duration::from_secs(8),
            // rate × request_timeout: a request is shed only when it would have timed out
            // anyway. 64 shed a few requests while `throttled` froze a debug market for up to
            // 1.8 s (about 70 requests in flight at 40 req/s), which is that scenario's point.
            concurrency: 200,
            request_timeout: Duration::from_secs(5),
        }
    }

    /// The full form (`make chaos`): 200 req/s for 60 s per fault: 5 s of warm-up, 30 s of
    /// fault, 25 s of recovery.
    pub fn full() -> Profile {
        Profile {
            name: "full",
            rate: 200,
            warmup: Duration::from_secs(5),
            fault: Duration::from_secs(30),
            recover_min: Duration::from_secs(25),
            recover_max: Duration::from_secs(40),
            concurrency: 512,
            request_timeout: Duration::from_secs(5),
        }
    }

    /// The longest the load can run, as a hard bound for the generator.
    fn max_load(&self, scenario: Scenario) -> Duration {
        self.warmup + scenario.window(self.fault) + self.recover_max + Duration::from_secs(30)
    }
}

/// What one scenario run showed.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The fault.
    pub scenario: Scenario,
    /// The load it ran under.
    pub profile: Profile,
    /// What the users saw.
    pub tally: Tally,
    /// What the market's log showed.
    pub transitions: Transitions,
    /// Every check, generic and scenario-specific.
    pub checks: Vec<Check>,
    /// Connections the black hole accepted (the `silent` scenario only).
    pub black_hole_connections: usize,
    /// The most requests the black hole held at once after its breaker opened (the
    /// `silent` scenario only).
    pub black_hole_max_held: Option<usize>,
    /// What the registry's listing showed through the run (the etcd scenarios only).
    pub listing: Option<Listing>,
    /// The isolated instance's share of the market's attempts while the fault was on (the
    /// network scenarios only).
    pub fault_share: Option<f64>,
    /// Why the run could not be carried out, if it could not.
    pub error: Option<String>,
}

impl Outcome {
    fn broken(scenario: Scenario, profile: &Profile, error: String) -> Outcome {
        Outcome {
            scenario,
            profile: profile.clone(),
            tally: Tally::default(),
            transitions: Transitions::default(),
            checks: Vec::new(),
            black_hole_connections: 0,
            black_hole_max_held: None,
            listing: None,
            fault_share: None,
            error: Some(error),
        }
    }

    /// Whether the run was carried out and every check held.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.checks.iter().all(|c| c.passed)
    }

    /// The checks that failed.
    pub fn failed_checks(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

/// Runs `scenario` under `profile` against a fresh cluster. Never panics: a crash of the
/// run (say, a program that would not start) is reported in [`Outcome::error`].
pub async fn run(scenario: Scenario, profile: &Profile) -> Outcome {
    let owned = profile.clone();
    match tokio::spawn(run_scenario(scenario, owned)).await {
        Ok(outcome) => outcome,
        Err(error) => Outcome::broken(scenario, profile, format!("the run crashed: {error}")),
    }
}

async fn run_scenario(scenario: Scenario, profile: Profile) -> Outcome {
    let config = ClusterConfig {
        etcd: scenario.on_etcd(),
        isolation: scenario.isolation(),
        ..ClusterConfig::default()
    };
    let mut cluster = match Cluster::start(config).await {
        Ok(cluster) => cluster,
        Err(error) => return Outcome::broken(scenario, &profile, error),
    };
    let truth = match cluster.warm_up().await {
        Ok(truth) => truth,
        Err(error) => return Outcome::broken(scenario, &profile, error),
    };
    let expectations = scenario.expectations();
    let from = cluster.market_log_len();
    let load = Load::start(
        cluster.market_url(),
        truth,
        LoadConfig {
            rate: profile.rate,
            concurrency: profile.concurrency,
            request_timeout: profile.request_timeout,
            max_duration: profile.max_load(scenario),
        },
    );
    let watch = scenario
        .live_instances()
        .map(|_| ListingWatch::start(cluster.registry_url(), cluster.http()));
    tokio::time::sleep(profile.warmup).await;
    let fault_from = cluster.market_log_len();
    let inflicted = scenario.inflict(&mut cluster, profile.fault).await;
    let healed = Instant::now();
    // Which instances the market called while the fault was on.
    let fault_share = scenario.isolation().and_then(|_| {
        Transitions::read(
            &cluster.market_log_since(fault_from),
            cluster.ids_by_address(),
        )
        .share(&ISOLATED.to_string())
    });
    while healed.elapsed() < profile.recover_max {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if healed.elapsed() >= profile.recover_min && all_seen(&cluster, from, &expectations).await
        {
            break;
        }
    }
    let tally = load.stop().await;
    let listing = match watch {
        Some(watch) => Some(watch.stop().await),
        None => None,
    };
    // The log is read by threads as the programs write it; give the last lines a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let market_log = cluster.market_log_since(from);
    let transitions = Transitions::read(&market_log, cluster.ids_by_address());
    keep_log(scenario, &market_log);
    let registered = cluster.registered().await.ok();
    let black_hole_max_held = cluster.black_hole_max_held();
    let mut checks = generic_checks(&tally, &transitions);
    if let Some(held) = black_hole_max_held {
        checks.push(Check {
            what: "black hole never held two probes at once".to_owned(),
            passed: held <= 1,
            observed: format!("at most {held} at once after its breaker opened"),
        });
    }
    if let Some(most) = scenario.max_fault_share() {
        checks.push(share_check(most, fault_share));
    }
    if let (Some(live), Some(listing)) = (scenario.live_instances(), &listing) {
        checks.push(listing_check(live, listing));
    }
    checks.extend(
        expectations
            .iter()
            .map(|e| e.check(&transitions, Some(&tally), registered.as_deref())),
    );
    let black_hole_connections = cluster.black_hole_connections();
    cluster.shut_down().await;
    Outcome {
        scenario,
        profile,
        tally,
        transitions,
        checks,
        black_hole_connections,
        black_hole_max_held,
        listing,
        fault_share,
        error: inflicted.err(),
    }
}

/// No registration lost: every answered read of the registry's listing named at least the
/// `live` instances (and some read was answered).
fn listing_check(live: &[&str], listing: &Listing) -> Check {
    let complete = listing
        .fewest
        .as_ref()
        .is_some_and(|fewest| live.iter().all(|id| fewest.iter().any(|f| f == id)));
    Check {
        what: format!(
            "no registration lost: the listing never below {}",
            live.join(",")
        ),
        passed: listing.answered > 0 && complete,
        observed: listing.summary(),
    }
}

/// The isolated instance took at most `most` of the attempts while the fault was on (and
/// some attempt was made).
fn share_check(most: f64, share: Option<f64>) -> Check {
    Check {
        what: format!(
            "instance {ISOLATED} took at most {:.0} % of attempts during the fault",
            most * 100.0
        ),
        passed: share.is_some_and(|share| share <= most),
        observed: share.map_or("no attempt".to_owned(), |share| {
            format!("{:.1} %", share * 100.0)
        }),
    }
}

/// With `CHAOS_LOG_DIR` set, writes the market's log of the run to
/// `$CHAOS_LOG_DIR/<scenario>-market.log`, for a closer look at what happened.
fn keep_log(scenario: Scenario, lines: &[String]) {
    let Some(dir) = std::env::var_os("CHAOS_LOG_DIR") else {
        return;
    };
    let path = std::path::Path::new(&dir).join(format!("{}-market.log", scenario.name()));
    let written =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, lines.join("\n")));
    if let Err(error) = written {
        eprintln!("chaos: cannot write {}: {error}", path.display());
    }
}

/// Whether everything the scenario must show has been seen so far.
async fn all_seen(cluster: &Cluster, from: usize, expectations: &[Expect]) -> bool {
    let transitions = Transitions::read(&cluster.market_log_since(from), cluster.ids_by_address());
    let registered = if expectations.iter().any(Expect::needs_registry) {
        cluster.registered().await.ok()
    } else {
        None
    };
    expectations
        .iter()
        .filter(|e| !matches!(e, Expect::Never(_)))
        .all(|e| e.check(&transitions, None, registered.as_deref()).passed)
}

/// What every run must show, whatever the fault.
fn generic_checks(tally: &Tally, transitions: &Transitions) -> Vec<Check> {
    let probes = transitions.max_probes_per_retest();
    vec![
        Check {
            what: "load was sent".to_owned(),
            passed: tally.sent > 0,
            observed: tally.sent.to_string(),
        },
        Check {
            what: "no failed request".to_owned(),
            passed: tally.failed == 0,
            observed: if tally.failures.is_empty() {
                "0".to_owned()
            } else {
                format!("{}: {}", tally.failed, tally.failures.join(" | "))
            },
        },
        Check {
            what: "no request shed".to_owned(),
            passed: tally.shed == 0,
            observed: tally.shed.to_string(),
        },
        Check {
            what: "no wrong rating shown".to_owned(),
            passed: tally.wrong == 0,
            observed: tally.wrong.to_string(),
        },
        Check {
            what: "every item rated".to_owned(),
            passed: tally.unrated == 0,
            observed: tally.unrated.to_string(),
        },
        Check {
            what: "at most one probe per retest".to_owned(),
            passed: probes <= 1,
            observed: format!(
                "max {probes} over {} failed retests",
                transitions.retests_checked
            ),
        },
    ]
}
