//! The scenarios, and the test bed the first two share: three ratings instances (real
//! processes) and the contenders that call them. The TLS scenarios (6 and 7) share
//! [`tls_bed`]; both steady scenarios measure with [`rounds`].

pub mod backpressure;
pub mod gray;
pub mod grpc;
pub mod http2;
pub mod micro;
pub mod propagation;
pub mod registry_scale;
pub mod rounds;
pub mod sick;
pub mod slow_start;
pub mod starved;
pub mod steady;
pub mod steady_tls;
pub mod tls_bed;
pub mod tower_balance;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use discovery_client::{Balance, Hedging, ServiceClient, StaticDiscovery};

use crate::config::{ContenderName, Plan};
use crate::contender::{Contender, plain_client, plain_hyper};
use crate::peers::{Peer, PeerKind, Resilience};
use crate::servers::{Binaries, Server};
use crate::tower_p2c::{self, TowerLoad};

/// Three ratings instances and the installed peers.
pub struct Bed {
    /// Ratings instances 1..=3 (not registered anywhere: contenders are given their URLs).
    pub instances: Vec<Server>,
    /// The peers to compare with, and where each program is.
    pub peers: Vec<(PeerKind, PathBuf)>,
    /// One line per peer left out, saying why.
    pub skipped: Vec<String>,
}

impl Bed {
    /// Starts three ratings instances and finds the peers.
    pub async fn start(bins: &Binaries, no_nginx: bool, no_haproxy: bool) -> Result<Bed, String> {
        Bed::start_with(bins, no_nginx, no_haproxy, &[]).await
    }

    /// Starts three ratings instances with `extra` flags (`--admin`, for scenarios that
    /// change their faults while they run) and finds the peers.
    pub async fn start_with(
        bins: &Binaries,
        no_nginx: bool,
        no_haproxy: bool,
        extra: &[&str],
    ) -> Result<Bed, String> {
        let mut instances = Vec::new();
        for n in 1..=3 {
            instances.push(bins.ratings_with(n, None, extra).await?);
        }
        let mut peers = Vec::new();
        let mut skipped = Vec::new();
        for (kind, off) in [(PeerKind::Nginx, no_nginx), (PeerKind::Haproxy, no_haproxy)] {
            if off {
                skipped.push(format!(
                    "{} skipped: left out with --no-{}",
                    kind.name(),
                    kind.name()
                ));
                continue;
            }
            match kind.find() {
                Some(path) => {
                    if kind == PeerKind::Haproxy {
                        peers.push((PeerKind::Haproxy, path.clone()));
                        peers.push((PeerKind::HaproxyMarkDown, path));
                    } else {
                        peers.push((kind, path));
                    }
                }
                None => skipped.push(format!(
                    "{} skipped: not installed (install it with `apt-get install -y {}`)",
                    kind.name(),
                    kind.name()
                )),
            }
        }
        Ok(Bed {
            instances,
            peers,
            skipped,
        })
    }

    /// The instances' base URLs.
    pub fn urls(&self) -> Vec<String> {
        self.instances.iter().map(|s| s.url.clone()).collect()
    }
}

/// One contender, ready to call, with what keeps it running.
pub struct Entry {
    /// Its name in tables.
    pub name: String,
    /// How it calls.
    pub contender: Arc<Contender>,
    /// The proxy process behind it, if any (stopped when this is dropped).
    pub peer: Option<Peer>,
}

/// What a scenario compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plain reqwest to instance 1.
    Direct,
    /// Plain reqwest, round-robin by hand.
    RoundRobin,
    /// Plain hyper to instance 1.
    Hyper,
    /// Plain hyper, round-robin by hand.
    HyperRoundRobin,
    /// Our `ServiceClient`.
    Ours,
    /// Our `ServiceClient` with hedging off.
    OursUnhedged,
    /// Our `ServiceClient` with plain round-robin instead of two choices.
    OursRoundRobin,
    /// Our `ServiceClient` with least-pending (the fewest in flight) instead of two choices.
    OursLeastPending,
    /// tower's `p2c::Balance` over `PeakEwmaDiscover` (gray and tower-balance scenarios).
    TowerPeakEwma,
    /// tower's `p2c::Balance` over `PendingRequestsDiscover` (tower-balance scenario).
    TowerPendingRequests,
    /// Through a proxy.
    Peer(PeerKind),
}

