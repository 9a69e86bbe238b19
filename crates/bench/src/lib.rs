//! Benchmarks of the discovery client side by side with what people would use instead:
//! plain reqwest (to one instance, or round-robin by hand), and nginx or HAProxy in front of
//! the instances. Everything runs on loopback, started and stopped by the `bench` program.
//!
//! - [`config`]: flags and the plan they make (`--quick`, `--scenario NAME`).
//! - [`procs`]: child processes: start, pause/resume, measure, always stop.
//! - [`servers`]: our ratings instances and registry as real processes on free ports.
//! - [`peers`]: nginx and HAProxy, configured from `peers/*.tmpl` to match our defaults.
//! - [`contender`]: the ways of calling the instances being compared.
//! - [`load`]: closed-loop load that records every request.
//! - [`latency`]: HDR histograms and percentiles.
//! - [`connections`]: how many connections a client holds to the instances.
//! - [`raw_http`]: a minimal keep-alive client for loading the registry.
//! - [`scaling`]: 2-thread scaling with 1- and 2-thread intervals interleaved.
//! - [`instant`]: a `ServiceClient` over a transport that answers at once, for the client's
//!   own per-call cost.
//! - [`scenario`]: the twelve scenarios (steady, sick, propagation, registry, micro,
//!   steady-tls, http2; and issue 13's gray, backpressure, tower-balance, slow-start,
//!   starved).
//! - [`faults`]: faults set on running ratings instances through their admin endpoint.
//! - [`figures`]: percentiles, failures and each instance's share of some requests.
//! - [`tower_p2c`]: tower's own `p2c::Balance` over hyper clients, as a contender.
//! - [`loopback_ratings`]: in-process endpoints with spread latencies (tower's example).
//! - [`open_loop`]: load at a fixed rate, whatever the answers' latency.
//! - [`openings`]: our client's breaker openings during a run.
//! - [`machine`]: what machine the numbers came from.
//! - [`report`]: Markdown tables and target verdicts.

#![forbid(unsafe_code)]

pub mod config;
pub mod connections;
pub mod contender;
pub mod faults;
pub mod figures;
pub mod instant;
pub mod latency;
pub mod load;
pub mod loopback_ratings;
pub mod machine;
pub mod open_loop;
pub mod openings;
pub mod peers;
pub mod procs;
pub mod raw_http;
pub mod report;
pub mod scaling;
pub mod scenario;
pub mod servers;
pub mod tower_p2c;

use std::time::Instant;

use config::{Args, Plan, Scenario};
use scenario::Bed;
use scenario::tls_bed::TlsBed;
use servers::Binaries;

