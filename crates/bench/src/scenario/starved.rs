//! A starved client (issue 13): the market (the real `market` binary, calling three healthy
//! ratings instances with a 300 ms timeout) is loaded with pages at fixed rates (open loop,
//! `--starved-rates`) while a cgroup CPU quota (`--starved-cpu-max`, 40 ms per second by
//! default) throttles it the way a container limit does. Every instance is healthy, so
//! every breaker that opens is a healthy one: the client's own lateness was blamed on it.
//!
//! Counted per rate step: pages asked for, pages that failed (not 200, or no answer within
//! 5 s), pages showing a stale rating (`rating_source: "stale"` in `GET /api/items`), and
//! `OPEN breaker on` lines in the market's log. Skipped, with a line saying why, where no
//! writable cgroup cpu controller exists (not root, or no controller).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::Plan;
use crate::latency::{Latencies, show};
use crate::open_loop::open_loop;
use crate::report::{Section, Table};
use crate::servers::Binaries;
use cpu_quota::{CpuQuota, Quota};

/// The market's per-attempt timeout to ratings, as in the issue.
const TIMEOUT: &str = "300ms";
/// How long a page may take before it counts as failed.
const PAGE_LIMIT: Duration = Duration::from_secs(5);
/// Pages outstanding at most; more are counted as not sent.
const MAX_IN_FLIGHT: usize = 2_000;
/// The market's log: as a user runs it (per-request lines included: their cost is part of
/// what a starved process has to do).
const MARKET_LOG: &str = "info";
/// What the library logs when a breaker opens.
const OPEN_LINE: &str = "OPEN breaker on";
/// The warm-up before the rate steps: rate and length.
const WARMUP_RATE: u32 = 50;
const WARMUP: Duration = Duration::from_secs(2);

/// The part of `GET /api/items` read here.
#[derive(Debug, Deserialize)]
struct Items {
    items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
struct Item {
    rating_source: String,
}

/// What one page load gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    /// 200, every rating live, cached or absent.
    Fine,
    /// 200, at least one rating stale.
    Stale,
    /// Not a 200, or not the JSON expected.
    Failed,
}

/// One rate step.
struct Step {
    rate: u32,
    pages: u64,
    failed: u64,
    stale: u64,
    not_sent: u64,
    latencies: Latencies,
    opened: usize,
}

/// When the quota comes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// The market starts inside the group, as in a container whose limits apply from the
    /// start: its runtime sizes itself to the quota (std's `available_parallelism` reads it:
    /// one worker thread under 4 % of a core).
    InGroup,
    /// The group is put on a market already running, sized for the machine's cores, after
    /// an unthrottled warm-up.
    Imposed,
}

impl Start {
    fn label(self) -> &'static str {
        match self {
            Start::InGroup => "started under the quota (as in a container)",
            Start::Imposed => "quota put on a running market",
        }
    }
}

/// What one market went through.
struct Starved {
    start: Start,
    steps: Vec<Step>,
    opened: usize,
    status: String,
}

/// Runs the starved-client scenario.
pub async fn run(bins: &Binaries, plan: &Plan) -> Result<Section, String> {
    let mut section = Section::new("12. A starved client: the market under a CPU quota (issue 13)");
    let quota = Quota::parse(&plan.starved_cpu_max)?;
    let controller = match cpu_quota::controller().and_then(|found| {
        cpu_quota::probe()?;
        Ok(found)
    }) {
        Ok((version, root)) => format!("{version:?} at {}", root.display()),
        Err(why) => {
            eprintln!("  starved: skipped: {why}");
            section.note(format!("> starved client skipped: {why}"));
            return Ok(section);
        }
    };

    let mut instances = Vec::new();
    for n in 1..=3 {
        instances.push(bins.ratings(n, None).await?);
    }
    let urls: Vec<String> = instances.iter().map(|s| s.url.clone()).collect();
    let mut runs = Vec::new();
    for start in [Start::InGroup, Start::Imposed] {
        eprintln!("  starved: {}", start.label());
        runs.push(starve(bins, plan, &urls, quota, start).await?);
    }
    drop(instances);

    section.note(format!(
        "3 healthy ratings instances; the market calls them directly (`--static-ratings`) with \
         `--timeout {TIMEOUT}`, RUST_LOG={MARKET_LOG}, its process in a cgroup allowed {} µs of \
         CPU per {} µs ({:.0} % of one core; cgroup {controller}). Two markets, one after the \
         other: one started inside the group, as a container's limits apply, so that its \
         runtime sizes itself to the quota (one worker thread); one started unthrottled (a \
         worker per core), warmed up for {} at {WARMUP_RATE} pages/s, then put in the group. \
         Each is loaded open loop with `GET /api/items` at each rate for {} (the first one's \
         warm-up, under the quota, is its first row). A page fails if it is not a 200 within {}; it is \
         stale if any rating on it is `stale`. Every instance is healthy, so every breaker \
         opened is a healthy one (counted from the market's log lines; per rate they may lag \
         into the next rate, the total is counted after the quota is lifted and the log \
         written out).",
        quota.quota_us,
        quota.period_us,
        100.0 * quota.cores(),
        show(WARMUP),
        show(plan.starved_step),
        show(PAGE_LIMIT),
    ));
    let mut table = Table::new([
        "market",
        "pages/s",
        "pages",
        "failed",
        "stale",
        "not sent (2000 outstanding)",
        "p50",
        "p99",
        "healthy breakers opened",
    ]);
    for run in &runs {
        for s in &run.steps {
            table.row([
                run.start.label().to_string(),
                s.rate.to_string(),
                s.pages.to_string(),
                s.failed.to_string(),
                s.stale.to_string(),
                s.not_sent.to_string(),
                show(s.latencies.percentile(50.0)),
                show(s.latencies.percentile(99.0)),
                s.opened.to_string(),
            ]);
        }
    }
    section.table(&table);
    for run in &runs {
        let label = run.start.label();
        section.note(format!(
            "The market's `/api/status` at the end ({label}): {}",
            run.status
        ));
    }
    for run in &runs {
        let label = run.start.label();
        let failed: u64 = run.steps.iter().map(|s| s.failed + s.not_sent).sum();
        let stale: u64 = run.steps.iter().map(|s| s.stale).sum();
        let opened = run.opened;
        section.target(
            opened == 0,
            format!("{label}: 0 healthy breakers opened: {opened}"),
        );
        section.target(failed == 0, format!("{label}: 0 pages failed: {failed}"));
        section.target(
            stale == 0,
            format!("{label}: 0 pages with stale ratings: {stale}"),
        );
    }
    section.end_list();
    Ok(section)
}

