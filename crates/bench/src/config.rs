//! Command-line flags (each with an environment fallback) and the plan they make: how long
//! each scenario runs and with what load.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The scenarios, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Steady-state overhead: closed-loop load through every contender.
    Steady,
    /// One of three instances paused (SIGSTOP) in the middle of the run.
    Sick,
    /// Time from (de)registration to the client using (or dropping) the instance.
    Propagation,
    /// 10,000 instances in 1,000 services heartbeating against one registry.
    Registry,
    /// The criterion hot-path results (run `cargo bench -p bench` first), as a table.
    Micro,
    /// Steady-state overhead over TLS: ours and hyper+rustls by hand to instances serving
    /// HTTPS, and nginx terminating TLS in front of plain ones.
    SteadyTls,
    /// HTTP/2 against HTTP/1.1 over TLS on the same instances, at several numbers of callers:
    /// throughput, p99 and connections held.
    Http2,
    /// Gray failure (issue 13): one of three instances answers correctly but slowly (each of
    /// `--gray-latency`), at each of `--gray-concurrency` callers, against the same run with
    /// three healthy instances; then healed, and its share followed in 5 s windows.
    Gray,
    /// Back-pressure (issue 13): one instance answers half its calls 429 with
    /// `Retry-After: 2`.
    Backpressure,
    /// The conditions of tower's `examples/tower-balance.rs`: 10 in-process endpoints whose
    /// latencies are spread from 1 ms to 1 s, many concurrent requests.
    TowerBalance,
    /// Slow start (issue 13): a fourth instance joins a loaded service; its share per second
    /// against the configured ramp.
    SlowStart,
    /// A starved client (issue 13): the market with its CPU capped by a cgroup quota, as a
    /// container limit does, under open-loop load.
    Starved,
    /// gRPC (issue 16): `GetRating` on three ratings instances through our `grpc::channel`
    /// and through tonic's `Channel::balance_list`, steady and with one instance paused.
    Grpc,
}

/// The contenders, for `--contender`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ContenderName {
    /// Plain reqwest to one instance.
    Direct,
    /// Plain reqwest, round-robin by hand.
    RoundRobin,
    /// Plain hyper to one instance (the client under our transport; steady scenario only,
    /// unless asked for).
    Hyper,
    /// Plain hyper, round-robin by hand (steady scenario only, unless asked for).
    HyperRoundRobin,
    /// Our `ServiceClient`.
    Ours,
    /// Our `ServiceClient` with hedging off.
    OursUnhedged,
    /// Our `ServiceClient` with `Balance::RoundRobin` (steady, gray and tower-balance
    /// scenarios; elsewhere only when asked for).
    OursRoundRobin,
    /// Our `ServiceClient` with `Balance::LeastPending` (steady scenario only, unless asked
    /// for).
    OursLeastPending,
    /// Through nginx.
    Nginx,
    /// Through HAProxy with L7 retries.
    Haproxy,
    /// Through HAProxy without L7 retries (sick scenario only, unless asked for).
    HaproxyMarkdown,
    /// tower's `p2c::Balance` over `PeakEwmaDiscover` (gray and tower-balance scenarios).
    TowerPeakEwma,
    /// tower's `p2c::Balance` over `PendingRequestsDiscover` (tower-balance scenario).
    TowerPendingRequests,
    /// Through nginx with `least_conn` (gray scenario).
    NginxLeastConn,
    /// Through HAProxy with `balance leastconn` (gray scenario).
    HaproxyLeastConn,
}

/// `bench`: benchmarks of the discovery client side by side with plain reqwest, nginx and
/// HAProxy, all on loopback, all started and stopped by this program.
#[derive(Debug, Clone, Parser)]
#[command(name = "bench", version, about)]
pub struct Args {
    /// A short run (under 2 minutes): fewer and shorter rounds, fewer trials, and a 4 s
    /// retest delay for the sick-instance scenario so re-use is seen soon after the run.
    #[arg(long, env = "BENCH_QUICK")]
    pub quick: bool,

