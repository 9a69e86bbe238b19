//! Scenario 3, discovery propagation: how long from an instance registering with the
//! registry until our client (watching with blocking queries) has it and calls it, and from
//! its deregistering until the client has dropped it.
//!
//! Each trial registers instance `p` of a service nobody else uses (its address is a real
//! ratings instance that serves but does not register itself), waits for the client's
//! `InstanceAdded` event and for `instances()` to list it, then calls the service once (the
//! only instance, so the call must land on it); then deregisters it and waits for
//! `InstanceRemoved` and for `instances()` to drop it. Times include the registration's own
//! HTTP round trip.
//!
//! The same run then measures `DnsDiscovery` against a real name server (dnsmasq, from the
//! dns-harness crate) with TTL 1 s and 5 s: each trial adds an A record for the name the
//! client follows and waits until `instances()` lists its address, then removes it and
//! waits until it is dropped. Times start once dnsmasq has re-read its records; each change
//! is made at a different point of the lookup cycle (a tenth of the TTL further each
//! trial), so the figures cover the whole cycle rather than one phase of it.

use std::time::{Duration, Instant};

use std::net::{IpAddr, Ipv4Addr};

use discovery_client::{DnsDiscovery, Event, RegistryDiscovery, ServiceClient};
use dns_harness::{Config, NameServer};
use tokio::sync::broadcast;

use crate::config::Plan;
use crate::contender::Rating;
use crate::latency::{Latencies, show};
use crate::report::{Section, Table};
use crate::servers::Binaries;

const SERVICE: &str = "ratings-propagation";
const ID: &str = "p";
/// The longest one trial may wait for any step.
const STEP_LIMIT: Duration = Duration::from_secs(5);

/// Runs scenario 3 and reports it.
pub async fn run(bins: &Binaries, plan: &Plan) -> Result<Section, String> {
    let registry = bins.registry(&[]).await?;
    let target = bins.ratings(9, None).await?;
    let client = ServiceClient::builder(SERVICE)
        .discovery(RegistryDiscovery::new(&registry.url))
        .cache_ttl(Duration::ZERO)
        .build()
        .map_err(|e| format!("ServiceClient: {e}"))?;
    let mut events = client.subscribe();
    let http = reqwest::Client::builder()
        .timeout(STEP_LIMIT)
        .build()
        .map_err(|e| e.to_string())?;
    let instance_url = format!("{}/v1/services/{SERVICE}/instances/{ID}", registry.url);

    let mut seen = Latencies::new();
    let mut used = Latencies::new();
    let mut dropped = Latencies::new();
    // One unmeasured trial first: the client's blocking query is then surely parked.
    for trial in 0..=plan.propagation_trials {
        let started = Instant::now();
        let lease = register(&http, &instance_url, &target.url).await?;
        wait_event(&mut events, true).await?;
        wait_listed(&client, true).await?;
        let seen_after = started.elapsed();
        let answer: Rating = client
            .get_json("/ratings/widget")
            .await
            .map_err(|e| format!("call after registration: {e}"))?;
        let used_after = started.elapsed();
        if answer.instance != 9 {
            return Err(format!("answered by instance {}, not 9", answer.instance));
        }

        let started = Instant::now();
        let gone = http
            .delete(&instance_url)
            .header("X-Lease", &lease)
            .send()
            .await
            .map_err(|e| format!("deregister: {e}"))?;
        if !gone.status().is_success() {
            return Err(format!("deregister answered {}", gone.status()));
        }
        wait_event(&mut events, false).await?;
        wait_listed(&client, false).await?;
        let dropped_after = started.elapsed();
        if trial > 0 {
            seen.record(seen_after);
            used.record(used_after);
            dropped.record(dropped_after);
        }
    }
    drop(client);

    let mut section = Section::new("3. Discovery propagation");
    section.note(format!(
        "{} trials against one registry; our client watches with blocking queries. Times start \
         before the registration (or deregistration) request is sent, so they include its HTTP round trip.",
        plan.propagation_trials
    ));
    let mut table = Table::new(["from → to", "p50", "p99", "max"]);
    for (what, l) in [
        ("register → client lists the instance", &seen),
        ("register → first call answered by it", &used),
        ("deregister → client no longer lists it", &dropped),
    ] {
        table.row([
            what.to_string(),
            show(l.percentile(50.0)),
            show(l.percentile(99.0)),
            show(l.max()),
        ]);
    }
    section.table(&table);
    let worst = seen.percentile(99.0).max(dropped.percentile(99.0));
    section.target(
        worst < Duration::from_millis(50),
        format!("p99 < 50 ms both ways: {}", show(worst)),
    );
    section.end_list();

    let mut dns_table = Table::new([
        "DNS, TTL",
        "record added → listed p50",
        "p99",
        "record removed → dropped p50",
        "p99",
    ]);
    let mut ran = false;
    for ttl in [1, 5] {
        eprintln!("scenario 3: DNS propagation, TTL {ttl} s");
        if let Some((added, removed)) = dns_trials(ttl, plan.dns_propagation_trials).await? {
            ran = true;
            dns_table.row([
                format!("{ttl} s"),
                show(added.percentile(50.0)),
                show(added.percentile(99.0)),
                show(removed.percentile(50.0)),
                show(removed.percentile(99.0)),
            ]);
        }
    }
    if ran {
        section.note(format!(
            "DnsDiscovery against dnsmasq on loopback, {} trials per TTL (min_ttl 1 s, max_ttl 30 s): \
             the name is looked up again when the TTL runs out, so a change waits half a TTL on \
             average and a whole TTL at worst.",
            plan.dns_propagation_trials
        ));
        section.table(&dns_table);
    } else {
        section.note("DNS propagation skipped: no dnsmasq installed (Debian's dnsmasq-base).");
    }
    section.note(
        "For context (not run here): Eureka's defaults (30 s client registry fetch, 30 s heartbeats, \
         30 s response cache on the server) take 30 s or more, up to about 90 s, to propagate a change. \
         ginepro (tonic) polls DNS every 10 s; gRPC's DNS resolver re-resolves at most every 30 s, \
         and only when something (a connection failure) triggers it.",
    );
    Ok(section)
}

