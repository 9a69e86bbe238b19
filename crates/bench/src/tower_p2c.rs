//! tower's own balancer as a contender: `tower::balance::p2c::Balance` over
//! `PeakEwmaDiscover` (what linkerd2-proxy builds on) or `PendingRequestsDiscover`, each
//! endpoint a plain hyper client to one instance with the shared timeout. tower's balancer
//! takes `&mut self` to pick, so, as linkerd does, a `Buffer` in front lets many callers
//! share it: one channel hop per call.
//!
//! The decay and default round-trip time are those of tower's own
//! `examples/tower-balance.rs` (10 s, 30 ms).

use std::time::Duration;

use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover, PendingRequestsDiscover};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceExt};

use crate::contender::{HyperClient, hyper_get, plain_hyper};

/// tower's balancer behind its buffer, taking a path and answering the instance number.
pub type TowerClient = BoxCloneSyncService<String, u16, BoxError>;

/// What tower's two-choices picker compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TowerLoad {
    /// Peak-EWMA of round-trip times × requests in flight (`PeakEwmaDiscover`).
    PeakEwma,
    /// Requests in flight (`PendingRequestsDiscover`).
    PendingRequests,
}

/// The RTT an endpoint is assumed to have before it has answered anything.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How fast the peak-EWMA forgets.
pub const DECAY: Duration = Duration::from_secs(10);
/// Requests the buffer holds before callers wait.
const BUFFER: usize = 1024;

/// One endpoint: `GET {base}{path}` through `http`, within `timeout`.
fn endpoint(
    http: HyperClient,
    base: String,
    timeout: Duration,
) -> impl Service<
    String,
    Response = u16,
    Error = BoxError,
    Future = impl Future<Output = Result<u16, BoxError>> + Send + 'static,
> + Send
+ 'static {
    tower::service_fn(move |path: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            match tokio::time::timeout(timeout, hyper_get(&http, &base, &path)).await {
                Ok(Some(instance)) => Ok(instance),
                Ok(None) => Err(BoxError::from(format!("{base}{path} failed"))),
                Err(_) => Err(BoxError::from(format!("{base}{path} timed out"))),
            }
        }
    })
}

/// tower's p2c balancer with `load` over the instances at `urls`. Must be called inside the
/// runtime (the buffer spawns its worker there).
pub fn client(urls: &[String], load: TowerLoad, timeout: Duration) -> TowerClient {
    let http = plain_hyper();
    let endpoints: Vec<_> = urls
        .iter()
        .map(|url| endpoint(http.clone(), url.clone(), timeout))
        .collect();
    let discover = ServiceList::new(endpoints);
    match load {
        TowerLoad::PeakEwma => {
            let discover =
                PeakEwmaDiscover::new(discover, DEFAULT_RTT, DECAY, CompleteOnResponse::default());
            BoxCloneSyncService::new(Buffer::new(Balance::new(discover), BUFFER))
        }
        TowerLoad::PendingRequests => {
            let discover = PendingRequestsDiscover::new(discover, CompleteOnResponse::default());
            BoxCloneSyncService::new(Buffer::new(Balance::new(discover), BUFFER))
        }
    }
}

/// One call through `client`; the instance that answered, or `None`.
pub async fn call(client: &TowerClient, path: &str) -> Option<u16> {
    client.clone().oneshot(path.to_string()).await.ok()
}
