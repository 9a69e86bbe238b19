//! Scenario 4, registry scale: 10,000 instances in 1,000 services register with one registry
//! and then heartbeat as fast as the machine allows, while 1,000 blocking queries (one per
//! service, as 1,000 clients would) wait for changes and a changer registers a new instance
//! in a different service every 10 ms. Measured: heartbeats per second, how long a blocking
//! query takes to wake after a change is sent, and the registry's resident memory.
//!
//! Heartbeats and watches use [`crate::raw_http`] so the load generator, which shares the
//! two cores with the registry, takes as little CPU from it as it can; the registry's own
//! CPU use is reported too, so the figure can be scaled to a machine where it has the cores
//! to itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::Plan;
use crate::latency::{Latencies, show};
use crate::procs::cpu_time_of;
use crate::raw_http::{Connection, request, request_json};
use crate::report::{Section, Table};
use crate::servers::Binaries;

/// Runs scenario 4 and reports it.
pub async fn run(bins: &Binaries, plan: &Plan) -> Result<Section, String> {
    let registry = bins.registry(&[]).await?;
    let host = registry.url.trim_start_matches("http://").to_string();
    let addr: SocketAddr = host
        .parse()
        .map_err(|e| format!("registry address {host}: {e}"))?;
    let mem_start = registry.process.memory_kib();

    // Register every instance.
    eprintln!(
        "  registry: registering {} instances",
        plan.registry_instances
    );
    let started = Instant::now();
    let leases = register_all(addr, &host, plan).await?;
    let register_time = started.elapsed();
    let mem_registered = registry.process.memory_kib();

    // Park one blocking query per service.
    let base = Instant::now();
    let pending: Arc<Vec<AtomicU64>> = Arc::new(
        (0..plan.registry_services)
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let parked = Arc::new(AtomicUsize::new(0));
    let wakes = Arc::new(std::sync::Mutex::new(Latencies::new()));
    let mut watchers = Vec::new();
    for s in 0..plan.registry_services {
        watchers.push(tokio::spawn(watch(
            addr,
            host.clone(),
            s,
            base,
            Arc::clone(&pending),
            Arc::clone(&parked),
            Arc::clone(&wakes),
        )));
    }
    let park_deadline = Instant::now() + Duration::from_secs(20);
    while parked.load(Ordering::Relaxed) < plan.registry_services {
        if Instant::now() >= park_deadline {
            return Err(format!(
                "only {} of {} blocking queries parked within 20 s",
                parked.load(Ordering::Relaxed),
                plan.registry_services
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Heartbeat as fast as possible, with changes every 10 ms.
    eprintln!(
        "  registry: heartbeats for {} s on {} connections",
        plan.registry_window.as_secs_f64(),
        plan.registry_connections
    );
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_registry_before = registry.process.cpu_time();
    let cpu_self_before = cpu_time_of(std::process::id() as i32);
    let phase_start = Instant::now();
    let leases = Arc::new(leases);
    let mut beaters = Vec::new();
    for c in 0..plan.registry_connections {
        beaters.push(tokio::spawn(heartbeat(
            addr,
            Arc::clone(&leases),
            c,
            plan.registry_connections,
            Arc::clone(&stop),
        )));
    }
    let changer = tokio::spawn(change(
        addr,
        host.clone(),
        plan.registry_services,
        base,
        Arc::clone(&pending),
        Arc::clone(&stop),
    ));
    tokio::time::sleep(plan.registry_window).await;
    stop.store(true, Ordering::Relaxed);
    let mut beats = 0u64;
    let mut errors = 0u64;
    for b in beaters {
        let (ok, bad) = b.await.map_err(|e| format!("heartbeat task: {e}"))?;
        beats += ok;
        errors += bad;
    }
    let phase = phase_start.elapsed();
    let cpu_registry = registry
        .process
        .cpu_time()
        .zip(cpu_registry_before)
        .map(|(a, b)| a.saturating_sub(b));
    let cpu_self = cpu_time_of(std::process::id() as i32)
        .zip(cpu_self_before)
        .map(|(a, b)| a.saturating_sub(b));
    let changes = changer.await.map_err(|e| format!("changer: {e}"))?;
    // Let the last wake-ups arrive, then stop the watchers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for w in watchers {
        w.abort();
    }
    let mem_end = registry.process.memory_kib();
    let wakes = std::mem::take(&mut *wakes.lock().unwrap_or_else(|p| p.into_inner()));

    let rate = beats as f64 / phase.as_secs_f64();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut section = Section::new("4. Registry scale");
    section.note(format!(
        "{} instances in {} services registered with one registry ({} in {:.2} s, {:.0}/s), then \
         heartbeats for {:.0} s from {} keep-alive connections as fast as they are answered, while {} \
         blocking queries (one per service) wait and a changer registers a new instance in the next \
         service every 10 ms. Load generator and registry share the machine's cores.",
        plan.registry_instances,
        plan.registry_services,
        leases.len(),
        register_time.as_secs_f64(),
        leases.len() as f64 / register_time.as_secs_f64(),
        phase.as_secs_f64(),
        plan.registry_connections,
        plan.registry_services,
    ));
    let mut table = Table::new(["what", "value"]);
    table.row([
        "heartbeats answered 200".to_string(),
        format!("{beats} ({errors} errors)"),
    ]);
    table.row(["heartbeats per second".to_string(), format!("{rate:.0}")]);
    if let Some(cpu) = cpu_registry {
        let cores = cpu.as_secs_f64() / phase.as_secs_f64();
        table.row([
            "registry CPU during heartbeats".to_string(),
            format!("{cores:.2} cores"),
        ]);
        table.row([
            "heartbeats per registry CPU-second".to_string(),
            format!("{:.0}", beats as f64 / cpu.as_secs_f64().max(1e-9)),
        ]);
    }
    if let Some(cpu) = cpu_self {
        table.row([
            "load generator (this process) CPU".to_string(),
            format!("{:.2} cores", cpu.as_secs_f64() / phase.as_secs_f64()),
        ]);
    }
    table.row([
        "blocking-query wake-ups measured".to_string(),
        format!("{} of {changes} changes", wakes.count()),
    ]);
    table.row([
        "wake-up after change sent, p50 / p99 / max".to_string(),
        format!(
            "{} / {} / {}",
            show(wakes.percentile(50.0)),
            show(wakes.percentile(99.0)),
            show(wakes.max())
        ),
    ]);
    for (label, mem) in [
        ("registry RSS at start", mem_start),
        ("registry RSS after registering", mem_registered),
        ("registry RSS at end (peak)", mem_end),
    ] {
        if let Some((rss, hwm)) = mem {
            table.row([
                label.to_string(),
                format!("{:.1} MiB (peak {:.1} MiB)", mib(rss), mib(hwm)),
            ]);
        }
    }
    section.table(&table);
    section.target(
        rate >= 50_000.0,
        format!("≥ 50,000 heartbeats/s: {rate:.0}/s"),
    );
    if let Some((_, hwm)) = mem_end {
        section.target(
            mib(hwm) < 100.0,
            format!("registry memory < 100 MB: peak {:.1} MiB", mib(hwm)),
        );
    }
    section.end_list();
    Ok(section)
}

/// Registers every instance over 64 connections; returns (heartbeat request, ...) per instance.
async fn register_all(addr: SocketAddr, host: &str, plan: &Plan) -> Result<Vec<Vec<u8>>, String> {
    let connections = 64;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let host = host.to_string();
        let (total, services) = (plan.registry_instances, plan.registry_services);
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(addr).await.map_err(|e| e.to_string())?;
            let mut beats = Vec::new();
            for i in (c..total).step_by(connections) {
                let (service, id) = (format!("s{}", i % services), format!("i{i}"));
                let path = format!("/v1/services/{service}/instances/{id}");
                let body = format!(
                    "{{\"address\":\"http://127.0.0.1:{}\",\"ttl_secs\":300}}",
                    10_000 + i
                );
                let answer = conn
                    .send(&request_json("PUT", &path, &host, &body))
                    .await
                    .map_err(|e| format!("register {path}: {e}"))?;
                if answer.status != 200 {
                    return Err(format!(
                        "register {path} answered {}: {}",
                        answer.status,
                        String::from_utf8_lossy(&answer.body)
                    ));
                }
                let lease = serde_json::from_slice::<serde_json::Value>(&answer.body)
                    .ok()
                    .and_then(|v| v["lease"].as_str().map(str::to_string))
                    .ok_or("no lease in the registration answer")?;
                beats.push(request(
                    "PUT",
                    &format!("{path}/heartbeat"),
                    &host,
                    &[("X-Lease", &lease)],
                ));
            }
            Ok::<_, String>(beats)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| format!("register task: {e}"))??);
    }
    Ok(all)
}

/// Sends the heartbeats of instances `c, c + n, c + 2n, ...` in turn until `stop`; returns
/// (answered 200, other).
async fn heartbeat(
    addr: SocketAddr,
    beats: Arc<Vec<Vec<u8>>>,
    c: usize,
    n: usize,
    stop: Arc<AtomicBool>,
) -> (u64, u64) {
    let Ok(mut conn) = Connection::open(addr).await else {
        return (0, 1);
    };
    let mine: Vec<usize> = (c..beats.len()).step_by(n).collect();
    let (mut ok, mut bad) = (0u64, 0u64);
    // Bounded in count as well as by `stop`.
    for k in 0..50_000_000usize {
        if stop.load(Ordering::Relaxed) || mine.is_empty() {
            break;
        }
        match conn.send(&beats[mine[k % mine.len()]]).await {
            Ok(answer) if answer.status == 200 => ok += 1,
            Ok(_) => bad += 1,
            Err(_) => {
                bad += 1;
                match Connection::open(addr).await {
                    Ok(fresh) => conn = fresh,
                    Err(_) => break,
                }
            }
        }
    }
    (ok, bad)
}

/// One blocking query loop on service `s`: records how long after the change was sent each
/// wake-up came.
#[allow(clippy::too_many_arguments)]
async fn watch(
    addr: SocketAddr,
    host: String,
    s: usize,
    base: Instant,
    pending: Arc<Vec<AtomicU64>>,
    parked: Arc<AtomicUsize>,
    wakes: Arc<std::sync::Mutex<Latencies>>,
) -> Result<(), String> {
    let mut conn = Connection::open(addr).await.map_err(|e| e.to_string())?;
    let path = format!("/v1/services/s{s}");
    let first = conn
        .send(&request("GET", &path, &host, &[]))
        .await
        .map_err(|e| e.to_string())?;
    let mut index = index_of(&first.body)?;
    let mut announced = false;
    // Bounded: each service changes at most a few times per run.
    for _ in 0..10_000 {
        let query = request("GET", &format!("{path}?index={index}&wait=60s"), &host, &[]);
        let send = conn.send(&query);
        if !announced {
            announced = true;
            parked.fetch_add(1, Ordering::Relaxed);
        }
        let answer = send.await.map_err(|e| e.to_string())?;
        let woke = base.elapsed().as_nanos() as u64;
        let sent = pending[s].swap(0, Ordering::Relaxed);
        if sent != 0 {
            let mut wakes = wakes.lock().unwrap_or_else(|p| p.into_inner());
            wakes.record(Duration::from_nanos(woke.saturating_sub(sent)));
        }
        index = index_of(&answer.body)?;
    }
    Ok(())
}

fn index_of(body: &[u8]) -> Result<u64, String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["index"].as_u64())
        .ok_or_else(|| format!("no index in {}", String::from_utf8_lossy(body)))
}

/// Every 10 ms until `stop`, registers a new instance in the next service, noting when.
/// Returns how many changes it made.
async fn change(
    addr: SocketAddr,
    host: String,
    services: usize,
    base: Instant,
    pending: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let Ok(mut conn) = Connection::open(addr).await else {
        return 0;
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut made = 0u64;
    for n in 0..1_000_000usize {
        ticker.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let s = n % services;
        let body = format!(
            "{{\"address\":\"http://127.0.0.1:{}\",\"ttl_secs\":300}}",
            40_000 + n % 20_000
        );
        let req = request_json(
            "PUT",
            &format!("/v1/services/s{s}/instances/w{n}"),
            &host,
            &body,
        );
        // Noted before sending: the wake-up time includes the change's own round trip.
        pending[s].store(base.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
        if conn.send(&req).await.is_err() {
            break;
        }
        made += 1;
    }
    made
}
