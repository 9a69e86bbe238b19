//! A [`ServiceClient`] whose transport answers at once, in memory: what the client itself
//! runs per call (request, pick, permit, attempt with its timeout, judging, decoding,
//! recording), without the network. A call completes in a single poll, so it can be timed
//! in a tight loop on plain threads.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use discovery_client::{Balance, ServiceClient, StaticDiscovery};
use http_body_util::Full;
use tokio::runtime::Runtime;

use crate::contender::Rating;

/// What every instance answers.
const BODY: &[u8] = br#"{"item_id":"widget","rating":4,"instance":1}"#;

/// The path called.
pub const PATH: &str = "/ratings/widget";

/// A client of three instances that answer at once, and the runtime it was built on (its
/// timers are made in that runtime's context).
pub struct InstantClient {
    /// The client.
    pub client: ServiceClient,
    runtime: Runtime,
}

impl InstantClient {
    /// A client with the defaults (hedging, latency-aware picking) and a cache TTL of an
    /// hour, whose
    /// cache holds the answer: [`get_json`](Self::get_json) goes through the client's call
    /// path (it bypasses the cache), [`cache_hit`](Self::cache_hit) is answered from the
    /// cache. Discovery has answered when this returns.
    pub fn new() -> Result<Self, String> {
        Self::with_balance(Balance::default())
    }

    /// The same with another [`Balance`] rule.
    pub fn with_balance(balance: Balance) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let transport = tower::service_fn(|_: http::Request<Bytes>| {
            std::future::ready(Ok::<_, Infallible>(http::Response::new(Full::new(
                Bytes::from_static(BODY),
            ))))
        });
        let client = runtime.block_on(async {
            let client = ServiceClient::builder("ratings")
                .discovery(StaticDiscovery::new(
                    (1..=3).map(|i| format!("http://10.0.0.{i}:80")),
                ))
                .transport(transport)
                .balance(balance)
                .cache_ttl(Duration::from_secs(3600))
                .build()
                .map_err(|e| format!("client: {e}"))?;
            // The first call waits for discovery (the ones measured never do) and fills the
            // cache.
            client
                .get_json_cached::<Rating>(PATH)
                .await
                .map_err(|e| format!("first call: {e}"))?;
            Ok::<_, String>(client)
        })?;
        Ok(Self { client, runtime })
    }

    /// One `get_json::<Rating>` to completion (one poll: the transport answers at once), in
    /// the runtime's context, from any thread.
    pub fn get_json(&self) -> Rating {
        let _context = self.runtime.enter();
        match crate::scaling::ready_now(self.client.get_json::<Rating>(PATH)) {
            Some(Ok(rating)) => rating,
            other => panic!("an instant call did not complete at once: {other:?}"),
        }
    }

    /// One `get_json_cached::<Rating>`, which must be a hit, likewise (a hit makes no timer,
    /// so it needs no runtime context).
    pub fn cache_hit(&self) -> Rating {
        match crate::scaling::ready_now(self.client.get_json_cached::<Rating>(PATH)) {
            Some(Ok(cached)) if cached.source == discovery_client::Source::Cache => cached.value,
            other => panic!("expected a cache hit, got {other:?}"),
        }
    }
}
