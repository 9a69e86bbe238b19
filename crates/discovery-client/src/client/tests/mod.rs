//! [`ServiceClient`] tests. Most run on paused tokio time over a scripted in-memory transport
//! (fake instances from the `fake-ratings` crate), so they assert exact attempt counts and
//! exact instants; `sockets.rs` keeps a few against real sockets for the transport itself.
//!
//! - `picking.rs`: round-robin, breakers opening and closing, failures and their errors;
//! - `policy.rs`: the failure policy (consecutive failures, failure rate);
//! - `retries.rs`: retries, the retry budget, the deadline, non-idempotent requests;
//! - `gray.rs`: latency-aware picking (a slow instance's share, its recovery) and slow start;
//! - `hedging.rs`: hedged attempts;
//! - `blame.rs`: what an instance is not blamed for (the caller's wrong type, a slow call);
//! - `back_pressure.rs`: instances that push back (429, 503 with `Retry-After`);
//! - `under_load.rs`: many callers while an instance hangs;
//! - `cache.rs`: the response cache through the client;
//! - `status.rs`: what the client says: metrics, events, instance figures;
//! - `sockets.rs`: the default transport over real sockets;
//! - `starved.rs`: a client that is not running for a while (a CPU quota) blames no instance.
//! - `unreachable.rs`: a breaker opened on a refused connection asks discovery to look again.

mod back_pressure;
mod blame;
mod cache;
mod gray;
mod hedging;
mod picking;
mod policy;
mod retries;
mod sockets;
mod starved;
mod status;
mod under_load;
mod unreachable;

use std::time::Duration;

use bytes::Bytes;
use fake_ratings::{Behaviour, FakeRatings, InMemory};
use futures::future::BoxFuture;
use http_body_util::Full;
use serde::Deserialize;
use tokio::sync::broadcast;
use tower::ServiceExt;

use super::*;
use crate::discovery::{Discovery, DiscoverySink};
use crate::{Event, Source, StaticDiscovery};

/// What a fake ratings instance answers.
#[derive(Debug, Deserialize, PartialEq)]
pub(super) struct Rating {
    pub(super) item_id: String,
    pub(super) rating: u8,
    pub(super) instance: u32,
}

/// The per-attempt timeout of these tests.
pub(super) const TIMEOUT: Duration = Duration::from_millis(300);
/// The retest delay of these tests.
pub(super) const RETEST: Duration = Duration::from_millis(400);

/// `then`, after `ms` milliseconds.
pub(super) fn after(ms: u64, then: Behaviour) -> Behaviour {
    Behaviour::delay(Duration::from_millis(ms), then)
}

/// Instances 1..=n in memory, each answering ratings at once.
pub(super) fn instances(n: u32) -> (InMemory, Vec<FakeRatings>) {
    let transport = InMemory::new();
    let fakes = (1..=n)
        .map(|i| transport.instance(i, Behaviour::Ratings))
        .collect();
    (transport, fakes)
}

/// A client of `fakes` through `transport`: timeout [`TIMEOUT`], retest delay [`RETEST`], the
/// rest at its defaults.
pub(super) fn client(transport: &InMemory, fakes: &[FakeRatings]) -> ServiceClientBuilder {
    ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(fakes.iter().map(|f| f.url.clone())))
        .transport(
            transport
                .clone()
                .map_response(|answer: http::Response<Bytes>| answer.map(Full::new)),
        )
        .timeout(TIMEOUT)
        .retest_delay(RETEST)
}

/// The instance that answered `GET /ratings/widget`.
pub(super) async fn instance_of(client: &ServiceClient) -> u32 {
    client
        .get_json::<Rating>("/ratings/widget")
        .await
        .expect("rating")
        .instance
}

/// The client's instances, once discovery has reported them (at most 1 s of tokio time).
pub(super) async fn discovered(client: &ServiceClient) -> Vec<InstanceStatus> {
    for _ in 0..1000 {
        let instances = client.instances();
        if !instances.is_empty() {
            return instances;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("discovery reported nothing");
}

/// Makes every fake behave as `behaviour`.
pub(super) fn set_all(fakes: &[FakeRatings], behaviour: Behaviour) {
    for fake in fakes {
        fake.set(behaviour.clone());
    }
}

/// Each fake's hits.
pub(super) fn hits(fakes: &[FakeRatings]) -> Vec<usize> {
    fakes.iter().map(FakeRatings::hits).collect()
}

/// The next breaker or discovery-health event, skipping instance events (at most 60 s of
/// tokio time).
pub(super) async fn next_event(events: &mut broadcast::Receiver<Event>) -> Event {
    let wait = async {
        loop {
            match events.recv().await.expect("event stream open") {
                Event::InstanceAdded { .. } | Event::InstanceRemoved { .. } => continue,
                other => return other,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("an event in time")
}

pub(super) fn opened(address: &str) -> Event {
    Event::BreakerOpened {
        service: "ratings".into(),
        address: address.into(),
    }
}

pub(super) fn all_down() -> Error {
    Error::AllInstancesDown {
        service: "ratings".into(),
    }
}

/// A discovery source that cannot reach anything.
#[derive(Debug)]
pub(super) struct Unreachable;

impl Discovery for Unreachable {
    fn watch(&self, _service: &str, sink: DiscoverySink) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            sink.outage("registry at http://127.0.0.1:1 unreachable");
            futures::future::pending::<()>().await;
        })
    }
}

/// A discovery source that publishes `set` after `delay`.
#[derive(Debug)]
pub(super) struct Late {
    pub(super) delay: Duration,
    pub(super) addresses: Vec<String>,
}

impl Discovery for Late {
    fn watch(&self, service: &str, sink: DiscoverySink) -> BoxFuture<'static, ()> {
        let (delay, inner) = (self.delay, StaticDiscovery::new(self.addresses.clone()));
        let watch = inner.watch(service, sink);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            watch.await;
        })
    }
}
