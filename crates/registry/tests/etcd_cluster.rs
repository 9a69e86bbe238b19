//! A registry on a three-member etcd cluster loses its etcd leader: registrations,
//! heartbeats and blocking queries keep working, and nothing registered is lost.
#![cfg(feature = "etcd")]
// Tests panic on unexpected errors; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_harness::EtcdCluster;
use registry::Config;
use registry::store::EtcdStore;
use registry::store::etcd::EtcdOptions;
use serde_json::{Value, json};
use tokio::time::Instant;

use support::server::Server;
use support::{get_json, ids};

const INSTANCES: usize = 12;
/// Short, so that instances whose heartbeats stopped working would expire within the test,
/// but longer than the failover plus an election on a loaded 2-core machine.
const TTL_SECS: u64 = 4;
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);

/// The index of the member that is the cluster's leader.
async fn leader(cluster: &EtcdCluster) -> usize {
    for i in 0..cluster.len() {
        let mut client = etcd_client::Client::connect([cluster.endpoint(i)], None)
            .await
            .unwrap();
        let status = client.status().await.unwrap();
        if status.header().map(|h| h.member_id()) == Some(status.leader()) {
            return i;
        }
    }
    panic!("no member says it is the leader");
}

/// One heartbeat or blocking-query answer, as the background tasks saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    /// HTTP status, or 0 for a transport error.
    status: u16,
    /// For blocking queries: the ids answered.
    ids: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_etcd_leader_loses_nothing() {
    let Some(mut cluster) = EtcdCluster::start(3) else {
        return;
    };
    let leader = leader(&cluster).await;
    // The store starts on the first endpoint: make that the leader, so the kill below
    // tests both the store's move to another member and etcd's election.
    let mut endpoints = cluster.endpoints();
    endpoints.rotate_left(leader);
    let store = EtcdStore::connect(EtcdOptions {
        endpoints,
        ..EtcdOptions::default()
    })
    .await
    .unwrap();
    let server = Server::start_with_store(Config::default(), Arc::new(store)).await;
    let url = server.url.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let instance = |id: &str| format!("{url}/v1/services/ratings/instances/{id}");

    let mut leases = Vec::new();
    for i in 0..INSTANCES {
        let answer = http
            .put(instance(&i.to_string()))
            .json(&json!({ "address": format!("http://127.0.0.1:{}", 9000 + i), "ttl_secs": TTL_SECS }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let lease = answer.json::<Value>().await.unwrap()["lease"]
            .as_str()
            .unwrap()
            .to_owned();
        leases.push((i.to_string(), lease));
    }

    let running = Arc::new(AtomicBool::new(true));
    // Every instance heartbeats every 500 ms on its own, as a ratings instance would
    // (bounded by `running`, which the test clears below).
    let heartbeaters: Vec<_> = leases
        .into_iter()
        .map(|(id, lease)| {
            let (http, running, url) = (http.clone(), Arc::clone(&running), url.clone());
            tokio::spawn(async move {
                let mut seen: Vec<(String, Seen)> = Vec::new();
                let heartbeat = format!("{url}/v1/services/ratings/instances/{id}/heartbeat");
                while running.load(Ordering::Relaxed) {
                    let answer = http.put(&heartbeat).header("X-Lease", &lease).send().await;
                    let status = answer.map_or(0, |a| a.status().as_u16());
                    let at = Instant::now();
                    let ids = Vec::new();
                    seen.push((id.clone(), Seen { at, status, ids }));
                    tokio::time::sleep(HEARTBEAT_EVERY).await;
                }
                seen
            })
        })
        .collect();
    // A client watching the service with blocking queries, as discovery does.
    let watcher = tokio::spawn({
        let (http, running, url) = (http.clone(), Arc::clone(&running), url.clone());
        async move {
            let mut seen = Vec::new();
            let mut index = 0;
            while running.load(Ordering::Relaxed) {
                let answer = http
                    .get(format!("{url}/v1/services/ratings?index={index}&wait=2s"))
                    .send()
                    .await;
                let (status, body) = match answer {
                    Ok(answer) => (answer.status().as_u16(), answer.json::<Value>().await.ok()),
                    Err(_) => (0, None),
                };
                let ids = body
                    .as_ref()
                    .and_then(|b| b["instances"].as_array())
                    .map(|list| {
                        list.iter()
                            .map(|i| i["id"].as_str().unwrap_or_default().to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(next) = body.as_ref().and_then(|b| b["index"].as_u64()) {
                    index = next;
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                seen.push(Seen {
                    at: Instant::now(),
                    status,
                    ids,
                });
            }
            seen
        }
    });

    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.kill(leader);
    let killed = Instant::now();

    // A new registration goes through (instances retry on 503, and so does this).
    let registered_at = loop {
        let answer = http
            .put(instance("new"))
            .json(&json!({ "address": "http://127.0.0.1:9999", "ttl_secs": 30 }))
            .send()
            .await;
        if answer.as_ref().is_ok_and(|a| a.status() == 200) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no registration succeeded within 10 s of losing the leader: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Run past one TTL after the kill, plus the election etcd adds to every lease when a new
    // leader takes over and the time to notice an expiry: an instance whose heartbeats
    // stopped working at the kill would have expired by then.
    tokio::time::sleep(Duration::from_secs(TTL_SECS) + Duration::from_millis(2500)).await;
    running.store(false, Ordering::Relaxed);
    let mut heartbeats = Vec::new();
    for heartbeater in heartbeaters {
        heartbeats.extend(heartbeater.await.unwrap());
    }
    let watched = watcher.await.unwrap();

    // Nothing registered was lost: no heartbeat ever found its instance gone, and the
    // listing has every instance and the new one.
    let since_kill = |s: &Seen| s.at.saturating_duration_since(killed);
    let lost: Vec<_> = heartbeats
        .iter()
        .filter(|(_, s)| s.status == 404)
        .map(|(id, s)| (id, since_kill(s)))
        .collect();
    assert!(
        lost.is_empty(),
        "instances were lost (id, time after the kill): {lost:?}"
    );
    let listing = get_json(&http, &format!("{url}/v1/services/ratings")).await;
    let mut expected: Vec<String> = (0..INSTANCES).map(|i| i.to_string()).collect();
    expected.push("new".into());
    expected.sort();
    assert_eq!(ids(&listing), expected);

    // Heartbeats kept working: every instance had a successful one well after the kill,
    // and failures (503 while etcd elected a new leader) stopped within seconds.
    let settled = killed + Duration::from_secs(4);
    for id in (0..INSTANCES).map(|i| i.to_string()) {
        assert!(
            heartbeats
                .iter()
                .any(|(other, s)| *other == id && s.status == 200 && s.at > settled),
            "instance {id} had no successful heartbeat after the cluster settled"
        );
    }
    let failed: Vec<_> = heartbeats
        .iter()
        .filter(|(_, s)| s.status != 200)
        .map(|(id, s)| (id, s.status, since_kill(s)))
        .collect();
    assert!(
        failed.iter().all(|(_, _, after)| killed + *after < settled),
        "heartbeats still failed 4 s after the kill (id, status, time after the kill): {failed:?}"
    );

    // The watch kept working: it never answered with fewer instances than were
    // registered, and it saw the new instance.
    let short: Vec<_> = watched
        .iter()
        .filter(|s| s.status == 200 && s.ids.len() < INSTANCES)
        .collect();
    assert!(
        short.is_empty(),
        "a blocking query answered with instances missing: {short:?}"
    );
    assert!(
        watched
            .iter()
            .any(|s| s.at > killed && s.ids.iter().any(|id| id == "new")),
        "the blocking queries never reported the instance registered after the kill"
    );
    println!(
        "leader killed: first registration after {registered_at:?}; {} of {} heartbeats failed",
        failed.len(),
        heartbeats.len()
    );

    server.stop().await.unwrap();
}
