//! Following discovery: the endpoints a call picks from, rebuilt as instances come and go.

use std::sync::Arc;
use std::time::Duration;

use futures::future::poll_fn;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::discover::Change;

use crate::Instance;
use crate::balance::{Balance, Load, Picker};
use crate::breaker::{BreakerState, Breakers, Gate};
use crate::discovery::{InstanceStream, Update};
use crate::transport::{BaseUrl, ServerNames};

/// The instance metadata key naming the TLS server name to check an instance's certificate
/// against (for an `https://` address that is an IP).
pub const TLS_SERVER_NAME: &str = "tls_server_name";

/// One instance as the client calls it. Cheap to clone (the parts are shared).
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The instance as discovery reported it.
    pub(crate) instance: Arc<Instance>,
    /// Its address, parsed once.
    pub(crate) base: BaseUrl,
    /// Its breaker (kept by address across discovery refreshes) and reporting.
    pub(crate) gate: Gate,
    /// Attempts sent to it and not finished yet, and how fast it has been answering, which
    /// the picker reads to pass over an instance that is slow or has stopped answering. An
    /// endpoint rebuilt for the same address starts afresh (and its slow start with it).
    pub(crate) load: Load,
}

/// What discovery has said so far.
#[derive(Debug, Clone)]
pub(crate) enum Known {
    /// Nothing yet.
    Nothing,
    /// The instances it reported, sorted by id.
    Endpoints(Arc<[Endpoint]>),
    /// It failed before it reported anything: why.
    Unavailable(String),
}

/// Follows discovery's [`InstanceStream`]: applies each change, and after each new set
/// publishes the endpoints (or, when discovery fails before any set, why). Ends when
/// discovery ends or nobody reads the endpoints any more.
pub(crate) async fn follow_discovery(
    mut instances: InstanceStream,
    breakers: Breakers,
    server_names: Option<ServerNames>,
    out: watch::Sender<Known>,
) {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut reported = false;
    while let Some(update) = poll_fn(|cx| instances.poll_update(cx)).await {
        match update {
            Update::Changed(Change::Insert(address, instance)) => {
                let name = instance.metadata.get(TLS_SERVER_NAME);
                if let (Some(names), Some(name)) = (&server_names, name) {
                    if let Err(error) = names.insert(&address, name) {
                        tracing::warn!(instance = %instance.id, %address, %error,
                            "{TLS_SERVER_NAME} not used: {error}");
                    }
                }
                let endpoint = Endpoint {
                    base: BaseUrl::new(&instance.address),
                    gate: breakers.gate(&instance),
                    instance: Arc::new(instance),
                    load: Load::new(tokio::time::Instant::now()),
                };
                match endpoints.iter_mut().find(|e| e.instance.address == address) {
                    Some(existing) => *existing = endpoint,
                    None => endpoints.push(endpoint),
                }
            }
            Update::Changed(Change::Remove(address)) => {
                endpoints.retain(|e| e.instance.address != address);
            }
            Update::Settled => {
                reported = true;
                endpoints.sort_by(|a, b| a.instance.id.cmp(&b.instance.id));
                breakers.forget_departed(|address| {
                    endpoints.iter().any(|e| e.instance.address == address)
                });
                if out
                    .send(Known::Endpoints(endpoints.clone().into()))
                    .is_err()
                {
                    return;
                }
            }
            Update::Unavailable(reason) if !reported => {
                if out.send(Known::Unavailable(reason)).is_err() {
                    return;
                }
            }
            Update::Unavailable(_) => {}
        }
    }
}

/// A snapshot of one instance for status pages: its breaker, and what the client has seen
/// of its attempts (kept by address, like the breaker, since the client first saw it).
///
/// ```no_run
/// use discovery_client::{RegistryDiscovery, ServiceClient};
///
/// # async fn demo() -> Result<(), discovery_client::Error> {
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(RegistryDiscovery::new("http://127.0.0.1:8500"))
///     .build()?;
/// for status in ratings.instances() {
///     println!(
///         "{} {} {}: {} requests, {} failed, p99 {:?}",
///         status.id, status.address, status.state.as_str(),
///         status.requests, status.failures, status.latency_p99
///     );
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceStatus {
    /// Instance id.
    pub id: String,
    /// Instance address.
    pub address: String,
    /// Its breaker's state.
    pub state: BreakerState,
    /// Attempts sent to it that have not ended yet.
    pub in_flight: usize,
    /// Attempts sent to it whose outcome is known.
    pub requests: u64,
    /// Of those, the ones that were its failures (transport errors, timeouts, 5xx, bodies
    /// that did not decode).
    pub failures: u64,
    /// The median duration of its latest attempts (up to 128), if it has had any.
    pub latency_p50: Option<Duration>,
    /// The 99th percentile of the same.
    pub latency_p99: Option<Duration>,
    /// The answer time the balancer weighs it by: its quickest recent answer
    /// ([`Balance::LatencyAware`](crate::Balance::LatencyAware)), if it has answered since
    /// it was last added.
    pub latency_estimate: Option<Duration>,
    /// Its share of the balancer's turns against a full one, in `0.0..=1.0`: below 1 while
    /// it answers much slower than the fastest instance or ramps up after slow start; 1
    /// under the rules that do not weigh instances.
    pub share: f64,
    /// How much longer it is left alone after it pushed back (a 429, or a 503 with
    /// `Retry-After`); `None` if it is not.
    pub pushed_back_for: Option<Duration>,
}

impl InstanceStatus {
    /// The snapshot at `now` of the instance behind `gate`, whose load is `load` and whose
    /// share of the turns is `share`: what [`ServiceClient`](crate::ServiceClient) and the
    /// gRPC channel report alike.
    pub(crate) fn of(gate: &Gate, load: &Load, share: f64, now: Instant) -> Self {
        let telemetry = gate.telemetry();
        let stats = telemetry.stats();
        let latency = stats.recent_latency();
        Self {
            id: telemetry.id().to_owned(),
            address: telemetry.address().to_owned(),
            state: gate.breaker().state(),
            in_flight: load.in_flight(),
            requests: stats.attempts(),
            failures: stats.failures(),
            latency_p50: latency.map(|(p50, _)| p50),
            latency_p99: latency.map(|(_, p99)| p99),
            latency_estimate: load
                .latency(now)
                .map(|nanos| Duration::from_nanos(nanos as u64)),
            share,
            pushed_back_for: gate.avoided_for(now),
        }
    }
}

/// Snapshots of `endpoints`, in their order, with their shares of `picker`'s turns under
/// `balance`.
pub(crate) fn status_of(
    endpoints: &[Endpoint],
    picker: &Picker,
    balance: Balance,
) -> Vec<InstanceStatus> {
    let now = Instant::now();
    let shares = picker.shares(balance, endpoints.len(), |i| &endpoints[i].load, now);
    endpoints
        .iter()
        .zip(shares)
        .map(|(endpoint, share)| InstanceStatus::of(&endpoint.gate, &endpoint.load, share, now))
        .collect()
}