/// Runs the scenarios the flags ask for and returns the Markdown report.
pub async fn run(args: &Args) -> Result<String, String> {
    let plan = Plan::from_args(args);
    let started = Instant::now();
    let mut out = String::new();
    out.push_str(&format!(
        "# Benchmark results ({} run)\n\nRun at {} with `{}`.\n\n",
        if plan.quick { "quick" } else { "full" },
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        std::env::args().collect::<Vec<_>>().join(" ")
    ));
    out.push_str("## Machine\n\n");
    out.push_str(&machine::describe().render());
    out.push('\n');

    let wants = |s| Plan::wants(args, s);
    let needs_servers = [
        Scenario::Steady,
        Scenario::Sick,
        Scenario::Propagation,
        Scenario::Registry,
        Scenario::SteadyTls,
        Scenario::Http2,
        Scenario::Gray,
        Scenario::Backpressure,
        Scenario::SlowStart,
        Scenario::Starved,
        Scenario::Grpc,
    ]
    .into_iter()
    .any(wants);
    let bins = if needs_servers {
        Some(Binaries::locate(args.bin_dir.as_deref())?)
    } else {
        None
    };

    if let (Some(bins), true) = (&bins, wants(Scenario::Steady) || wants(Scenario::Sick)) {
        eprintln!("starting 3 ratings instances");
        let mut bed = Bed::start(bins, args.no_nginx, args.no_haproxy).await?;
        for line in &bed.skipped {
            eprintln!("{line}");
            out.push_str(&format!("> {line}\n\n"));
        }
        let mut baseline = None;
        if wants(Scenario::Steady) {
            eprintln!("scenario 1: steady-state overhead");
            let (section, b) = scenario::steady::run(&bed, &plan).await?;
            baseline = b;
            out.push_str(section.render());
        }
        if wants(Scenario::Sick) {
            eprintln!("scenario 2: sick instance");
            let section = scenario::sick::run(&mut bed, &plan, baseline).await?;
            out.push_str(section.render());
        }
    }
    if let (Some(bins), true) = (&bins, wants(Scenario::Propagation)) {
        eprintln!("scenario 3: discovery propagation");
        out.push_str(scenario::propagation::run(bins, &plan).await?.render());
    }
    if let (Some(bins), true) = (&bins, wants(Scenario::Registry)) {
        eprintln!("scenario 4: registry scale");
        out.push_str(scenario::registry_scale::run(bins, &plan).await?.render());
    }
    if wants(Scenario::Micro) {
        let dir = args
            .criterion_dir
            .clone()
            .or_else(scenario::micro::default_dir)
            .ok_or("cannot find criterion's directory; pass --criterion-dir")?;
        eprintln!("scenario 5: hot path (criterion results, and interleaved 2-thread scaling)");
        let rounds = if plan.quick { 6 } else { 15 };
        // On a plain thread of its own: the measurements build runtimes of their own.
        let interval = std::time::Duration::from_millis(50);
        let scaling = std::thread::spawn(move || scaling::run_all(rounds, interval))
            .join()
            .map_err(|_| "the scaling measurements panicked".to_string())?;
        out.push_str(scenario::micro::report(&dir, &scaling, rounds).render());
    }
    if let (Some(bins), true) = (&bins, wants(Scenario::SteadyTls) || wants(Scenario::Http2)) {
        eprintln!("starting 3 ratings instances over TLS");
        let bed = TlsBed::start(bins, wants(Scenario::SteadyTls), args.no_nginx).await?;
        if wants(Scenario::SteadyTls) {
            eprintln!("scenario 6: steady-state overhead over TLS");
            out.push_str(scenario::steady_tls::run(&bed, &plan).await?.render());
        }
        if wants(Scenario::Http2) {
            eprintln!("scenario 7: HTTP/2 and HTTP/1.1 over TLS");
            out.push_str(scenario::http2::run(&bed, &plan).await?.render());
        }
    }
    if let (Some(bins), true) = (
        &bins,
        wants(Scenario::Gray) || wants(Scenario::Backpressure),
    ) {
        eprintln!("starting 3 ratings instances with their admin endpoint");
        let bed = Bed::start_with(bins, args.no_nginx, args.no_haproxy, &["--admin"]).await?;
        for line in &bed.skipped {
            eprintln!("{line}");
            out.push_str(&format!("> {line}\n\n"));
        }
        if wants(Scenario::Gray) {
            eprintln!("scenario 8: gray failure (one slow instance)");
            out.push_str(scenario::gray::run(&bed, &plan).await?.render());
        }
        if wants(Scenario::Backpressure) {
            eprintln!("scenario 9: back-pressure (429 with Retry-After)");
            out.push_str(scenario::backpressure::run(&bed, &plan).await?.render());
        }
    }
    if wants(Scenario::TowerBalance) {
        eprintln!("scenario 10: tower's balance example (latencies from 1 ms to 1 s)");
        out.push_str(scenario::tower_balance::run(&plan).await?.render());
    }
    if let (Some(bins), true) = (&bins, wants(Scenario::SlowStart)) {
        eprintln!("scenario 11: slow start (an instance joins a loaded service)");
        out.push_str(scenario::slow_start::run(bins, &plan).await?.render());
    }
    if let (Some(bins), true) = (&bins, wants(Scenario::Starved)) {
        eprintln!("scenario 12: a starved client (the market under a CPU quota)");
        out.push_str(scenario::starved::run(bins, &plan).await?.render());
    }
    if let (Some(bins), true) = (&bins, wants(Scenario::Grpc)) {
        eprintln!("scenario 13: gRPC, ours and tonic's balance_list");
        out.push_str(scenario::grpc::run(bins, &plan).await?.render());
    }
    out.push_str(&format!(
        "Harness wall time: {:.0} s (criterion runs separately).\n",
        started.elapsed().as_secs_f64()
    ));
    Ok(out)
}
