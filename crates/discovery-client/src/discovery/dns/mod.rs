//! Discovery through DNS: A/AAAA records (one instance per address) or SRV records (one
//! instance per target address and port), looked up again as their TTLs run out.
//!
//! The parts:
//!
//! - `lookup.rs`: the [`Lookup`](lookup::Lookup) seam (one lookup: instances and a TTL, an
//!   empty answer, or a failure) and its implementation over hickory-resolver.
//! - `schedule.rs`: when to look again and what to publish: the records' TTL clamped to
//!   `[min_ttl, max_ttl]`, at once (but never sooner than `min_ttl` after the last lookup)
//!   when the client says an instance may be gone, the last set kept through failures and,
//!   for a grace period, through empty answers. Tested on paused time through the seam.

mod lookup;
mod schedule;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Discovery, DiscoverySink};
use lookup::{HickoryLookup, Records};
use schedule::Schedule;

/// Instance metadata: the DNS name the instance was found under (the A/AAAA name, or the
/// SRV name).
pub const DNS_NAME: &str = "dns_name";
/// Instance metadata (SRV only): the record's target host, without the final dot.
pub const SRV_TARGET: &str = "srv_target";
/// Instance metadata (SRV only): the record's port.
pub const SRV_PORT: &str = "srv_port";
/// Instance metadata (SRV only): the record's priority (lower is preferred, RFC 2782).
pub const SRV_PRIORITY: &str = "srv_priority";
/// Instance metadata (SRV only): the record's weight among records of the same priority.
pub const SRV_WEIGHT: &str = "srv_weight";

/// Finds a service's instances in DNS: [`a`](Self::a) for A and AAAA records (a Kubernetes
/// headless Service answers one A record per ready pod), [`srv`](Self::srv) for SRV records
/// (Consul, AWS Cloud Map). Each address becomes one instance with the id `IP:PORT` (such as
/// `10.0.0.5:8080` or `[fd00::5]:8080`) and the address `http://IP:PORT` (`https://` with
/// [`https`](Self::https), checked against the DNS name: the A/AAAA name or the SRV target),
/// so an instance keeps its id, its breaker and its figures from one lookup to the next.
///
/// The name is looked up again when the shortest TTL of its records runs out, clamped to
/// [`min_ttl`](Self::min_ttl) (default 1 s) and [`max_ttl`](Self::max_ttl) (default 30 s),
/// and at once (but not sooner than `min_ttl` after the last lookup) when a
/// [`ServiceClient`](crate::ServiceClient)'s breaker opens on an instance it could not
/// connect to, which may be a pod that is gone. hickory's own cache is off, so every lookup
/// asks a name server.
///
/// It never drops to nothing by accident: a lookup that fails (SERVFAIL, a timeout, an
/// unreachable name server) keeps the last set and is retried with a backoff from `min_ttl`
/// up to `max_ttl`; an empty answer (NXDOMAIN, or no records) keeps it for
/// [`empty_grace`](Self::empty_grace) (default 30 s) and then empties the set, so calls
/// fail fast with `all services are down` (and cached answers are still served). Either is
/// reported once as a discovery outage (logged, and published as
/// [`Event::DiscoveryOutage`](crate::Event::DiscoveryOutage)), and the next answer with
/// records as its recovery.
///
/// The name servers are those of `/etc/resolv.conf` (its search domains and `ndots` too),
/// or the ones given to [`name_servers`](Self::name_servers). `/etc/hosts` is not read.
///
/// ```no_run
/// use discovery_client::{DnsDiscovery, ServiceClient};
///
/// # fn demo() -> Result<(), discovery_client::Error> {
/// // A Kubernetes headless Service: one A record per ready pod.
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(DnsDiscovery::a("ratings.default.svc.cluster.local", 8080))
///     .build()?;
/// // Consul DNS: SRV records (target, port, priority, weight), asked of the local agent.
/// let reviews = ServiceClient::builder("reviews")
///     .discovery(
///         DnsDiscovery::srv("_http._tcp.reviews.service.consul")
///             .name_servers(["127.0.0.1:8600".parse().expect("an address")]),
///     )
///     .build()?;
/// # let _ = (ratings, reviews);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DnsDiscovery {
    /// What to look up: a name's addresses with a port, or a name's SRV records.
    records: Records,
    /// `https` instead of `http` in the instances' addresses.
    https: bool,
    /// Name servers to ask instead of `/etc/resolv.conf`'s; empty for the system's.
    name_servers: Vec<SocketAddr>,
    /// When to look again, and how long an empty answer is tolerated.
    schedule: Schedule,
    /// How long one query to a name server may take before it is retried (hickory's
    /// timeout; it tries twice).
    query_timeout: Duration,
}

