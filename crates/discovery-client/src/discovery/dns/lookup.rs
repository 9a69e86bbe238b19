//! One DNS lookup, behind the [`Lookup`] seam: instances and the shortest TTL, an empty
//! answer, or a failure. [`HickoryLookup`] asks name servers through hickory-resolver.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, join_all};
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};

use super::{DNS_NAME, SRV_PORT, SRV_PRIORITY, SRV_TARGET, SRV_WEIGHT};
use crate::{Instance, TLS_SERVER_NAME};

/// What a [`DnsDiscovery`](super::DnsDiscovery) looks up.
#[derive(Debug, Clone)]
pub(super) enum Records {
    /// A and AAAA records of `name`, each address on `port`.
    Addresses {
        /// The name looked up.
        name: String,
        /// The port every address serves on.
        port: u16,
    },
    /// SRV records of `name`, each target's addresses on the record's port.
    Srv {
        /// The name looked up.
        name: String,
    },
}

impl Records {
    pub(super) fn name(&self) -> &str {
        match self {
            Records::Addresses { name, .. } | Records::Srv { name } => name,
        }
    }
}

/// An answer with records.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    /// One per address (and port), in no particular order.
    pub(crate) instances: Vec<Instance>,
    /// The shortest TTL among the records the instances came from.
    pub(crate) ttl: Duration,
}

/// Why a lookup gave no instances.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LookupError {
    /// The name server answered, with no records: NXDOMAIN, or none of the type asked.
    /// `ttl` is how long the server says the answer holds (from its SOA), if it said.
    Empty {
        /// What the answer was, for the log.
        reason: String,
        /// The negative answer's TTL.
        ttl: Option<Duration>,
    },
    /// No usable answer: SERVFAIL, REFUSED, a timeout, an unreachable name server.
    Failed(String),
}

/// One lookup of a service's records: the seam the schedule is tested through.
pub(crate) trait Lookup: Send + Sync + 'static {
    /// Looks the records up once, asking a name server (no cache).
    fn lookup(&self) -> BoxFuture<'static, Result<Answer, LookupError>>;
}

/// [`Lookup`] through hickory-resolver, with its cache off.
pub(super) struct HickoryLookup {
    /// The resolver, or why there is none (reported by every lookup).
    resolver: Result<TokioResolver, String>,
    /// What to look up.
    records: Records,
    /// `http` or `https`.
    scheme: &'static str,
}

impl HickoryLookup {
    /// A lookup of `records` asking `name_servers` (or the system's when empty), each query
    /// allowed `query_timeout`.
    pub(super) fn new(
        records: Records,
        scheme: &'static str,
        name_servers: &[SocketAddr],
        query_timeout: Duration,
    ) -> Self {
        Self {
            resolver: resolver(name_servers, query_timeout),
            records,
            scheme,
        }
    }
}

fn resolver(name_servers: &[SocketAddr], query_timeout: Duration) -> Result<TokioResolver, String> {
    let mut builder = if name_servers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| format!("DNS: cannot read the system's resolver configuration: {e}"))?
    } else {
        let mut group = NameServerConfigGroup::with_capacity(2 * name_servers.len());
        for &server in name_servers {
            group.push(NameServerConfig::new(server, Protocol::Udp));
            group.push(NameServerConfig::new(server, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), group),
            TokioConnectionProvider::default(),
        )
    };
    let options = builder.options_mut();
    // Every lookup asks a name server: the schedule follows the TTLs itself.
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.timeout = query_timeout;
    options.attempts = 2;
    Ok(builder.build())
}

impl Lookup for HickoryLookup {
    fn lookup(&self) -> BoxFuture<'static, Result<Answer, LookupError>> {
        let resolver = match &self.resolver {
            Ok(resolver) => resolver.clone(),
            Err(reason) => {
                let reason = reason.clone();
                return async move { Err(LookupError::Failed(reason)) }.boxed();
            }
        };
        let (records, scheme) = (self.records.clone(), self.scheme);
        async move {
            // Belt and braces with the cache size of 0: nothing answered from memory.
            resolver.clear_cache();
            match records {
                Records::Addresses { name, port } => {
                    addresses(&resolver, &name, port, scheme).await
                }
                Records::Srv { name } => srv(&resolver, &name, scheme).await,
            }
        }
        .boxed()
    }
}

/// The A and AAAA records of `name`, as instances on `port`.
async fn addresses(
    resolver: &TokioResolver,
    name: &str,
    port: u16,
    scheme: &str,
) -> Result<Answer, LookupError> {
    let (ips, ttl) = ips(resolver, name).await?;
    let host = without_final_dot(name);
    let instances = ips
        .into_iter()
        .map(|ip| {
            let mut instance = instance(scheme, ip, port, host);
            instance.metadata.insert(DNS_NAME.into(), host.to_string());
            instance
        })
        .collect();
    Ok(Answer { instances, ttl })
}

