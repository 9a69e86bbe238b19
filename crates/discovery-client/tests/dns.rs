//! `DnsDiscovery` against a real name server: dnsmasq on a loopback port (see the
//! dns-harness crate), with fake ratings instances on 127.0.0.1, 127.0.0.2 and 127.0.0.3
//! behind one name. Records change while a client calls; the server stops answering; the
//! name goes away for longer than the grace; SRV records name two ports on one host; a
//! refused connection makes the client look again before the TTL runs out.
//!
//! Each test skips (printing why) when dnsmasq is not installed, and fails then when `CI`
//! is set.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use discovery_client::discovery::InstanceStream;
use discovery_client::discovery::dns::{SRV_PORT, SRV_PRIORITY, SRV_TARGET, SRV_WEIGHT};
use discovery_client::{DnsDiscovery, Error, Event, ServiceClient, Source};
use dns_harness::{Config, NameServer};
use fake_ratings::{Behaviour, FakeRatings};
use futures::TryStreamExt;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tower::discover::Change;

/// The name the instances are found under.
const NAME: &str = "ratings.test";

/// How long a test waits for a condition before failing.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, serde::Deserialize)]
struct Rating {
    instance: u32,
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// `n` fake instances on 127.0.0.1..=n, all on one port that was free on every address.
async fn instances_on_one_port(n: u8) -> (u16, Vec<FakeRatings>) {
    for _ in 0..50 {
        let first = TcpListener::bind((ip(1), 0))
            .await
            .expect("bind 127.0.0.1:0");
        let port = first.local_addr().expect("address").port();
        let mut listeners = vec![first];
        for last in 2..=n {
            match TcpListener::bind((ip(last), port)).await {
                Ok(listener) => listeners.push(listener),
                Err(_) => break,
            }
        }
        if listeners.len() == usize::from(n) {
            let fakes = listeners
                .into_iter()
                .zip(1..)
                .map(|(listener, i)| FakeRatings::start_on(i, Behaviour::Ratings, listener))
                .collect();
            return (port, fakes);
        }
    }
    panic!("no port free on 127.0.0.1..={n} in 50 tries");
}

/// A client of `discovery` with a short timeout; breakers retest after 30 s.
fn client(discovery: DnsDiscovery) -> ServiceClient {
    ServiceClient::builder("ratings")
        .discovery(discovery)
        .timeout(Duration::from_millis(500))
        .cache_ttl(Duration::from_millis(50))
        .build()
        .expect("client")
}

/// The ids of the instances the client uses now, sorted.
fn ids(client: &ServiceClient) -> Vec<String> {
    let mut ids: Vec<String> = client.instances().into_iter().map(|i| i.id).collect();
    ids.sort();
    ids
}

/// Waits (at most [`PATIENCE`]) until the client uses exactly `want`; returns when it did.
async fn until_ids(client: &ServiceClient, want: &[String]) -> Instant {
    let deadline = Instant::now() + PATIENCE;
    // Bounded by the deadline; each pass sleeps 1 ms.
    loop {
        if ids(client) == want {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "client uses {:?}, not {want:?}",
            ids(client)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The next discovery-health event (outage or recovery), at most `within`.
async fn next_health(events: &mut broadcast::Receiver<Event>, within: Duration) -> Option<Event> {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(event @ (Event::DiscoveryOutage { .. } | Event::DiscoveryRecovered { .. })) => {
                    return event;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("client gone"),
            }
        }
    };
    tokio::time::timeout(within, wait).await.ok()
}

fn id(last: u8, port: u16) -> String {
    format!("127.0.0.{last}:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_added_and_removed_are_followed_within_the_ttl_while_calling() {
    let (port, _fakes) = instances_on_one_port(3).await;
    let Some(dns) = NameServer::start(&Config::ttl(1).host(ip(1), NAME)) else {
        return;
    };
    let client = client(DnsDiscovery::a(NAME, port).name_servers([dns.address()]));
    until_ids(&client, &[id(1, port)]).await;

    // A caller all along: every call must succeed, whatever the records do.
    let caller = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut calls = 0;
            loop {
                let rating = client.get_json::<Rating>("/ratings/widget").await;
                assert!(rating.is_ok(), "call {calls} failed: {rating:?}");
                calls += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // 50 changes, each adding or removing one of 127.0.0.2 and .3 (127.0.0.1 stays).
    let mut present = [true, false, false];
    let mut delays = Vec::new();
    for change in 0..50 {
        let flip = 1 + change % 2;
        present[flip] = !present[flip];
        let hosts: Vec<(IpAddr, &str)> = (0..3)
            .filter(|&i| present[i])
            .map(|i| (ip(i as u8 + 1), NAME))
            .collect();
        let want: Vec<String> = (0..3)
            .filter(|&i| present[i])
            .map(|i| id(i as u8 + 1, port))
            .collect();
        dns.set_hosts(&hosts);
        let changed = Instant::now();
        let seen = until_ids(&client, &want).await;
        delays.push(seen - changed);
    }
    assert!(
        !caller.is_finished(),
        "the caller stopped: {:?}",
        caller.await
    );
    caller.abort();
    delays.sort();
    let p50 = delays[delays.len() / 2];
    let p99 = delays[delays.len() * 99 / 100];
    eprintln!("propagation over 50 changes, TTL 1 s: p50 {p50:?}, p99 {p99:?}");
    assert!(
        p99 <= Duration::from_millis(1_100),
        "p99 {p99:?} over TTL + 100 ms: {delays:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_server_that_stops_answering_keeps_the_last_set_and_recovers_once() {
    let (port, _fakes) = instances_on_one_port(2).await;
    let config = Config::ttl(1).host(ip(1), NAME).host(ip(2), NAME);
    let Some(dns) = NameServer::start(&config) else {
        return;
    };
    let discovery = DnsDiscovery::a(NAME, port)
        .name_servers([dns.address()])
        .query_timeout(Duration::from_millis(200));
    let client = client(discovery);
    let mut events = client.subscribe();
    let both = [id(1, port), id(2, port)];
    until_ids(&client, &both).await;

    dns.pause();
    let outage = next_health(&mut events, PATIENCE).await;
    let Some(Event::DiscoveryOutage { reason, .. }) = outage else {
        panic!("no outage reported: {outage:?}");
    };
    assert!(reason.contains("keeping the last 2 instances"), "{reason}");
    // Several more lookups fail meanwhile (each within 0.4 s, retried after 1 s, 2 s).
    assert_eq!(
        next_health(&mut events, Duration::from_secs(4)).await,
        None,
        "one outage report, not one per failed lookup"
    );
    assert_eq!(ids(&client), both, "the last set is kept");
    for _ in 0..4 {
        client
            .get_json::<Rating>("/ratings/widget")
            .await
            .expect("calls go on");
    }

    dns.resume();
    assert_eq!(
        next_health(&mut events, PATIENCE).await,
        Some(Event::DiscoveryRecovered {
            service: "ratings".into()
        })
    );
    assert_eq!(
        next_health(&mut events, Duration::from_secs(3)).await,
        None,
        "recovery reported once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_longer_than_the_grace_empties_the_set_and_the_cache_still_answers() {
    let (port, _fakes) = instances_on_one_port(1).await;
    let Some(dns) = NameServer::start(&Config::ttl(1).host(ip(1), NAME)) else {
        return;
    };
    let grace = Duration::from_secs(2);
    let discovery = DnsDiscovery::a(NAME, port)
        .name_servers([dns.address()])
        .empty_grace(grace);
    let client = client(discovery);
    let mut events = client.subscribe();
    until_ids(&client, &[id(1, port)]).await;
    let cached = client
        .get_json_cached::<Rating>("/ratings/widget")
        .await
        .expect("a live answer");
    assert_eq!(cached.source, Source::Live);

    dns.set_hosts(&[]);
    let gone = Instant::now();
    let outage = next_health(&mut events, PATIENCE).await;
    let Some(Event::DiscoveryOutage { reason, .. }) = outage else {
        panic!("no outage reported: {outage:?}");
    };
    assert!(reason.contains("NXDOMAIN"), "{reason}");
    assert_eq!(ids(&client), [id(1, port)], "kept during the grace");

    let emptied = until_ids(&client, &[]).await;
    assert!(
        emptied - gone >= grace,
        "emptied after {:?}, before the grace",
        emptied - gone
    );
    let started = Instant::now();
    let error = client
        .get_json::<Rating>("/ratings/widget")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::AllInstancesDown { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(100), "fails fast");
    let stale = client
        .get_json_cached::<Rating>("/ratings/widget")
        .await
        .expect("the cached answer");
    assert_eq!(stale.source, Source::Stale);
    assert_eq!(stale.value.instance, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_with_two_ports_on_one_host_gives_two_instances() {
    let one = FakeRatings::start(1, Behaviour::Ratings).await;
    let two = FakeRatings::start(2, Behaviour::Ratings).await;
    let port =
        |fake: &FakeRatings| -> u16 { fake.url.rsplit(':').next().unwrap().parse().unwrap() };
    let (p1, p2) = (port(&one), port(&two));
    let srv = "_http._tcp.ratings.test";
    let config = Config::ttl(1)
        .host(ip(1), "host.test")
        .srv(srv, "host.test", p1, 0, 10)
        .srv(srv, "host.test", p2, 1, 20);
    let Some(dns) = NameServer::start(&config) else {
        return;
    };
    let client = client(DnsDiscovery::srv(srv).name_servers([dns.address()]));
    let mut want = vec![id(1, p1), id(1, p2)];
    want.sort();
    until_ids(&client, &want).await;

    // The SRV fields, as the instances carry them.
    let mut stream = InstanceStream::new(
        "ratings",
        DnsDiscovery::srv(srv).name_servers([dns.address()]),
    )
    .expect("in a runtime");
    for _ in 0..2 {
        let change = tokio::time::timeout(PATIENCE, stream.try_next())
            .await
            .expect("a change in time")
            .expect("no error")
            .expect("a change");
        let Change::Insert(_, instance) = change else {
            panic!("an insert first: {change:?}");
        };
        let metadata = &instance.metadata;
        assert_eq!(metadata[SRV_TARGET], "host.test");
        let (priority, weight) = if metadata[SRV_PORT] == p1.to_string() {
            ("0", "10")
        } else {
            ("1", "20")
        };
        assert_eq!(
            (&*metadata[SRV_PRIORITY], &*metadata[SRV_WEIGHT]),
            (priority, weight)
        );
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(
            client
                .get_json::<Rating>("/ratings/widget")
                .await
                .expect("rating")
                .instance,
        );
    }
    seen.sort();
    assert_eq!(seen, [1, 1, 2, 2], "both ports take turns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_looks_again_before_the_ttl_runs_out() {
    // 127.0.0.1 serves; nothing listens on 127.0.0.2 at that port.
    let (port, _fakes) = instances_on_one_port(1).await;
    let config = Config::ttl(30).host(ip(1), NAME).host(ip(2), NAME);
    let Some(dns) = NameServer::start(&config) else {
        return;
    };
    let client = client(DnsDiscovery::a(NAME, port).name_servers([dns.address()]));
    let mut events = client.subscribe();
    until_ids(&client, &[id(1, port), id(2, port)]).await;

    // The pod at 127.0.0.2 is gone: its record goes, but the TTL says 30 s.
    dns.set_hosts(&[(ip(1), NAME)]);
    let gone = Instant::now();
    for _ in 0..2 {
        // Round-robin: one of the two calls goes to 127.0.0.2 (refused, then retried).
        client
            .get_json::<Rating>("/ratings/widget")
            .await
            .expect("retried on 127.0.0.1");
    }
    let opened = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(Event::BreakerOpened { address, .. }) = events.recv().await {
                return address;
            }
        }
    })
    .await
    .expect("a breaker opened");
    assert_eq!(opened, format!("http://{}", id(2, port)));
    let removed = until_ids(&client, &[id(1, port)]).await;
    assert!(
        removed - gone < Duration::from_secs(3),
        "removed {:?} after its record went: the refused connection did not trigger a lookup",
        removed - gone
    );
}