async fn register(http: &reqwest::Client, url: &str, address: &str) -> Result<String, String> {
    let answer = http
        .put(url)
        .json(&serde_json::json!({ "address": address, "ttl_secs": 60 }))
        .send()
        .await
        .map_err(|e| format!("register: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!("register answered {}", answer.status()));
    }
    let body: serde_json::Value = answer.json().await.map_err(|e| format!("register: {e}"))?;
    body["lease"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no lease in {body}"))
}

/// Waits for `InstanceAdded` (or `InstanceRemoved`) of our instance.
async fn wait_event(events: &mut broadcast::Receiver<Event>, added: bool) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + STEP_LIMIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| format!("no instance event within {STEP_LIMIT:?}"))?;
        match event {
            Ok(Event::InstanceAdded { id, .. }) if added && id == ID => return Ok(()),
            Ok(Event::InstanceRemoved { id, .. }) if !added && id == ID => return Ok(()),
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return Err("events closed".into()),
        }
    }
}

/// Waits until `instances()` lists (or no longer lists) our instance.
async fn wait_listed(client: &ServiceClient, listed: bool) -> Result<(), String> {
    let deadline = Instant::now() + STEP_LIMIT;
    while client.instances().iter().any(|i| i.id == ID) != listed {
        if Instant::now() >= deadline {
            return Err(format!("instances() did not change within {STEP_LIMIT:?}"));
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// The name the DNS trials change.
const DNS_NAME: &str = "ratings-propagation.test";

/// `trials` DNS changes with answers of TTL `ttl` seconds: how long from a record added
/// (removed) until the client lists (drops) its address. `None` without dnsmasq.
async fn dns_trials(ttl: u32, trials: usize) -> Result<Option<(Latencies, Latencies)>, String> {
    let ip = |last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    let Some(dns) = NameServer::start(&Config::ttl(ttl).host(ip(1), DNS_NAME)) else {
        return Ok(None);
    };
    // Nothing connects to the instances: the port only names them.
    let port = 8080;
    let client = ServiceClient::builder(SERVICE)
        .discovery(DnsDiscovery::a(DNS_NAME, port).name_servers([dns.address()]))
        .cache_ttl(Duration::ZERO)
        .build()
        .map_err(|e| format!("ServiceClient: {e}"))?;
    let (first, second) = (format!("127.0.0.1:{port}"), format!("127.0.0.2:{port}"));
    let limit = Duration::from_secs(u64::from(ttl) + 5);
    wait_id(&client, &first, true, limit).await?;
    let mut added = Latencies::new();
    let mut removed = Latencies::new();
    let cycle = Duration::from_secs(u64::from(ttl));
    for trial in 0..trials {
        // A different point of the lookup cycle each time.
        let phase = cycle.mul_f64((trial % 10) as f64 / 10.0);
        tokio::time::sleep(phase).await;
        dns.set_hosts(&[(ip(1), DNS_NAME), (ip(2), DNS_NAME)]);
        let started = Instant::now();
        wait_id(&client, &second, true, limit).await?;
        added.record(started.elapsed());

        tokio::time::sleep(phase).await;
        dns.set_hosts(&[(ip(1), DNS_NAME)]);
        let started = Instant::now();
        wait_id(&client, &second, false, limit).await?;
        removed.record(started.elapsed());
    }
    Ok(Some((added, removed)))
}

/// Waits (at most `limit`) until `instances()` lists (or no longer lists) instance `id`.
async fn wait_id(
    client: &ServiceClient,
    id: &str,
    listed: bool,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while client.instances().iter().any(|i| i.id == id) != listed {
        if Instant::now() >= deadline {
            return Err(format!("DNS: instances() did not change within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Ok(())
}
