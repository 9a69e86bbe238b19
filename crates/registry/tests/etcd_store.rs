//! What only the etcd store does: registries sharing one etcd, surviving a registry restart
//! and an etcd outage, the documented key layout, the `--store etcd` binary, and lease
//! expiries counted by every registry process but deregistrations by none.
//!
//! Each test starts its own etcd on loopback ports (and is skipped, saying so, when no etcd
//! binary is installed).
#![cfg(feature = "etcd")]
// Tests panic on unexpected errors; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use etcd_harness::EtcdCluster;
use registry::Config;
use registry::store::EtcdStore;
use registry::store::etcd::EtcdOptions;
use serde_json::{Value, json};
use tokio::process::Command;
use tokio::time::Instant;

use support::binary::spawn_binary;
use support::metrics::{sample, scrape};
use support::server::Server;
use support::{get_json, ids};

/// A registry served over a real socket on the etcd at `endpoints`.
async fn start(endpoints: Vec<String>) -> Server {
    start_with(EtcdOptions {
        endpoints,
        ..EtcdOptions::default()
    })
    .await
}

async fn start_with(options: EtcdOptions) -> Server {
    let store = EtcdStore::connect(options).await.unwrap();
    Server::start_with_store(Config::default(), Arc::new(store)).await
}

/// A registration body for `address`, with a 30 s lease.
fn at(address: &str) -> Value {
    json!({ "address": address, "ttl_secs": 30 })
}

