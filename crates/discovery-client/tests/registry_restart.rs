//! A restarted registry must not make the client drop healthy instances, on the memory
//! store and on etcd. Against the real registry on loopback (restarted on the same port):
//!
//! - memory: the old registry listed ratings 1, 2 and 3; the new one has learnt other
//!   services and ratings 2 before its first answer (so its ratings index is already higher
//!   than the old one), 1 a second later, never 3. Instances 1 and 2 never leave the client's set;
//!   3 is kept for the restart grace, then dropped: the restart was noticed by the
//!   registry's epoch although the index went up.
//! - etcd (feature `etcd`; skipped without an etcd binary unless CI requires one): a
//!   registry restarted on the same etcd keeps its epoch and its registrations, and the
//!   set never changes; once the etcd data is lost, the next registry has a new epoch and
//!   the client keeps the instances it forgot for the grace.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use discovery_client::{RegistryDiscovery, ServiceClient};
use registry::store::{MemoryStore, Registration, Store, StoreLimits};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The restart grace of these tests' clients.
const GRACE: Duration = Duration::from_secs(2);

/// A real registry process-in-a-task, on a loopback address.
struct Registry {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Registry {
    /// Starts one on `addr` (port 0: a free port), retrying the bind for a while when the
    /// port was just released by the previous registry.
    async fn start(addr: SocketAddr, config: registry::Config) -> Self {
        Self::start_with(addr, config, None).await
    }