/// One market calling `urls`, throttled by `quota` from `start`, through every rate step.
async fn starve(
    bins: &Binaries,
    plan: &Plan,
    urls: &[String],
    quota: Quota,
    start: Start,
) -> Result<Starved, String> {
    let name = format!("discovery-bench-starved-{}-{start:?}", std::process::id());
    let group = CpuQuota::create(&name, quota)?;
    let flags = ["--timeout", TIMEOUT];
    let market = match start {
        Start::InGroup => {
            bins.market_in_cgroup(&group.procs(), urls, &flags, MARKET_LOG)
                .await?
        }
        Start::Imposed => bins.market(urls, &flags, MARKET_LOG).await?,
    };
    let http = reqwest::Client::builder()
        .timeout(PAGE_LIMIT)
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let page_url = Arc::new(format!("{}/api/items", market.url));

    // Connections made, every instance known. Under the quota already, the warm-up is a
    // step like the others (and its breakers count); unthrottled, it must not fail.
    let mut warm = pages(&http, &page_url, WARMUP_RATE, WARMUP).await;
    let mut steps = Vec::new();
    let opened_before = match start {
        Start::InGroup => {
            warm.opened = count_open(&market.process.output());
            steps.push(warm);
            0
        }
        Start::Imposed if warm.failed > 0 => {
            return Err(format!(
                "the market failed {} of {} pages before any quota:\n{}",
                warm.failed,
                warm.pages,
                market.process.output()
            ));
        }
        Start::Imposed => {
            group.add(market.process.pid())?;
            count_open(&market.process.output())
        }
    };
    for &rate in &plan.starved_rates {
        eprintln!("  starved: {rate} pages/s");
        let before = count_open(&market.process.output());
        let mut step = pages(&http, &page_url, rate, plan.starved_step).await;
        step.opened = count_open(&market.process.output()) - before;
        steps.push(step);
    }
    // Lifted: the market writes out the log lines it was too starved to write yet (counting
    // before this missed breakers the status showed open), and answers its status.
    drop(group);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let opened = count_open(&market.process.output()) - opened_before;
    let status = status_line(&http, &market.url).await;
    drop(market);
    Ok(Starved {
        start,
        steps,
        opened,
        status,
    })
}

/// Loads `url` at `rate` pages a second for `duration`.
async fn pages(http: &reqwest::Client, url: &Arc<String>, rate: u32, duration: Duration) -> Step {
    let run = open_loop(rate, duration, PAGE_LIMIT, MAX_IN_FLIGHT, || {
        let http = http.clone();
        let url = Arc::clone(url);
        async move { page(&http, &url).await }
    })
    .await;
    let mut step = Step {
        rate,
        pages: run.arrivals.len() as u64 + run.not_sent,
        failed: 0,
        stale: 0,
        not_sent: run.not_sent,
        latencies: Latencies::new(),
        opened: 0,
    };
    for arrival in &run.arrivals {
        step.latencies.record(arrival.latency);
        match arrival.outcome {
            Some(Page::Fine) => {}
            Some(Page::Stale) => step.stale += 1,
            Some(Page::Failed) | None => step.failed += 1,
        }
    }
    step
}

async fn page(http: &reqwest::Client, url: &str) -> Page {
    let Ok(answer) = http.get(url).send().await else {
        return Page::Failed;
    };
    if !answer.status().is_success() {
        return Page::Failed;
    }
    match answer.json::<Items>().await {
        Ok(items) if items.items.iter().any(|i| i.rating_source == "stale") => Page::Stale,
        Ok(_) => Page::Fine,
        Err(_) => Page::Failed,
    }
}

fn count_open(log: &str) -> usize {
    log.lines().filter(|l| l.contains(OPEN_LINE)).count()
}

/// The instances' breaker states from the market's `/api/status`, as `1 closed, 2 open, …`.
async fn status_line(http: &reqwest::Client, market: &str) -> String {
    #[derive(Deserialize)]
    struct Status {
        instances: Vec<Instance>,
    }
    #[derive(Deserialize)]
    struct Instance {
        id: String,
        state: String,
    }
    match http.get(format!("{market}/api/status")).send().await {
        Ok(answer) => match answer.json::<Status>().await {
            Ok(status) => status
                .instances
                .iter()
                .map(|i| format!("instance {} {}", i.id, i.state))
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("unreadable ({e})"),
        },
        Err(e) => format!("no answer ({e})"),
    }
}