    /// Run only these scenarios (repeatable); default: all.
    #[arg(
        long = "scenario",
        value_enum,
        env = "BENCH_SCENARIOS",
        value_delimiter = ','
    )]
    pub scenarios: Vec<Scenario>,

    /// Run only these contenders in the steady, sick, steady-tls, gray, backpressure and
    /// tower-balance scenarios (repeatable; in steady-tls `hyper`, `hyper-round-robin`,
    /// `ours` and `nginx` are their TLS versions; each scenario runs those of its own it is
    /// given); default: all of each scenario's.
    #[arg(
        long = "contender",
        value_enum,
        env = "BENCH_CONTENDERS",
        value_delimiter = ','
    )]
    pub contenders: Vec<ContenderName>,

    /// Steady, steady-tls and HTTP/2 scenarios: rounds [default: 8, or 3 with --quick].
    #[arg(long, env = "BENCH_ROUNDS")]
    pub rounds: Option<usize>,

    /// Steady, steady-tls and HTTP/2 scenarios: measured time per contender per round
    /// [default: 2s, or 1s with --quick].
    #[arg(long, env = "BENCH_WINDOW", value_parser = humantime::parse_duration)]
    pub window: Option<Duration>,

    /// Registry scenario: keep-alive connections sending heartbeats.
    #[arg(long, env = "BENCH_REGISTRY_CONNECTIONS", default_value_t = 64)]
    pub registry_connections: usize,

    /// Closed-loop workers for the steady, sick, steady-tls, backpressure and slow-start
    /// scenarios.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,

    /// HTTP/2 scenario: the numbers of closed-loop workers to compare the protocols at.
    #[arg(
        long,
        env = "BENCH_HTTP2_CONCURRENCY",
        value_delimiter = ',',
        default_values_t = [32, 256]
    )]
    pub http2_concurrency: Vec<usize>,

    /// Gray scenario: the latencies added to the slow instance, one run each [default:
    /// 5ms,20ms,200ms, or 20ms with --quick].
    #[arg(
        long,
        env = "BENCH_GRAY_LATENCY",
        value_delimiter = ',',
        value_parser = humantime::parse_duration
    )]
    pub gray_latency: Vec<Duration>,

    /// Gray scenario: the numbers of closed-loop callers.
    #[arg(
        long,
        env = "BENCH_GRAY_CONCURRENCY",
        value_delimiter = ',',
        default_values_t = [1, 4, 32]
    )]
    pub gray_concurrency: Vec<usize>,

    /// Gray, back-pressure and slow-start scenarios: measured time per phase [default: 5s,
    /// or 2s with --quick].
    #[arg(long, env = "BENCH_GRAY_WINDOW", value_parser = humantime::parse_duration)]
    pub gray_window: Option<Duration>,

    /// Slow-start scenario: the window given to `ServiceClientBuilder::slow_start`.
    #[arg(long, env = "BENCH_SLOW_START", default_value = "10s", value_parser = humantime::parse_duration)]
    pub slow_start: Duration,

    /// Tower-balance scenario: concurrent requests (tower's example: 500).
    #[arg(long, env = "BENCH_TOWER_CONCURRENCY", default_value_t = 500)]
    pub tower_concurrency: usize,

    /// Tower-balance scenario: requests per contender (tower's example: 100000) [default:
    /// 100000, or 20000 with --quick].
    #[arg(long, env = "BENCH_TOWER_REQUESTS")]
    pub tower_requests: Option<usize>,

    /// Starved scenario: the open-loop page rates to load the market with, one step each.
    #[arg(
        long,
        env = "BENCH_STARVED_RATES",
        value_delimiter = ',',
        default_values_t = [50, 100, 200]
    )]
    pub starved_rates: Vec<u32>,

    /// Starved scenario: the market's CPU quota per period, as cgroup `cpu.max` takes them
    /// (`QUOTA PERIOD` in µs).
    #[arg(long, env = "BENCH_STARVED_CPU_MAX", default_value = "40000 1000000")]
    pub starved_cpu_max: String,

    /// Retest delay for the sick-instance scenario [default: 30s, or 4s with --quick]; nginx rounds it up to whole seconds.
    #[arg(long, env = "BENCH_RETEST", value_parser = humantime::parse_duration)]
    pub retest: Option<Duration>,

    /// Directory holding the `ratings-service` and `registry` binaries [default: next to
    /// this program].
    #[arg(long, env = "BENCH_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Also write the Markdown report to this file.
    #[arg(long, env = "BENCH_OUT")]
    pub out: Option<PathBuf>,

    /// Where criterion keeps its results [default: `criterion` in the target directory].
    #[arg(long, env = "BENCH_CRITERION_DIR")]
    pub criterion_dir: Option<PathBuf>,

    /// Leave nginx out even if installed.
    #[arg(long, env = "BENCH_NO_NGINX")]
    pub no_nginx: bool,

    /// Leave HAProxy out even if installed.
    #[arg(long, env = "BENCH_NO_HAPROXY")]
    pub no_haproxy: bool,
}

