//! One behavioural suite for the HTTP API, run against every store.
//!
//! Each case below is written once, against the API, and [`suite!`] runs it as
//! `memory::<case>` (the in-memory store) and, with the `etcd` feature, as `etcd::<case>`
//! (the etcd store on a real etcd started for the test on loopback ports). The cases use
//! real time, since etcd does; indexes are compared (moved or not), never assumed to be
//! 1, 2, 3, because the etcd store's indexes are etcd revisions.
//!
//! What the HTTP layer decides the same way whatever the store (validation, auth, body and
//! blocking-query limits, the wait cap, shutdown) is tested once, in `src/http/tests.rs`.

// Tests panic on unexpected errors; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use registry::store::{MemoryStore, Store};
use registry::{AppState, Config, app};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use support::ids;
use support::router::{
    self, Reply, assert_error, assert_held, get, instance_uri, put_json, put_json_with_lease,
    with_lease,
};

const ADDR: &str = "http://127.0.0.1:8001";

/// Which store a case runs against.
enum Backend {
    Memory,
    #[cfg(feature = "etcd")]
    Etcd(etcd_harness::EtcdCluster),
}

impl Backend {
    /// A fresh single-member etcd, or `None` (the case is skipped) without an etcd binary.
    #[cfg(feature = "etcd")]
    fn etcd() -> Option<Self> {
        etcd_harness::EtcdCluster::start(1).map(Self::Etcd)
    }
}

/// A registry's router over one store, with the sweeper running as `run` would.
struct Registry {
    state: AppState,
    sweeper: JoinHandle<()>,
    /// Keeps etcd running as long as the registry uses it.
    _backend: Backend,
}