impl Kind {
    /// The name used in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "reqwest, one instance",
            Kind::RoundRobin => "reqwest, round-robin by hand",
            Kind::Hyper => "hyper, one instance",
            Kind::HyperRoundRobin => "hyper, round-robin by hand",
            Kind::Ours => "discovery-client ServiceClient",
            Kind::OursUnhedged => "discovery-client ServiceClient, hedging off",
            Kind::OursRoundRobin => "discovery-client ServiceClient, Balance::RoundRobin",
            Kind::OursLeastPending => "discovery-client ServiceClient, Balance::LeastPending",
            Kind::TowerPeakEwma => "tower p2c::Balance + PeakEwma",
            Kind::TowerPendingRequests => "tower p2c::Balance + PendingRequests",
            Kind::Peer(PeerKind::Nginx) => "via nginx",
            Kind::Peer(PeerKind::Haproxy) => "via HAProxy",
            Kind::Peer(PeerKind::HaproxyMarkDown) => "via HAProxy, mark-down (no L7 retries)",
            Kind::Peer(PeerKind::NginxLeastConn) => "via nginx, least_conn",
            Kind::Peer(PeerKind::HaproxyLeastConn) => "via HAProxy, leastconn",
        }
    }
}

impl Kind {
    /// Its name on the command line (`--contender`).
    pub fn flag(self) -> ContenderName {
        match self {
            Kind::Direct => ContenderName::Direct,
            Kind::RoundRobin => ContenderName::RoundRobin,
            Kind::Hyper => ContenderName::Hyper,
            Kind::HyperRoundRobin => ContenderName::HyperRoundRobin,
            Kind::Ours => ContenderName::Ours,
            Kind::OursUnhedged => ContenderName::OursUnhedged,
            Kind::OursRoundRobin => ContenderName::OursRoundRobin,
            Kind::OursLeastPending => ContenderName::OursLeastPending,
            Kind::TowerPeakEwma => ContenderName::TowerPeakEwma,
            Kind::TowerPendingRequests => ContenderName::TowerPendingRequests,
            Kind::Peer(PeerKind::Nginx) => ContenderName::Nginx,
            Kind::Peer(PeerKind::Haproxy) => ContenderName::Haproxy,
            Kind::Peer(PeerKind::HaproxyMarkDown) => ContenderName::HaproxyMarkdown,
            Kind::Peer(PeerKind::NginxLeastConn) => ContenderName::NginxLeastConn,
            Kind::Peer(PeerKind::HaproxyLeastConn) => ContenderName::HaproxyLeastConn,
        }
    }
}

/// The contenders this bed can run and the plan asks for, in table order. HAProxy without
/// L7 retries performs like HAProxy with them until something fails, so it runs in the
/// steady scenario only when asked for by name; our client with hedging off runs in both, to
/// show what hedging costs when nothing is wrong and what it saves when an instance stalls.
/// The plain-hyper contenders and our client with plain round-robin are there to take the
/// steady scenario's tail apart (the HTTP stack, the spreading, the picking rule), and run in
/// the sick one only when asked for by name. `--quick` keeps to the contenders the targets
/// are judged on (reqwest, ours with its defaults and the proxies), so that it stays under
/// two minutes; the others run there when asked for by name.
pub fn kinds(bed: &Bed, plan: &Plan, failures: bool) -> Vec<Kind> {
    let mut kinds = vec![
        Kind::Direct,
        Kind::Hyper,
        Kind::RoundRobin,
        Kind::HyperRoundRobin,
        Kind::Ours,
        Kind::OursUnhedged,
        Kind::OursRoundRobin,
        Kind::OursLeastPending,
    ];
    kinds.extend(bed.peers.iter().map(|(kind, _)| Kind::Peer(*kind)));
    kinds.retain(|k| {
        if !plan.contenders.is_empty() {
            return plan.contenders.contains(&k.flag());
        }
        let diagnostic = matches!(
            k,
            Kind::Hyper | Kind::HyperRoundRobin | Kind::OursRoundRobin | Kind::OursLeastPending
        );
        let skipped = (failures && diagnostic)
            || (!failures && *k == Kind::Peer(PeerKind::HaproxyMarkDown))
            || (plan.quick && (diagnostic || *k == Kind::OursUnhedged));
        !skipped
    });
    kinds
}