#[tokio::test]
async fn registries_on_one_etcd_share_registrations_and_watches() {
    let Some(etcd) = EtcdCluster::start(1) else {
        return;
    };
    let a = start(etcd.endpoints()).await;
    let b = start(etcd.endpoints()).await;
    let http = reqwest::Client::new();

    let lease = a
        .register(&http, "ratings", "1", &at("http://127.0.0.1:8001"))
        .await;
    let seen = b.service(&http, "ratings").await;
    let index = seen["index"].as_u64().unwrap();
    // B reads its own mirror; A waited for its own, and both follow the same etcd.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seen = seen;
    while ids(&seen).is_empty() {
        assert!(Instant::now() < deadline, "B never saw A's registration");
        tokio::time::sleep(Duration::from_millis(10)).await;
        seen = b.service(&http, "ratings").await;
    }
    let index = seen["index"].as_u64().unwrap().max(index);
    assert_eq!(
        a.service(&http, "ratings").await["index"].as_u64(),
        Some(index),
        "indexes are etcd revisions, the same in every registry"
    );

    // A blocking query on B wakes on a write through A.
    let watch = tokio::spawn({
        let http = http.clone();
        let url = format!("{}/v1/services/ratings?index={index}&wait=30s", b.url);
        async move { get_json(&http, &url).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !watch.is_finished(),
        "the query blocks while nothing changes"
    );
    let changed = Instant::now();
    a.register(&http, "ratings", "2", &at("http://127.0.0.1:8002"))
        .await;
    let body = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("B's blocking query was answered")
        .unwrap();
    assert!(changed.elapsed() < Duration::from_secs(1));
    assert_eq!(ids(&body), ["1", "2"]);

    // The lease works through any registry; a wrong one fails through any registry.
    let heartbeat = format!("{}/heartbeat", b.instance("ratings", "1"));
    let answer = http
        .put(&heartbeat)
        .header("X-Lease", &lease)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer = http
        .put(&heartbeat)
        .header("X-Lease", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    let hijack = http
        .put(b.instance("ratings", "1"))
        .json(&json!({ "address": "http://10.0.0.66:80" }))
        .send()
        .await
        .unwrap();
    assert_eq!(hijack.status(), 409);

    // A registry started later (or restarted) serves what is there, index included.
    let before = a.service(&http, "ratings").await;
    a.stop().await.unwrap();
    let c = start(etcd.endpoints()).await;
    let after = c.service(&http, "ratings").await;
    assert_eq!(ids(&after), ["1", "2"]);
    assert!(
        after["index"].as_u64() >= before["index"].as_u64(),
        "the index never goes backwards across restarts"
    );
    let answer = http
        .delete(c.instance("ratings", "1"))
        .header("X-Lease", &lease)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    assert_eq!(ids(&c.service(&http, "ratings").await), ["2"]);
    b.stop().await.unwrap();
    c.stop().await.unwrap();
}

#[tokio::test]
async fn an_etcd_outage_keeps_reads_answering_and_writes_fail_with_503() {
    let Some(mut etcd) = EtcdCluster::start(1) else {
        return;
    };
    // Short timeouts, so the refused writes below come back quickly.
    let registry = start_with(EtcdOptions {
        endpoints: etcd.endpoints(),
        attempt_timeout: Duration::from_millis(500),
        call_timeout: Duration::from_secs(1),
        ..EtcdOptions::default()
    })
    .await;
    let http = reqwest::Client::new();
    let lease = registry
        .register(&http, "ratings", "1", &at("http://127.0.0.1:8001"))
        .await;
    let before = registry.service(&http, "ratings").await;

    etcd.kill(0);
    let started = Instant::now();
    let answer = http
        .put(registry.instance("ratings", "2"))
        .json(&json!({ "address": "http://127.0.0.1:8002" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "error": "the registry's store is unavailable; retry later" })
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the write gave up after {:?}",
        started.elapsed()
    );
    let heartbeat = format!("{}/heartbeat", registry.instance("ratings", "1"));
    let answer = http
        .put(&heartbeat)
        .header("X-Lease", &lease)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    // Reads answer at once from the last known view.
    let started = Instant::now();
    assert_eq!(registry.service(&http, "ratings").await, before);
    assert!(started.elapsed() < Duration::from_secs(1));

    etcd.restart(0);
    // Writes work again once the member is back (the store retries on its own).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = http
            .put(&heartbeat)
            .header("X-Lease", &lease)
            .send()
            .await
            .unwrap();
        if answer.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "heartbeats never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    registry
        .register(&http, "ratings", "2", &at("http://127.0.0.1:8002"))
        .await;
    assert_eq!(ids(&registry.service(&http, "ratings").await), ["1", "2"]);
    registry.stop().await.unwrap();
}

#[tokio::test]
async fn keys_hold_the_documented_value_and_no_secret() {
    let Some(etcd) = EtcdCluster::start(1) else {
        return;
    };
    let registry = start(etcd.endpoints()).await;
    let http = reqwest::Client::new();
    let answer = http
        .put(registry.instance("ratings", "7"))
        .json(&json!({ "address": "http://127.0.0.1:8007", "metadata": { "zone": "a" }, "ttl_secs": 9 }))
        .send()
        .await
        .unwrap();
    let lease = answer.json::<Value>().await.unwrap()["lease"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    let found = client.get("/discovery/ratings/7", None).await.unwrap();
    let kv = &found.kvs()[0];
    let value: Value = serde_json::from_slice(kv.value()).unwrap();
    assert_eq!(value["address"], "http://127.0.0.1:8007");
    assert_eq!(value["metadata"], json!({ "zone": "a" }));
    assert_eq!(value["ttl_secs"], 9);
    assert_eq!(value["lease_sha256"].as_str().unwrap().len(), 64);
    assert!(
        !kv.value_str().unwrap().contains(&lease),
        "the secret is not stored"
    );
    let granted = client.lease_time_to_live(kv.lease(), None).await.unwrap();
    let grace = i64::try_from(registry::store::etcd::DEFAULT_OUTAGE_GRACE.as_secs()).unwrap();
    assert!(
        (1..=9 + grace).contains(&granted.ttl()) && granted.granted_ttl() == 9 + grace,
        "the key's etcd lease has the registration's TTL and the outage grace: {} of {}",
        granted.ttl(),
        granted.granted_ttl()
    );
    registry.stop().await.unwrap();
}

/// The registry binary's arguments for the etcd store at `endpoints`, on port 0.
fn on_etcd(endpoints: &str) -> [&str; 6] {
    [
        "--listen",
        "127.0.0.1:0",
        "--store",
        "etcd",
        "--etcd-endpoints",
        endpoints,
    ]
}

#[tokio::test]
async fn the_binary_serves_from_etcd_and_refuses_an_unreachable_one() {
    let Some(etcd) = EtcdCluster::start(1) else {
        return;
    };
    let endpoints = etcd.endpoints().join(",");
    let (mut child, url, log) = spawn_binary(&on_etcd(&endpoints)).await;
    assert!(
        log.iter().any(|line| line.contains("using the etcd store")),
        "the registry says it uses etcd"
    );
    let http = reqwest::Client::new();
    let answer = http
        .put(format!("{url}/v1/services/ratings/instances/1"))
        .json(&json!({ "address": "http://127.0.0.1:8001" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let mut client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    let found = client.get("/discovery/ratings/1", None).await.unwrap();
    assert_eq!(found.kvs().len(), 1, "the registration is in etcd");
    child.kill().await.unwrap();

    // Nothing listens on this port: the registry says so and exits before binding.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(env!("CARGO_BIN_EXE_registry"))
            .args(on_etcd(&dead))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("exits within the connect timeout")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot use etcd at") && stderr.contains(&dead),
        "{stderr}"
    );
}

#[tokio::test]
async fn each_registry_counts_an_expiry_once_and_a_deregistration_never() {
    let Some(etcd) = EtcdCluster::start(1) else {
        return;
    };
    let endpoints = etcd.endpoints().join(",");
    let args = on_etcd(&endpoints);
    // Two processes, so each has its own counters, as in production.
    let (mut a_child, a, _) = spawn_binary(&args).await;
    let (mut b_child, b, _) = spawn_binary(&args).await;
    let http = reqwest::Client::new();
    let service = "expiring";
    let expiries = format!("registry_lease_expiries_total{{service=\"{service}\"}}");
    let instance = |url: &str, id: &str| format!("{url}/v1/services/{service}/instances/{id}");
    let register = |url: String, lease: Option<String>, ttl: u64| {
        let http = http.clone();
        async move {
            let mut request = http
                .put(url)
                .json(&json!({ "address": "http://127.0.0.1:8001", "ttl_secs": ttl }));
            if let Some(lease) = lease {
                request = request.header("X-Lease", lease);
            }
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 200);
            answer.json::<Value>().await.unwrap()["lease"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let listed = |url: String| {
        let http = http.clone();
        async move { ids(&get_json(&http, &format!("{url}/v1/services/{service}")).await) }
    };

    // Instance 1 sends no heartbeat: etcd deletes it when its 1 s lease runs out, and both
    // registries see that on their watches.
    register(instance(&a, "1"), None, 1).await;
    let lease = register(instance(&a, "2"), None, 30).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    for url in [&a, &b] {
        loop {
            let text = scrape(&http, url).await;
            if sample(&text, &expiries) >= 1.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no expiry counted by {url}: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(listed(url.clone()).await, ["2"]);
    }

    // Re-registering through B overwrites the key, and deregistering through B (another
    // process than the one that registered) deletes it: neither is an expiry.
    let lease = register(instance(&b, "2"), Some(lease), 30).await;
    let answer = http
        .delete(instance(&b, "2"))
        .header("X-Lease", &lease)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    // Once A has seen a later write, it has applied (and counted) the deletion before it.
    register(instance(&b, "3"), None, 30).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while listed(a.clone()).await != ["3"] {
        assert!(Instant::now() < deadline, "A never saw the deregistration");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for url in [&a, &b] {
        let text = scrape(&http, url).await;
        assert_eq!(
            sample(&text, &expiries),
            1.0,
            "{url} counts the expiry once and the deregistration not at all: {text}"
        );
        assert!(!text.contains("deregistered"), "{text}");
        let services = get_json(&http, &format!("{url}/v1/services")).await;
        assert!(!services.to_string().contains("deregistered"), "{services}");
    }

    // The deregistration's marker goes with the revoked lease.
    let mut client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    let markers = etcd_client::GetOptions::new()
        .with_prefix()
        .with_keys_only();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = client
            .get("/discovery/~deregistered/", Some(markers.clone()))
            .await
            .unwrap();
        if found.kvs().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the marker outlived its lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a_child.kill().await.unwrap();
    b_child.kill().await.unwrap();
}

/// A registry on `endpoints` whose etcd leases outlive a registry outage by `grace`.
async fn start_with_grace(endpoints: Vec<String>, grace: Duration) -> Server {
    start_with(EtcdOptions {
        endpoints,
        outage_grace: grace,
        ..EtcdOptions::default()
    })
    .await
}

/// Sends one heartbeat through `server`, expecting 200.
async fn heartbeat(http: &reqwest::Client, server: &Server, id: &str, lease: &str) {
    let answer = http
        .put(format!("{}/heartbeat", server.instance("ratings", id)))
        .header("X-Lease", lease)
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        200,
        "heartbeat of {id} through {}",
        server.url
    );
}

#[tokio::test]
async fn a_registry_down_for_longer_than_the_ttl_comes_back_to_every_registration() {
    let Some(etcd) = EtcdCluster::start(1) else {
        return;
    };
    let http = reqwest::Client::new();
    let ttl = json!({ "address": "http://127.0.0.1:8001", "ttl_secs": 2 });
    let before = start_with_grace(etcd.endpoints(), Duration::from_secs(30)).await;
    let alive = before.register(&http, "ratings", "1", &ttl).await;
    before.register(&http, "ratings", "2", &ttl).await;
    before.stop().await.unwrap();

    // Down for twice the TTL: nobody renews the leases, and etcd keeps both keys.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = start_with_grace(etcd.endpoints(), Duration::from_secs(30)).await;
    let started = Instant::now();
    assert_eq!(ids(&after.service(&http, "ratings").await), ["1", "2"]);

    // Instance 1 heartbeats again; instance 2 died during the outage and goes one TTL
    // after the restart (etcd says to the second), never earlier, while 1 stays.
    let mut gone_after = None;
    while Instant::now() < started + Duration::from_secs(6) {
        heartbeat(&http, &after, "1", &alive).await;
        let listed = ids(&after.service(&http, "ratings").await);
        match listed.as_slice() {
            [one, two] if one == "1" && two == "2" => {
                assert!(gone_after.is_none(), "2 came back: {listed:?}");
            }
            [one] if one == "1" => {
                gone_after.get_or_insert(started.elapsed());
            }
            _ => panic!(
                "listed {listed:?} {:?} after the restart",
                started.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone_after = gone_after.expect("the dead instance was never expired");
    assert!(
        gone_after >= Duration::from_millis(1800) && gone_after <= Duration::from_millis(4500),
        "the dead instance went {gone_after:?} after the restart (TTL 2 s)"
    );
    after.stop().await.unwrap();
}

#[tokio::test]
async fn heartbeats_through_another_registry_keep_an_instance_and_silence_expires_it_at_the_ttl() {
    let Some(etcd) = EtcdCluster::start(1) else {
        return;
    };
    let http = reqwest::Client::new();
    let grace = Duration::from_secs(30);
    let a = start_with_grace(etcd.endpoints(), grace).await;
    let b = start_with_grace(etcd.endpoints(), grace).await;
    let body = json!({ "address": "http://127.0.0.1:8001", "ttl_secs": 2 });
    let lease = a.register(&http, "ratings", "1", &body).await;

    // Every heartbeat goes to B; A, which took only the registration, looks the lease up
    // in etcd once the TTL has passed and sees it renewed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        heartbeat(&http, &b, "1", &lease).await;
        for server in [&a, &b] {
            assert_eq!(ids(&server.service(&http, "ratings").await), ["1"]);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Silent from now: gone from both within the TTL, a second for etcd's whole seconds and
    // a sweep, although its etcd lease has the grace left.
    let silent = Instant::now();
    loop {
        let listed = [
            ids(&a.service(&http, "ratings").await),
            ids(&b.service(&http, "ratings").await),
        ];
        if listed.iter().all(Vec::is_empty) {
            break;
        }
        assert!(
            silent.elapsed() < Duration::from_millis(4000),
            "still listed {listed:?} {:?} after the last heartbeat (TTL 2 s)",
            silent.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        silent.elapsed() >= Duration::from_millis(1500),
        "expired {:?} after the last heartbeat, before its TTL of 2 s",
        silent.elapsed()
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