/// Durations and sizes for one run, from the flags.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Whether this is the quick run.
    pub quick: bool,
    /// Contenders asked for (empty: all).
    pub contenders: Vec<ContenderName>,
    /// Closed-loop workers.
    pub concurrency: usize,
    /// HTTP/2 scenario: the numbers of workers the protocols are compared at.
    pub http2_concurrency: Vec<usize>,
    /// Per-attempt timeout, for every contender.
    pub timeout: Duration,
    /// Retries on another instance, for every contender that retries.
    pub retries: u32,
    /// Steady, steady-tls and HTTP/2: rounds (each runs every contender once, in rotated
    /// order).
    pub steady_rounds: usize,
    /// Steady, steady-tls and HTTP/2: measured time per contender per round.
    pub steady_window: Duration,
    /// Unmeasured load before a contender's first window (fills connection pools).
    pub warmup: Duration,
    /// Sick: the measured run.
    pub sick_run: Duration,
    /// Sick: when the instance is paused, from the start of the run.
    pub sick_pause_at: Duration,
    /// Sick: how long it stays paused.
    pub sick_pause_for: Duration,
    /// Sick: retest delay (and the peers' equivalents).
    pub sick_retest: Duration,
    /// Propagation: trials (each one registration and one deregistration).
    pub propagation_trials: usize,
    /// Propagation over DNS: trials per TTL (each one record added and removed).
    pub dns_propagation_trials: usize,
    /// Registry: instances registered.
    pub registry_instances: usize,
    /// Registry: services they are spread over.
    pub registry_services: usize,
    /// Registry: how long heartbeats are sent.
    pub registry_window: Duration,
    /// Registry: connections sending heartbeats.
    pub registry_connections: usize,
    /// Gray: latencies added to the slow instance (one run each).
    pub gray_latencies: Vec<Duration>,
    /// Gray: numbers of closed-loop callers.
    pub gray_concurrency: Vec<usize>,
    /// Gray, back-pressure, slow-start: measured time per phase.
    pub gray_window: Duration,
    /// Gray: the heal is followed in windows of this length...
    pub heal_window: Duration,
    /// ... for at most this long.
    pub heal_limit: Duration,
    /// Gray: callers while the heal is followed.
    pub heal_concurrency: usize,
    /// Slow start: the configured window.
    pub slow_start: Duration,
    /// Tower-balance: concurrent requests.
    pub tower_concurrency: usize,
    /// Tower-balance: requests per contender.
    pub tower_requests: usize,
    /// Tower-balance: the longest a contender's run may last.
    pub tower_limit: Duration,
    /// Starved: open-loop page rates, one step each.
    pub starved_rates: Vec<u32>,
    /// Starved: seconds per rate step.
    pub starved_step: Duration,
    /// Starved: the market's CPU quota (`QUOTA PERIOD`, µs).
    pub starved_cpu_max: String,
}

impl Plan {
    /// The plan for these flags.
    pub fn from_args(args: &Args) -> Plan {
        let quick = args.quick;
        Plan {
            quick,
            contenders: args.contenders.clone(),
            concurrency: args.concurrency.max(1),
            http2_concurrency: args.http2_concurrency.iter().map(|&c| c.max(1)).collect(),
            timeout: Duration::from_secs(1),
            retries: 2,
            steady_rounds: args.rounds.unwrap_or(if quick { 3 } else { 8 }).max(1),
            steady_window: args
                .window
                .unwrap_or(Duration::from_secs(if quick { 1 } else { 2 })),
            warmup: Duration::from_millis(if quick { 300 } else { 1000 }),
            sick_run: Duration::from_secs(8),
            sick_pause_at: Duration::from_secs(2),
            sick_pause_for: Duration::from_secs(4),
            sick_retest: args.retest.unwrap_or(if quick {
                Duration::from_secs(4)
            } else {
                Duration::from_secs(30)
            }),
            propagation_trials: if quick { 30 } else { 100 },
            dns_propagation_trials: if quick { 10 } else { 30 },
            registry_instances: 10_000,
            registry_services: 1_000,
            registry_window: Duration::from_secs(if quick { 2 } else { 10 }),
            registry_connections: args.registry_connections.max(1),
            gray_latencies: match (args.gray_latency.is_empty(), quick) {
                (false, _) => args.gray_latency.clone(),
                (true, true) => vec![Duration::from_millis(20)],
                (true, false) => [5, 20, 200].map(Duration::from_millis).to_vec(),
            },
            gray_concurrency: args.gray_concurrency.iter().map(|&c| c.max(1)).collect(),
            gray_window: args
                .gray_window
                .unwrap_or(Duration::from_secs(if quick { 2 } else { 5 })),
            heal_window: Duration::from_secs(5),
            heal_limit: Duration::from_secs(30),
            heal_concurrency: 4,
            slow_start: args.slow_start,
            tower_concurrency: args.tower_concurrency.max(1),
            tower_requests: args
                .tower_requests
                .unwrap_or(if quick { 20_000 } else { 100_000 })
                .max(1),
            tower_limit: Duration::from_secs(if quick { 20 } else { 60 }),
            starved_rates: args.starved_rates.iter().map(|&r| r.max(1)).collect(),
            starved_step: Duration::from_secs(if quick { 5 } else { 20 }),
            starved_cpu_max: args.starved_cpu_max.clone(),
        }
    }

    /// Whether `scenario` was asked for.
    pub fn wants(args: &Args, scenario: Scenario) -> bool {
        args.scenarios.is_empty() || args.scenarios.contains(&scenario)
    }
}