/// Makes a fresh contender of `kind` (a new client, or a new proxy process) with these
/// resilience settings.
pub async fn make(bed: &Bed, kind: Kind, plan: &Plan, retest: Duration) -> Result<Entry, String> {
    make_for(&bed.urls(), &bed.peers, kind, plan, retest).await
}

/// Makes a fresh contender of `kind` calling the instances at `urls` (through a proxy from
/// `peers` for the proxies), with these resilience settings.
pub async fn make_for(
    urls: &[String],
    peers: &[(PeerKind, PathBuf)],
    kind: Kind,
    plan: &Plan,
    retest: Duration,
) -> Result<Entry, String> {
    let urls = urls.to_vec();
    let (contender, peer) = match kind {
        Kind::Direct => (
            Contender::Direct {
                http: plain_client(plan.timeout)?,
                url: urls[0].clone(),
            },
            None,
        ),
        Kind::Hyper | Kind::HyperRoundRobin => (
            Contender::Hyper {
                http: Box::new(plain_hyper()),
                urls: match kind {
                    Kind::Hyper => vec![urls[0].clone()],
                    _ => urls,
                },
                next: AtomicUsize::new(0),
                timeout: plan.timeout,
            },
            None,
        ),
        Kind::RoundRobin => (
            Contender::RoundRobin {
                http: plain_client(plan.timeout)?,
                urls,
                next: AtomicUsize::new(0),
            },
            None,
        ),
        Kind::Ours | Kind::OursUnhedged | Kind::OursRoundRobin | Kind::OursLeastPending => {
            let mut builder = ServiceClient::builder("ratings")
                .discovery(StaticDiscovery::new(urls))
                .timeout(plan.timeout)
                .failure_limit(1)
                .retest_delay(retest)
                .max_retries(plan.retries)
                .cache_ttl(Duration::ZERO);
            match kind {
                Kind::OursUnhedged => builder = builder.hedging(Hedging::Off),
                Kind::OursRoundRobin => builder = builder.balance(Balance::RoundRobin),
                Kind::OursLeastPending => builder = builder.balance(Balance::LeastPending),
                _ => {}
            }
            let client = builder.build().map_err(|e| format!("ServiceClient: {e}"))?;
            (Contender::Ours(client), None)
        }
        Kind::TowerPeakEwma | Kind::TowerPendingRequests => {
            let load = match kind {
                Kind::TowerPeakEwma => TowerLoad::PeakEwma,
                _ => TowerLoad::PendingRequests,
            };
            let client = tower_p2c::client(&urls, load, plan.timeout);
            (Contender::Tower(client), None)
        }
        Kind::Peer(peer_kind) => {
            // The least-connection variants run the same program as the plain ones.
            let program = peers
                .iter()
                .find(|(k, _)| k.program() == peer_kind.program())
                .map(|(_, p)| p.clone())
                .ok_or_else(|| format!("{} is not available", peer_kind.name()))?;
            let settings = Resilience {
                timeout: plan.timeout,
                retest,
                retries: plan.retries,
            };
            let peer = Peer::start(peer_kind, &program, &urls, settings).await?;
            // The proxy's own timeouts and retries decide; the caller's timeout only bounds
            // the worst case (every try timing out).
            let http = plain_client(plan.timeout * (plan.retries + 2))?;
            (
                Contender::Proxy {
                    http,
                    url: peer.url.clone(),
                },
                Some(peer),
            )
        }
    };
    Ok(Entry {
        name: kind.name().to_string(),
        contender: Arc::new(contender),
        peer,
    })
}
