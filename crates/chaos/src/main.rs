//! `chaos`: runs fault scenarios against the real programs under load and prints a
//! Markdown table per fault. Exits 1 if any scenario failed.
//!
//! ```text
//! chaos --quick                    every fault, 40 req/s, a few seconds each (what CI runs)
//! chaos --full                     every fault, 200 req/s, 60 s each (`make chaos`)
//! chaos --scenario pause --full    one fault (repeat --scenario for more)
//! chaos --list                     the faults
//! ```
//!
//! A fault this machine cannot inflict (`throttled` without a writable cgroup cpu
//! controller, the network faults where no network namespace can be made) is skipped with
//! a line saying why.

use std::process::ExitCode;
use std::time::Duration;

use chaos::{Profile, Scenario, report, run};
use clap::Parser;

/// Chaos under load: inject each fault into the real registry, ratings and market.
#[derive(Debug, Parser)]
#[command(name = "chaos", version)]
struct Args {
    /// The short form: 40 req/s, about 4 s per fault.
    #[arg(long, conflicts_with = "full")]
    quick: bool,

    /// The full form: 200 req/s, 60 s per fault (5 s warm-up, 30 s fault, 25 s recovery).
    #[arg(long)]
    full: bool,

    /// Run only this fault (repeatable); see --list.
    #[arg(long = "scenario", value_name = "NAME", value_parser = parse_scenario)]
    scenarios: Vec<Scenario>,

    /// Override the request rate (requests per second to the market).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=2000))]
    rate: Option<u32>,

    /// Override how long each fault lasts, e.g. `10s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    fault: Option<Duration>,

    /// List the faults and exit.
    #[arg(long)]
    list: bool,
}

fn parse_scenario(name: &str) -> Result<Scenario, String> {
    Scenario::named(name).ok_or_else(|| {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        format!("unknown scenario {name:?}; one of {}", names.join(", "))
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for scenario in Scenario::ALL {
            println!("{:<17} {}", scenario.name(), scenario.describe());
        }
        return ExitCode::SUCCESS;
    }
    let mut profile = if args.full {
        Profile::full()
    } else {
        Profile::quick()
    };
    if let Some(rate) = args.rate {
        profile.rate = rate;
        profile.name = "custom";
    }
    if let Some(fault) = args.fault {
        profile.fault = fault;
        profile.name = "custom";
    }
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    println!(
        "# chaos ({}): {} req/s, warm-up {:?}, fault {:?}, recovery {:?}..{:?}\n",
        profile.name,
        profile.rate,
        profile.warmup,
        profile.fault,
        profile.recover_min,
        profile.recover_max
    );
    let mut outcomes = Vec::new();
    for scenario in scenarios {
        if let Some(why) = scenario.unavailable() {
            println!("{} skipped: {why}\n", scenario.name());
            eprintln!("chaos: {} skipped: {why}", scenario.name());
            continue;
        }
        eprintln!("chaos: {} ({})...", scenario.name(), scenario.describe());
        let outcome = run(scenario, &profile).await;
        print!("{}", report::table(std::slice::from_ref(&outcome)));
        println!();
        outcomes.push(outcome);
    }
    println!("## all faults\n\n{}", report::table(&outcomes));
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed()).collect();
    for outcome in &failed {
        println!("{}", report::details(outcome));
    }
    if failed.is_empty() {
        println!("{} passed, 0 failed", outcomes.len());
        ExitCode::SUCCESS
    } else {
        println!(
            "{} passed, {} failed",
            outcomes.len() - failed.len(),
            failed.len()
        );
        ExitCode::FAILURE
    }
}
