//! Scenario 7, HTTP/2 against HTTP/1.1 over TLS on the same three instances, at several
//! numbers of closed-loop workers (32 and 256 by default): throughput, p99, and how many
//! connections each client holds to the instances.
//!
//! Contenders: our client with its default transport (ALPN offers h2 and http/1.1, the
//! instances choose h2), our client over a hyper-rustls transport built by hand that offers
//! no ALPN (so HTTP/1.1: the library's own transport has no HTTP/1.1-only setting), and
//! hyper-rustls round-robin by hand either way, for the same comparison without the library.
//!
//! Connections are counted while the load runs (established sockets to the instances'
//! ports, every 50 ms), so each window gets a fresh client whose pool holds only its own
//! connections; the client is dropped after its window, and the next one starts once those
//! connections are gone. Each window is preceded by its own warm-up, which lasts until the
//! client's connections stop changing.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use bytes::Bytes;
use discovery_client::{ServiceClient, StaticDiscovery};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;

use super::tls_bed::TlsBed;
use crate::config::Plan;
use crate::connections::established_to;
use crate::contender::{Alpn, Contender, answered_over, https_connector, paths, tls_hyper};
use crate::latency::{Latencies, show};
use crate::load::{closed_loop, warm};
use crate::report::{Section, Table, ratio};

/// What this scenario compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum H2Kind {
    /// Our client, default transport: h2 by ALPN.
    OursH2,
    /// Our client over a transport offering only HTTP/1.1.
    OursH1,
    /// hyper-rustls round-robin by hand, h2 by ALPN.
    HyperH2,
    /// hyper-rustls round-robin by hand, HTTP/1.1.
    HyperH1,
}

impl H2Kind {
    /// Every contender, in table order.
    const ALL: [H2Kind; 4] = [
        H2Kind::OursH2,
        H2Kind::OursH1,
        H2Kind::HyperH2,
        H2Kind::HyperH1,
    ];

    fn name(self) -> &'static str {
        match self {
            H2Kind::OursH2 => "discovery-client ServiceClient",
            H2Kind::OursH1 => "discovery-client ServiceClient, HTTP/1.1 transport",
            H2Kind::HyperH2 => "hyper+rustls, round-robin by hand",
            H2Kind::HyperH1 => "hyper+rustls, round-robin by hand, HTTP/1.1 only",
        }
    }

    /// The same client over the other protocol.
    fn other_protocol(self) -> H2Kind {
        match self {
            H2Kind::OursH2 => H2Kind::OursH1,
            H2Kind::OursH1 => H2Kind::OursH2,
            H2Kind::HyperH2 => H2Kind::HyperH1,
            H2Kind::HyperH1 => H2Kind::HyperH2,
        }
    }

    fn is_h2(self) -> bool {
        matches!(self, H2Kind::OursH2 | H2Kind::HyperH2)
    }
}

/// A fresh client of `kind` over the bed's HTTPS instances.
fn make(bed: &TlsBed, kind: H2Kind, plan: &Plan) -> Result<Contender, String> {
    let urls = bed.urls();
    let ours = |builder: discovery_client::ServiceClientBuilder| {
        builder
            .discovery(StaticDiscovery::new(urls.clone()))
            .timeout(plan.timeout)
            .failure_limit(1)
            .retest_delay(Duration::from_secs(30))
            .max_retries(plan.retries)
            .cache_ttl(Duration::ZERO)
            .build()
            .map(Contender::Ours)
            .map_err(|e| format!("ServiceClient: {e}"))
    };
    let hyper = |alpn| -> Result<Contender, String> {
        Ok(Contender::HyperTls {
            http: Box::new(tls_hyper(&bed.ca_pem, alpn)?),
            urls: urls.clone(),
            next: AtomicUsize::new(0),
            timeout: plan.timeout,
        })
    };
    match kind {
        H2Kind::OursH2 => ours(ServiceClient::builder("ratings").tls_roots_only(&bed.ca_pem)),
        H2Kind::OursH1 => {
            let http1 = Client::builder(TokioExecutor::new())
                .build::<_, Full<Bytes>>(https_connector(&bed.ca_pem, Alpn::Http1)?);
            let transport = http1.map_request(|r: http::Request<Bytes>| r.map(Full::new));
            ours(ServiceClient::builder("ratings").transport(transport))
        }
        H2Kind::HyperH2 => hyper(Alpn::Both),
        H2Kind::HyperH1 => hyper(Alpn::Http1),
    }
}

