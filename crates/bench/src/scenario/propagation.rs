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

use std::time::{Duration, Instant};

use discovery_client::{Event, RegistryDiscovery, ServiceClient};
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
    section.note(
        "For context (not run here): Eureka's defaults (30 s client registry fetch, 30 s heartbeats, \
         30 s response cache on the server) take 30 s or more, up to about 90 s, to propagate a change.",
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