impl Registry {
    async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::default();
        configure(&mut config);
        let store: Arc<dyn Store> = match &backend {
            Backend::Memory => Arc::new(MemoryStore::new(config.store_limits())),
            #[cfg(feature = "etcd")]
            Backend::Etcd(etcd) => {
                let options = registry::store::etcd::EtcdOptions {
                    endpoints: etcd.endpoints(),
                    prefix: "/suite/".into(),
                    limits: config.store_limits(),
                    ..Default::default()
                };
                Arc::new(registry::store::EtcdStore::connect(options).await.unwrap())
            }
        };
        let state = AppState::with_store(&config, store);
        let sweeper = registry::sweeper::spawn(
            Arc::clone(state.store()),
            config.sweep_interval,
            state.shutdown().clone(),
        );
        Self {
            state,
            sweeper,
            _backend: backend,
        }
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        send(self.state.clone(), request).await
    }

    /// Registers `id` at `address` (with an optional TTL) and returns the lease.
    async fn register(&self, service: &str, id: &str, address: &str, ttl: Option<u64>) -> String {
        let mut body = json!({ "address": address });
        if let Some(ttl) = ttl {
            body["ttl_secs"] = json!(ttl);
        }
        let reply = self.send(put_json(&instance_uri(service, id), &body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["lease"].as_str().unwrap().to_owned()
    }

    /// `PUT`s a registration of `id` at `address`, presenting `lease` if given.
    async fn try_register(&self, id: &str, address: &str, lease: Option<&str>) -> Reply {
        let (uri, body) = (instance_uri("ratings", id), json!({ "address": address }));
        let request = match lease {
            Some(lease) => put_json_with_lease(&uri, &body, lease),
            None => put_json(&uri, &body),
        };
        self.send(request).await
    }

    /// Re-registers a live id as its holder and returns the new lease.
    async fn reregister(&self, id: &str, address: &str, lease: &str) -> String {
        let reply = self.try_register(id, address, Some(lease)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["lease"].as_str().unwrap().to_owned()
    }

    async fn heartbeat(&self, service: &str, id: &str, lease: Option<&str>) -> Reply {
        let uri = format!("{}/heartbeat", instance_uri(service, id));
        self.send(with_lease(Method::PUT, &uri, lease)).await
    }

    async fn deregister(&self, service: &str, id: &str, lease: Option<&str>) -> Reply {
        self.send(with_lease(
            Method::DELETE,
            &instance_uri(service, id),
            lease,
        ))
        .await
    }

    /// `GET /v1/services/{name}`; checks the index header matches the body.
    async fn service(&self, name: &str) -> Value {
        let reply = self.send(get(&format!("/v1/services/{name}"))).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.header_index(),
            reply.body["index"].as_u64(),
            "the index header is the body's index"
        );
        reply.body
    }

    async fn index(&self, name: &str) -> u64 {
        self.service(name).await["index"].as_u64().unwrap()
    }

    async fn ids(&self, name: &str) -> Vec<String> {
        ids(&self.service(name).await)
    }

    async fn services(&self) -> Value {
        self.send(get("/v1/services")).await.body["services"].clone()
    }

    /// Starts a blocking query and waits until it is parked.
    async fn watch(&self, name: &str, index: u64, wait: &str) -> JoinHandle<Reply> {
        let parked = self.state.blocking_queries();
        let uri = format!("/v1/services/{name}?index={index}&wait={wait}");
        let watch = tokio::spawn(send(self.state.clone(), get(&uri)));
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.state.blocking_queries() == parked {
            assert!(Instant::now() < deadline, "the blocking query never parked");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        watch
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.state.shutdown().trigger();
        self.sweeper.abort();
    }
}

async fn send(state: AppState, request: Request<Body>) -> Reply {
    router::send(app(state), request).await
}

/// Polls `check` every 20 ms until it holds, at most `limit`; how long it took.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    // Bounded by `limit`.
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The cases.

async fn register_then_read_back(backend: Backend) {
    let registry = Registry::start(backend).await;
    let before = registry.index("ratings").await;
    let reply = registry
        .send(put_json(
            &instance_uri("ratings", "1"),
            &json!({ "address": ADDR, "metadata": { "zone": "a" }, "ttl_secs": 60 }),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let lease = reply.body["lease"].as_str().unwrap();
    assert_eq!(lease.len(), 32);
    assert!(lease.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(reply.body["ttl_secs"], 60);

    let body = registry.service("ratings").await;
    assert!(body["index"].as_u64().unwrap() > before);
    assert_eq!(
        body["instances"],
        json!([{ "id": "1", "address": ADDR, "metadata": { "zone": "a" } }])
    );
    assert_eq!(registry.services().await, json!(["ratings"]));
}

async fn default_ttl_and_sorted_listings(backend: Backend) {
    let registry = Registry::start(backend).await;
    let reply = registry
        .send(put_json(
            &instance_uri("ratings", "b"),
            &json!({ "address": "http://127.0.0.1:8002", "metadata": null }),
        ))
        .await;
    assert_eq!(reply.body["ttl_secs"], 120);
    // The store holds the lease for those 120 s: a takeover is refused for about as long.
    let secs = assert_held(
        &registry
            .try_register("b", "http://127.0.0.1:8002", None)
            .await,
    );
    assert!(
        (115..=121).contains(&secs),
        "a default (120 s) lease just taken has {secs} s left?"
    );
    registry.register("ratings", "a", ADDR, None).await;
    registry
        .register("market", "x", "http://127.0.0.1:5000", None)
        .await;
    assert_eq!(registry.services().await, json!(["market", "ratings"]));
    let body = registry.service("ratings").await;
    assert_eq!(ids(&body), ["a", "b"]);
    assert_eq!(body["instances"][1]["metadata"], json!({}));
}

async fn unknown_services_are_empty_not_404(backend: Backend) {
    let registry = Registry::start(backend).await;
    let one = registry.service("nothing-here").await;
    assert_eq!(one["instances"], json!([]));
    // Every unknown service reports the same index.
    assert_eq!(registry.service("nor-here").await["index"], one["index"]);
    assert_eq!(registry.services().await, json!([]));
}

async fn heartbeat_renews_without_moving_the_index(backend: Backend) {
    let registry = Registry::start(backend).await;
    let lease = registry.register("ratings", "1", ADDR, None).await;
    let index = registry.index("ratings").await;

    let reply = registry.heartbeat("ratings", "1", Some(&lease)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({ "ttl_secs": 120 }));
    assert_eq!(registry.index("ratings").await, index);

    for (service, id, presented, status, needle) in [
        (
            "ratings",
            "2",
            Some(lease.as_str()),
            StatusCode::NOT_FOUND,
            "not registered",
        ),
        (
            "other",
            "1",
            Some(lease.as_str()),
            StatusCode::NOT_FOUND,
            "not registered",
        ),
        ("ratings", "1", Some("0000"), StatusCode::FORBIDDEN, "lease"),
        ("ratings", "1", None, StatusCode::FORBIDDEN, "lease"),
    ] {
        let reply = registry.heartbeat(service, id, presented).await;
        assert_error(&reply, status, needle);
    }
}

async fn deregister_needs_the_lease_and_moves_the_index(backend: Backend) {
    let registry = Registry::start(backend).await;
    let lease = registry.register("ratings", "1", ADDR, None).await;
    let index = registry.index("ratings").await;

    let reply = registry.deregister("ratings", "1", Some("wrong")).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "lease");
    let reply = registry.deregister("ratings", "1", None).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "lease");
    let reply = registry.deregister("ratings", "2", Some(&lease)).await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not registered");
    assert_eq!(registry.ids("ratings").await, ["1"]);

    let reply = registry.deregister("ratings", "1", Some(&lease)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let body = registry.service("ratings").await;
    assert_eq!(body["instances"], json!([]));
    assert!(body["index"].as_u64().unwrap() > index);
    assert_eq!(registry.services().await, json!([]));
    let reply = registry.deregister("ratings", "1", Some(&lease)).await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not registered");
    let reply = registry.heartbeat("ratings", "1", Some(&lease)).await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not registered");
}

async fn identical_reregistration_issues_a_new_lease_only(backend: Backend) {
    let registry = Registry::start(backend).await;
    let old = registry.register("ratings", "1", ADDR, None).await;
    let index = registry.index("ratings").await;
    let new = registry.reregister("1", ADDR, &old).await;
    assert_ne!(old, new);
    assert_eq!(registry.index("ratings").await, index);
    assert_eq!(
        registry.heartbeat("ratings", "1", Some(&old)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        registry.heartbeat("ratings", "1", Some(&new)).await.status,
        StatusCode::OK
    );
}

async fn metadata_change_moves_the_index(backend: Backend) {
    let registry = Registry::start(backend).await;
    let lease = registry.register("ratings", "1", ADDR, None).await;
    let index = registry.index("ratings").await;
    let request = put_json_with_lease(
        &instance_uri("ratings", "1"),
        &json!({ "address": ADDR, "metadata": { "v": "2" } }),
        &lease,
    );
    let reply = registry.send(request).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = registry.service("ratings").await;
    assert!(body["index"].as_u64().unwrap() > index);
    assert_eq!(body["instances"][0]["metadata"], json!({ "v": "2" }));
}

async fn moving_an_id_to_another_address_needs_its_lease(backend: Backend) {
    let registry = Registry::start(backend).await;
    let lease = registry.register("ratings", "1", ADDR, None).await;
    let before = registry.service("ratings").await;
    let hijack = json!({ "address": "http://10.0.0.66:80" });
    let uri = instance_uri("ratings", "1");

    let reply = registry.send(put_json(&uri, &hijack)).await;
    assert_held(&reply);
    let wrong = put_json_with_lease(&uri, &hijack, "deadbeef");
    assert_held(&registry.send(wrong).await);
    assert_eq!(registry.service("ratings").await, before);
    assert_eq!(
        registry
            .heartbeat("ratings", "1", Some(&lease))
            .await
            .status,
        StatusCode::OK,
        "the owner's lease survives a refused hijack"
    );

    let owner = put_json_with_lease(&uri, &hijack, &lease);
    assert_eq!(registry.send(owner).await.status, StatusCode::OK);
    let after = registry.service("ratings").await;
    assert!(after["index"].as_u64() > before["index"].as_u64());
    assert_eq!(after["instances"][0]["address"], "http://10.0.0.66:80");
}

async fn a_live_id_at_the_same_address_cannot_be_taken_over_without_its_lease(backend: Backend) {
    let registry = Registry::start(backend).await;
    let lease = registry.register("ratings", "1", ADDR, Some(60)).await;
    let before = registry.service("ratings").await;

    // The hijack: re-register at the very same address without the lease (or with a wrong
    // one), to get a fresh lease that could then deregister the instance.
    for presented in [None, Some("deadbeef"), Some("")] {
        let reply = registry.try_register("1", ADDR, presented).await;
        let secs = assert_held(&reply);
        assert!(
            (55..=61).contains(&secs),
            "a 60 s lease just taken has {secs} s left?"
        );
    }
    assert_eq!(registry.service("ratings").await, before, "nothing changed");

    // The holder is untouched: its lease renews, and it alone can deregister.
    assert_eq!(
        registry
            .heartbeat("ratings", "1", Some(&lease))
            .await
            .status,
        StatusCode::OK
    );
    let reply = registry.deregister("ratings", "1", Some(&lease)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(registry.ids("ratings").await, Vec::<String>::new());

    // Once the id is free, anyone may register it.
    let fresh = registry.register("ratings", "1", ADDR, None).await;
    assert_ne!(fresh, lease);
    assert_eq!(registry.ids("ratings").await, ["1"]);
}

async fn the_holder_re_registers_at_once_with_its_lease(backend: Backend) {
    let registry = Registry::start(backend).await;
    let old = registry.register("ratings", "1", ADDR, Some(60)).await;
    // As a restarted instance that kept its lease would.
    let new = registry.reregister("1", ADDR, &old).await;
    assert_ne!(new, old);
    assert_eq!(registry.ids("ratings").await, ["1"]);
    let reply = registry.deregister("ratings", "1", Some(&old)).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "lease");
    // The spent lease cannot re-register either.
    assert_held(&registry.try_register("1", ADDR, Some(&old)).await);
    let reply = registry.deregister("ratings", "1", Some(&new)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
}

async fn an_expired_lease_frees_the_id_for_anyone(backend: Backend) {
    let registry = Registry::start(backend).await;
    let old = registry.register("ratings", "1", ADDR, Some(1)).await;
    let registered = Instant::now();
    let secs = assert_held(&registry.try_register("1", ADDR, None).await);
    // etcd may round a 1 s lease up to its own minimum (2 s) and answers in whole seconds.
    assert!((1..=3).contains(&secs), "{secs} s left on a 1 s lease");
    // Refused (409) until the lease runs out, then accepted; bounded by the assert.
    let fresh = loop {
        let reply = registry.try_register("1", ADDR, None).await;
        if reply.status == StatusCode::OK {
            break reply.body["lease"].as_str().unwrap().to_owned();
        }
        assert_held(&reply);
        assert!(
            registered.elapsed() < Duration::from_secs(5),
            "a 1 s lease still held after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let after = registered.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "free {after:?} after registering with a 1 s TTL"
    );
    assert_ne!(fresh, old);
    let reply = registry.heartbeat("ratings", "1", Some(&old)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = registry.heartbeat("ratings", "1", Some(&fresh)).await;
    assert_eq!(reply.status, StatusCode::OK);
}

async fn instance_and_service_limits_are_429(backend: Backend) {
    let registry = Registry::start_with(backend, |c| {
        c.max_instances_per_service = 1;
        c.max_services = 1;
    })
    .await;
    let lease = registry.register("ratings", "1", ADDR, None).await;
    let index = registry.index("ratings").await;
    let reply = registry
        .send(put_json(
            &instance_uri("ratings", "2"),
            &json!({ "address": ADDR }),
        ))
        .await;
    assert_error(
        &reply,
        StatusCode::TOO_MANY_REQUESTS,
        "limit of 1 instances",
    );
    let reply = registry
        .send(put_json(
            &instance_uri("other", "1"),
            &json!({ "address": ADDR }),
        ))
        .await;
    assert_error(&reply, StatusCode::TOO_MANY_REQUESTS, "limit of 1 services");
    // Re-registering an existing id is still allowed at the limit.
    registry.reregister("1", ADDR, &lease).await;
    assert_eq!(registry.services().await, json!(["ratings"]));
    assert_eq!(registry.index("ratings").await, index);
}

async fn blocking_query_returns_as_soon_as_the_set_changes(backend: Backend) {
    let registry = Registry::start(backend).await;
    registry.register("ratings", "1", ADDR, None).await;
    let index = registry.index("ratings").await;
    let watch = registry.watch("ratings", index, "30s").await;

    let changed = Instant::now();
    registry
        .register("ratings", "2", "http://127.0.0.1:8002", None)
        .await;
    let reply = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("answered")
        .unwrap();
    let took = changed.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "answered {took:?} after the change"
    );
    assert!(reply.body["index"].as_u64().unwrap() > index);
    assert_eq!(reply.header_index(), reply.body["index"].as_u64());
    assert_eq!(ids(&reply.body), ["1", "2"]);
    assert_eq!(
        registry.state.blocking_queries(),
        0,
        "the permit is released"
    );
}

async fn blocking_query_ignores_heartbeats_and_no_op_reregistrations(backend: Backend) {
    let registry = Registry::start(backend).await;
    let lease = registry.register("ratings", "1", ADDR, None).await;
    let before = registry.service("ratings").await;
    let index = before["index"].as_u64().unwrap();
    let started = Instant::now();
    let watch = registry.watch("ratings", index, "1500ms").await;
    assert_eq!(
        registry
            .heartbeat("ratings", "1", Some(&lease))
            .await
            .status,
        StatusCode::OK
    );
    let identical = registry.reregister("1", ADDR, &lease).await;
    assert_ne!(identical, lease);
    let reply = watch.await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "a heartbeat or a no-op re-registration answered the query after {waited:?}"
    );
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, before);
}

async fn reads_without_a_current_index_answer_at_once(backend: Backend) {
    let registry = Registry::start(backend).await;
    registry.register("ratings", "1", ADDR, None).await;
    let index = registry.index("ratings").await;
    let started = Instant::now();
    for uri in [
        "/v1/services/ratings".to_owned(),
        "/v1/services/ratings?wait=30s".to_owned(),
        format!("/v1/services/ratings?index={}&wait=30s", index - 1),
        format!("/v1/services/ratings?index={}&wait=30s", index + 7),
        format!("/v1/services/ratings?index={index}&wait=0s"),
    ] {
        let reply = registry.send(get(&uri)).await;
        assert_eq!(reply.body["index"].as_u64(), Some(index), "{uri}");
    }
    assert!(started.elapsed() < Duration::from_secs(1));
}

async fn watching_an_unknown_service_wakes_on_its_first_registration(backend: Backend) {
    let registry = Registry::start(backend).await;
    let index = registry.index("ratings").await;
    let watch = registry.watch("ratings", index, "30s").await;
    // Another service's change does not answer it.
    registry.register("other", "1", ADDR, None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!watch.is_finished());
    let changed = Instant::now();
    registry.register("ratings", "1", ADDR, None).await;
    let reply = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("answered")
        .unwrap();
    assert!(changed.elapsed() < Duration::from_secs(1));
    assert!(reply.body["index"].as_u64().unwrap() > index);
    assert_eq!(ids(&reply.body), ["1"]);
}

async fn leases_expire_on_time_and_heartbeats_postpone_it(backend: Backend) {
    let registry = Registry::start(backend).await;
    let lease = registry.register("ratings", "1", ADDR, Some(2)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // A refused takeover says how long the lease has left; the heartbeat renews that.
    let waning = assert_held(&registry.try_register("1", ADDR, None).await);
    let renewed = Instant::now();
    assert_eq!(
        registry
            .heartbeat("ratings", "1", Some(&lease))
            .await
            .status,
        StatusCode::OK
    );
    let held = assert_held(&registry.try_register("1", ADDR, None).await);
    assert!(
        held > waning,
        "a takeover waits {held} s after a heartbeat, {waning} s before it"
    );
    let index = registry.index("ratings").await;
    // Past the first TTL, within the renewed one.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(registry.ids("ratings").await, ["1"], "renewed at 1.2 s");

    eventually(Duration::from_secs(4), "expiry", || async {
        registry.ids("ratings").await.is_empty()
    })
    .await;
    let lived = renewed.elapsed();
    assert!(
        lived >= Duration::from_millis(1900),
        "expired {lived:?} after a heartbeat with a 2 s TTL"
    );
    assert!(
        registry.index("ratings").await > index,
        "expiry moves the index"
    );
    assert_eq!(registry.services().await, json!([]));
    let reply = registry.heartbeat("ratings", "1", Some(&lease)).await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not registered");
    // The instance re-registers after the 404, as a client should.
    registry.register("ratings", "1", ADDR, Some(2)).await;
    assert_eq!(registry.ids("ratings").await, ["1"]);
}

async fn expiry_wakes_blocking_queries(backend: Backend) {
    let registry = Registry::start(backend).await;
    registry.register("ratings", "1", ADDR, Some(1)).await;
    let registered = Instant::now();
    let index = registry.index("ratings").await;
    let watch = registry.watch("ratings", index, "30s").await;
    let reply = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the expiry answered the blocking query")
        .unwrap();
    let after = registered.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(3500),
        "answered {after:?} after registering with a 1 s TTL"
    );
    assert_eq!(reply.body["instances"], json!([]));
    assert!(reply.body["index"].as_u64().unwrap() > index);
}

// ---------------------------------------------------------------------------------------
// The parameterisation.

/// Runs each case against every store: `memory::<case>` and `etcd::<case>`.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Backend::Memory).await;
                }
            )*
        }

        #[cfg(feature = "etcd")]
        mod etcd {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(backend) = super::Backend::etcd() else {
                        return;
                    };
                    super::$case(backend).await;
                }
            )*
        }
    };
}

suite!(
    register_then_read_back,
    default_ttl_and_sorted_listings,
    unknown_services_are_empty_not_404,
    heartbeat_renews_without_moving_the_index,
    deregister_needs_the_lease_and_moves_the_index,
    identical_reregistration_issues_a_new_lease_only,
    metadata_change_moves_the_index,
    moving_an_id_to_another_address_needs_its_lease,
    a_live_id_at_the_same_address_cannot_be_taken_over_without_its_lease,
    the_holder_re_registers_at_once_with_its_lease,
    an_expired_lease_frees_the_id_for_anyone,
    instance_and_service_limits_are_429,
    blocking_query_returns_as_soon_as_the_set_changes,
    blocking_query_ignores_heartbeats_and_no_op_reregistrations,
    reads_without_a_current_index_answer_at_once,
    watching_an_unknown_service_wakes_on_its_first_registration,
    leases_expire_on_time_and_heartbeats_postpone_it,
    expiry_wakes_blocking_queries,
);