/// What one contender did at one number of workers, over all rounds.
struct Tally {
    /// Which client.
    kind: H2Kind,
    /// How many closed-loop workers called through it.
    workers: usize,
    /// Successful answers.
    ok: u64,
    /// Failed calls.
    failed: u64,
    /// Time measured, over all rounds.
    measured: Duration,
    /// Every call's latency.
    latencies: Latencies,
    /// Connections to the instances, every sample of every window.
    connections: Vec<usize>,
    /// CPU of this process (the caller) during the windows.
    cpu_caller: Duration,
    /// CPU of the instances during the windows.
    cpu_instances: Duration,
}

impl Tally {
    fn throughput(&self) -> f64 {
        self.ok as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    fn per_request(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / (self.ok.max(1) as f64)
    }

    /// (median, max) of the connection samples.
    fn connections(&self) -> (usize, usize) {
        let mut sorted = self.connections.clone();
        sorted.sort_unstable();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
        (median, sorted.last().copied().unwrap_or(0))
    }
}

/// Waits (at most 5 s) until no connection to `ports` is established.
async fn until_closed(ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while established_to(ports) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Loads a fresh `contender` for `warmup`, then for as long as its connections to `ports`
/// keep changing (in steps of 200 ms, 2 s at most more): with hundreds of workers, opening
/// hundreds of TLS connections takes longer than the warm-up, and the window should
/// measure the connections held, not the handshakes.
async fn warm_up(
    contender: &Arc<Contender>,
    paths: &Arc<Vec<String>>,
    workers: usize,
    warmup: Duration,
    ports: &[u16],
) {
    let step = Duration::from_millis(200);
    let mut last = None;
    let mut duration = warmup;
    for _ in 0..=10 {
        warm(contender, paths, workers, duration).await;
        let now = established_to(ports);
        if last.is_some_and(|last: usize| now.abs_diff(last) <= (last / 50).max(1)) {
            return;
        }
        last = Some(now);
        duration = step;
    }
}

/// Runs scenario 7 and reports it.
pub async fn run(bed: &TlsBed, plan: &Plan) -> Result<Section, String> {
    let ports = bed.ports();
    let paths = Arc::new(paths());
    let cpu_instances = || -> Duration {
        bed.instances
            .iter()
            .map(|i| i.process.group_cpu_time())
            .sum()
    };
    let cpu_caller = || crate::procs::cpu_time_of(std::process::id() as i32).unwrap_or_default();
    let mut tallies = Vec::new();
    for &workers in &plan.http2_concurrency {
        for kind in H2Kind::ALL {
            tallies.push(Tally {
                kind,
                workers,
                ok: 0,
                failed: 0,
                measured: Duration::ZERO,
                latencies: Latencies::new(),
                connections: Vec::new(),
                cpu_caller: Duration::ZERO,
                cpu_instances: Duration::ZERO,
            });
        }
    }
    let n = H2Kind::ALL.len();
    for (level, &workers) in plan.http2_concurrency.iter().enumerate() {
        for round in 0..plan.steady_rounds {
            for k in 0..n {
                let index = (round + k) % n;
                let kind = H2Kind::ALL[index];
                eprintln!(
                    "  http2: {workers} workers, round {}/{}, {}",
                    round + 1,
                    plan.steady_rounds,
                    kind.name()
                );
                until_closed(&ports).await;
                let contender = Arc::new(make(bed, kind, plan)?);
                warm_up(&contender, &paths, workers, plan.warmup, &ports).await;
                let (caller_before, instances_before) = (cpu_caller(), cpu_instances());
                let origin = Instant::now();
                let load = closed_loop(
                    Arc::clone(&contender),
                    Arc::clone(&paths),
                    workers,
                    origin,
                    plan.steady_window,
                    usize::MAX,
                );
                let sampler = async {
                    let mut samples = Vec::new();
                    while origin.elapsed() < plan.steady_window {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        samples.push(established_to(&ports));
                    }
                    samples
                };
                let (run, samples) = tokio::join!(load, sampler);
                let tally = &mut tallies[level * n + index];
                tally.cpu_caller += cpu_caller().saturating_sub(caller_before);
                tally.cpu_instances += cpu_instances().saturating_sub(instances_before);
                let ok = run.samples.iter().filter(|s| s.instance.is_some()).count() as u64;
                tally.ok += ok;
                tally.failed += run.samples.len() as u64 - ok;
                tally.measured += run.elapsed;
                tally.connections.extend(samples);
                for sample in &run.samples {
                    tally.latencies.record(sample.latency);
                }
                drop(contender);
            }
        }
    }
    let probe = tls_hyper(&bed.ca_pem, Alpn::Both)?;
    let chosen = answered_over(&probe, &bed.urls()[0]).await;
    Ok(report(&tallies, plan, &chosen))
}

fn report(tallies: &[Tally], plan: &Plan, chosen: &str) -> Section {
    let mut section = Section::new("7. HTTP/2 and HTTP/1.1 over TLS");
    section.note(format!(
        "Closed loop, `GET /ratings/{{id}}` over 7 items, cache off, the same 3 ratings instances serving HTTPS, \
         at {} workers. {} rounds × {} s per contender and number of workers, interleaved, each window with a \
         fresh client after at least {} ms of warm-up (longer until its connections stop changing, 2 s more at most). Offering h2 and http/1.1 by ALPN, the instances chose {chosen} \
         (one probe request); the HTTP/1.1 rows offer no ALPN. \"connections\" are the established connections \
         to the 3 instances' ports, sampled every 50 ms during the windows (median and max).",
        plan.http2_concurrency
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" and "),
        plan.steady_rounds,
        plan.steady_window.as_secs_f64(),
        plan.warmup.as_millis()
    ));
    let find = |kind: H2Kind, workers: usize| {
        tallies
            .iter()
            .find(|t| t.kind == kind && t.workers == workers)
    };
    let mut table = Table::new([
        "workers",
        "contender",
        "protocol",
        "req/s",
        "× same client, other protocol",
        "p50",
        "p99",
        "connections (median / max)",
        "caller µs/req",
        "instances µs/req",
        "failed",
    ]);
    for t in tallies {
        let other = find(t.kind.other_protocol(), t.workers).map_or(0.0, Tally::throughput);
        let (median, max) = t.connections();
        table.row([
            t.workers.to_string(),
            t.kind.name().to_string(),
            if t.kind.is_h2() { "h2" } else { "HTTP/1.1" }.to_string(),
            format!("{:.0}", t.throughput()),
            ratio(t.throughput(), other),
            show(t.latencies.percentile(50.0)),
            show(t.latencies.percentile(99.0)),
            format!("{median} / {max}"),
            format!("{:.1}", t.per_request(t.cpu_caller)),
            format!("{:.1}", t.per_request(t.cpu_instances)),
            t.failed.to_string(),
        ]);
    }
    section.table(&table);
    for &workers in &plan.http2_concurrency {
        if let (Some(h2), Some(h1)) = (find(H2Kind::OursH2, workers), find(H2Kind::OursH1, workers))
        {
            let r = h2.throughput() / h1.throughput();
            let (_, max) = h2.connections();
            section.target(
                r >= 1.0 && max <= 3,
                format!(
                    "{workers} workers: our client over h2 ≥ 1.00× its HTTP/1.1 throughput with one connection \
                     per instance: {r:.2}×, at most {max} connections to 3 instances (HTTP/1.1: {})",
                    h1.connections().1
                ),
            );
        }
    }
    section.end_list();
    section
}