    /// As [`start`](Self::start), serving `store` if given.
    async fn start_with(
        addr: SocketAddr,
        config: registry::Config,
        store: Option<Arc<dyn Store>>,
    ) -> Self {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(Instant::now() < deadline, "cannot bind {addr}: {error}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let mut task = match store {
            Some(store) => {
                tokio::spawn(registry::run_with_store(listener, config, store, shutdown))
            }
            None => tokio::spawn(registry::run(listener, config, shutdown)),
        };
        // Serving once /health answers; a registry that failed to start says why.
        let health = format!("http://{addr}/health");
        while reqwest::get(&health).await.is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            if task.is_finished() {
                panic!("the registry stopped: {:?}", (&mut task).await);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { addr, stop, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(self) -> SocketAddr {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the registry stops")
            .unwrap()
            .unwrap();
        self.addr
    }

    async fn register(&self, service: &str, id: &str) {
        let url = format!("{}/v1/services/{service}/instances/{id}", self.url());
        let body = json!({ "address": address(id), "ttl_secs": 60 });
        let answer = reqwest::Client::new()
            .put(url)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{}", answer.status());
    }

    /// The ratings index and the epoch header of a plain read.
    async fn ratings_index_and_epoch(&self) -> (u64, String) {
        let url = format!("{}/v1/services/ratings", self.url());
        let answer = reqwest::get(url).await.unwrap();
        let epoch = answer.headers()["x-registry-epoch"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: serde_json::Value = answer.json().await.unwrap();
        (body["index"].as_u64().unwrap(), epoch)
    }
}

/// The registration of instance `id` of `service`, as the HTTP API would make it.
fn registration(service: &str, id: &str) -> Registration {
    Registration {
        service: service.into(),
        id: id.into(),
        address: address(id),
        metadata: Default::default(),
        ttl: Duration::from_secs(60),
    }
}

/// A distinct address per instance id (the client keys instances by address too).
fn address(id: &str) -> String {
    format!("http://{id}.instances.test:8080")
}

/// The client's current instance ids, sorted.
fn ids(client: &ServiceClient) -> Vec<String> {
    let mut ids: Vec<String> = client.instances().into_iter().map(|i| i.id).collect();
    ids.sort();
    ids
}

/// Waits (at most 5 s) until the client's ids are `expected`.
async fn until_ids(client: &ServiceClient, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while ids(client) != expected {
        assert!(
            Instant::now() < deadline,
            "{:?}, expected {expected:?}",
            ids(client)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Watches the client's set every 5 ms until `until`, failing if any of `healthy` leaves
/// it; returns every distinct set seen, in order, with when it was first seen.
async fn watch_set(
    client: &ServiceClient,
    healthy: &[&str],
    until: Instant,
) -> Vec<(Instant, Vec<String>)> {
    let mut seen: Vec<(Instant, Vec<String>)> = Vec::new();
    while Instant::now() < until {
        let now = ids(client);
        for id in healthy {
            assert!(
                now.iter().any(|i| i == id),
                "healthy instance {id} left the set: {now:?} (sets so far {seen:?})"
            );
        }
        if seen.last().map(|(_, set)| set) != Some(&now) {
            seen.push((Instant::now(), now));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    seen
}

fn client(registry: &Registry) -> ServiceClient {
    let discovery = RegistryDiscovery::new(registry.url())
        .wait(Duration::from_secs(5))
        .restart_grace(GRACE);
    ServiceClient::builder("ratings")
        .discovery(discovery)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_restarted_memory_registry_whose_index_went_up_is_still_noticed() {
    let old = Registry::start("127.0.0.1:0".parse().unwrap(), registry::Config::default()).await;
    for id in ["1", "2", "3"] {
        old.register("ratings", id).await;
    }
    let (old_index, old_epoch) = old.ratings_index_and_epoch().await;
    let client = client(&old);
    until_ids(&client, &["1", "2", "3"]).await;

    let addr = old.stop().await;
    // Other services register first, then ratings 2: the one counter moves past ratings'
    // old index. Done before the new registry serves, so its very first answer to the
    // client has the higher index.
    let store = MemoryStore::new(StoreLimits::default());
    for n in 0..(old_index + 3) {
        store
            .register(registration("inventory", &format!("i{n}")), None)
            .unwrap();
    }
    store.register(registration("ratings", "2"), None).unwrap();
    let restarted = Instant::now();
    let new = Registry::start_with(addr, registry::Config::default(), Some(Arc::new(store))).await;
    let (new_index, new_epoch) = new.ratings_index_and_epoch().await;
    assert!(
        new_index > old_index,
        "{new_index} <= {old_index}: not the case under test"
    );
    assert_ne!(new_epoch, old_epoch);

    // Instance 1 re-registers a second later; 3 never does.
    let late = tokio::spawn({
        let url = new.url();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let body = json!({ "address": address("1"), "ttl_secs": 60 });
            reqwest::Client::new()
                .put(format!("{url}/v1/services/ratings/instances/1"))
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    });
    let seen = watch_set(
        &client,
        &["1", "2"],
        Instant::now() + GRACE + Duration::from_secs(1),
    )
    .await;
    assert!(late.await.unwrap().status().is_success());
    // 3 was kept through the grace (the restart was noticed), then dropped.
    let (dropped, last) = seen.last().unwrap();
    assert_eq!(last, &["1", "2"], "{seen:?}");
    assert!(dropped.duration_since(restarted) >= GRACE, "{seen:?}");
    new.stop().await;
}

#[cfg(feature = "etcd")]
mod etcd {
    use etcd_harness::EtcdCluster;

    use super::*;

    fn on_etcd(etcd: &EtcdCluster, prefix: &str) -> registry::Config {
        registry::Config {
            store: registry::config::StoreKind::Etcd,
            etcd_endpoints: etcd.endpoints(),
            etcd_prefix: prefix.into(),
            ..registry::Config::default()
        }
    }

    #[tokio::test]
    async fn a_registry_restarted_on_the_same_etcd_keeps_its_epoch_and_nothing_leaves() {
        let Some(etcd) = EtcdCluster::start(1) else {
            return;
        };
        let prefix = "/restart-same/";
        let old = Registry::start("127.0.0.1:0".parse().unwrap(), on_etcd(&etcd, prefix)).await;
        for id in ["1", "2"] {
            old.register("ratings", id).await;
        }
        let (_, old_epoch) = old.ratings_index_and_epoch().await;
        let client = client(&old);
        until_ids(&client, &["1", "2"]).await;

        let addr = old.stop().await;
        let new = Registry::start(addr, on_etcd(&etcd, prefix)).await;
        let (_, new_epoch) = new.ratings_index_and_epoch().await;
        assert_eq!(new_epoch, old_epoch, "the same etcd, the same history");
        let seen = watch_set(
            &client,
            &["1", "2"],
            Instant::now() + Duration::from_secs(1),
        )
        .await;
        let sets: Vec<&Vec<String>> = seen.iter().map(|(_, set)| set).collect();
        assert_eq!(sets, [&["1", "2"]]);
        new.stop().await;
    }

    #[tokio::test]
    async fn a_registry_on_an_etcd_that_lost_its_data_has_a_new_epoch_and_the_grace_applies() {
        let Some(etcd) = EtcdCluster::start(1) else {
            return;
        };
        let prefix = "/restart-lost/";
        let old = Registry::start("127.0.0.1:0".parse().unwrap(), on_etcd(&etcd, prefix)).await;
        for id in ["1", "2"] {
            old.register("ratings", id).await;
        }
        let (_, old_epoch) = old.ratings_index_and_epoch().await;
        let client = client(&old);
        until_ids(&client, &["1", "2"]).await;

        let addr = old.stop().await;
        let mut kv = etcd_client::Client::connect(etcd.endpoints(), None)
            .await
            .unwrap();
        kv.delete(
            prefix,
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
        let restarted = Instant::now();
        let new = Registry::start(addr, on_etcd(&etcd, prefix)).await;
        new.register("ratings", "2").await;
        let (_, new_epoch) = new.ratings_index_and_epoch().await;
        assert_ne!(new_epoch, old_epoch);
        let seen = watch_set(
            &client,
            &["2"],
            Instant::now() + GRACE + Duration::from_secs(1),
        )
        .await;
        // 1 was kept through the grace (the restart was noticed), then dropped.
        let (dropped, last) = seen.last().unwrap();
        assert_eq!(last, &["2"], "{seen:?}");
        assert!(dropped.duration_since(restarted) >= GRACE, "{seen:?}");
        new.stop().await;
    }
}