impl DnsDiscovery {
    /// The A and AAAA records of `name`, one instance per address, on `port`.
    pub fn a(name: impl Into<String>, port: u16) -> Self {
        Self::new(Records::Addresses {
            name: name.into(),
            port,
        })
    }

    /// The SRV records of `name` (such as `_http._tcp.ratings.service.consul`): one instance
    /// per address of each target, on the record's port, with the target, port, priority and
    /// weight in the instance's metadata ([`SRV_TARGET`], [`SRV_PORT`], [`SRV_PRIORITY`],
    /// [`SRV_WEIGHT`]). Every record is used, whatever its priority.
    pub fn srv(name: impl Into<String>) -> Self {
        Self::new(Records::Srv { name: name.into() })
    }

    fn new(records: Records) -> Self {
        Self {
            records,
            https: false,
            name_servers: Vec::new(),
            schedule: Schedule::default(),
            query_timeout: Duration::from_secs(2),
        }
    }

    /// Calls the instances over `https://`; their certificates are checked against the DNS
    /// name (the A/AAAA name, or the SRV target), given in the instances'
    /// [`TLS_SERVER_NAME`](crate::TLS_SERVER_NAME) metadata.
    pub fn https(mut self) -> Self {
        self.https = true;
        self
    }

    /// Asks these name servers (UDP, then TCP for long answers) instead of those in
    /// `/etc/resolv.conf`.
    pub fn name_servers(mut self, servers: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.name_servers = servers.into_iter().collect();
        self
    }

    /// The shortest time between two lookups, whatever the TTL (default 1 s).
    pub fn min_ttl(mut self, min: Duration) -> Self {
        self.schedule.min_ttl = min;
        self
    }

    /// The longest time between two lookups, whatever the TTL (default 30 s).
    pub fn max_ttl(mut self, max: Duration) -> Self {
        self.schedule.max_ttl = max;
        self
    }

    /// How long the last instances are kept while the name answers with no records
    /// (NXDOMAIN, or none of the type asked) before the set is emptied (default 30 s).
    pub fn empty_grace(mut self, grace: Duration) -> Self {
        self.schedule.empty_grace = grace;
        self
    }

    /// How long one query may wait for a name server's answer before it is sent again
    /// (default 2 s; a lookup tries twice per name server).
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// The name looked up.
    pub fn name(&self) -> &str {
        self.records.name()
    }
}

impl Discovery for DnsDiscovery {
    fn watch(&self, _service: &str, sink: DiscoverySink) -> BoxFuture<'static, ()> {
        let scheme = if self.https { "https" } else { "http" };
        // A resolver that cannot be built (no readable /etc/resolv.conf) fails every lookup
        // with the reason, so it is reported as any other outage.
        let lookup = HickoryLookup::new(
            self.records.clone(),
            scheme,
            &self.name_servers,
            self.query_timeout,
        );
        let mut schedule = self.schedule.clone();
        // A lookup is bounded by hickory's timeouts; this bounds it whatever they do.
        schedule.lookup_limit = self.query_timeout * 2 * (self.name_servers.len().max(1) as u32)
            + Duration::from_secs(1);
        schedule
            .follow(Arc::new(lookup), self.records.name().to_string(), sink)
            .boxed()
    }
}

#[cfg(test)]
mod tests;