/// The SRV records of `name`, each target's addresses as instances on the record's port.
/// A target with no addresses is left out; a target that cannot be looked up fails the
/// lookup (the last set is kept rather than a partial one published).
async fn srv(resolver: &TokioResolver, name: &str, scheme: &str) -> Result<Answer, LookupError> {
    let answer = resolver
        .srv_lookup(name)
        .await
        .map_err(|e| classify(name, "SRV", &e))?;
    let mut ttl = shortest_ttl(answer.as_lookup().records());
    let records: Vec<_> = answer.iter().cloned().collect();
    let targets: BTreeSet<String> = records.iter().map(|r| r.target().to_ascii()).collect();
    let looked_up = join_all(
        targets
            .iter()
            .map(|target| async move { (target.clone(), ips(resolver, target).await) }),
    )
    .await;
    let host = without_final_dot(name);
    let mut instances = Vec::new();
    for (target, found) in looked_up {
        let target_ips = match found {
            Ok((target_ips, target_ttl)) => {
                ttl = ttl.min(target_ttl);
                target_ips
            }
            Err(LookupError::Empty { .. }) => continue,
            Err(failed) => return Err(failed),
        };
        let target_host = without_final_dot(&target);
        for record in records.iter().filter(|r| r.target().to_ascii() == target) {
            for &ip in &target_ips {
                let mut instance = instance(scheme, ip, record.port(), target_host);
                let metadata = &mut instance.metadata;
                metadata.insert(DNS_NAME.into(), host.to_string());
                metadata.insert(SRV_TARGET.into(), target_host.to_string());
                metadata.insert(SRV_PORT.into(), record.port().to_string());
                metadata.insert(SRV_PRIORITY.into(), record.priority().to_string());
                metadata.insert(SRV_WEIGHT.into(), record.weight().to_string());
                instances.push(instance);
            }
        }
    }
    if instances.is_empty() {
        return Err(LookupError::Empty {
            reason: format!("{host}: no SRV target has an address"),
            ttl: None,
        });
    }
    Ok(Answer { instances, ttl })
}

/// The addresses of `name` (A and AAAA) and their shortest TTL.
async fn ips(resolver: &TokioResolver, name: &str) -> Result<(Vec<IpAddr>, Duration), LookupError> {
    let answer = resolver
        .lookup_ip(name)
        .await
        .map_err(|e| classify(name, "A/AAAA", &e))?;
    let ttl = shortest_ttl(answer.as_lookup().records());
    let mut ips: Vec<IpAddr> = answer.iter().collect();
    ips.sort();
    ips.dedup();
    Ok((ips, ttl))
}

/// The shortest TTL of `records` (zero for none).
fn shortest_ttl(records: &[hickory_resolver::proto::rr::Record]) -> Duration {
    let ttl = records.iter().map(|r| r.ttl()).min().unwrap_or(0);
    Duration::from_secs(u64::from(ttl))
}

/// An empty answer (NXDOMAIN, or NOERROR with no records) is [`LookupError::Empty`];
/// anything else (SERVFAIL, REFUSED, timeouts, I/O) is [`LookupError::Failed`].
fn classify(name: &str, kind: &str, error: &ResolveError) -> LookupError {
    let name = without_final_dot(name);
    if let Some(ProtoErrorKind::NoRecordsFound {
        response_code,
        negative_ttl,
        ..
    }) = error.proto().map(|p| p.kind())
    {
        let what = match response_code {
            ResponseCode::NXDomain => Some("no such name (NXDOMAIN)"),
            ResponseCode::NoError => Some("no records"),
            _ => None,
        };
        if let Some(what) = what {
            return LookupError::Empty {
                reason: format!("{name} {kind}: {what}"),
                ttl: negative_ttl.map(|s| Duration::from_secs(u64::from(s))),
            };
        }
    }
    LookupError::Failed(format!("{name} {kind} lookup failed: {error}"))
}

/// The instance at `ip:port`, named `host` for TLS.
pub(super) fn instance(scheme: &str, ip: IpAddr, port: u16, host: &str) -> Instance {
    let id = SocketAddr::new(ip, port).to_string();
    let mut instance = Instance::new(id.clone(), format!("{scheme}://{id}"));
    if scheme == "https" {
        instance
            .metadata
            .insert(TLS_SERVER_NAME.into(), host.to_string());
    }
    instance
}

fn without_final_dot(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}
