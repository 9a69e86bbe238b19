//! Measures the registry on each store, in one run with one harness: heartbeat throughput,
//! and how long a change takes to reach a parked blocking query.
//!
//! ```sh
//! cargo run --release -p registry --features etcd --example store_bench
//! cargo run --release -p registry --features etcd --example store_bench -- --seconds 10 --workers 64
//! ```
//!
//! For each store (memory, then etcd: a single etcd member started on loopback ports with
//! its data in the system temp directory, killed at the end) it serves the registry's real
//! router over a loopback socket and:
//!
//! 1. registers `--instances` instances, then runs `--workers` concurrent clients that send
//!    heartbeats (`PUT .../heartbeat` with the lease) round-robin over them for
//!    `--seconds`, and reports heartbeats per second and their latency;
//! 2. `--rounds` times: parks a blocking query (`GET /v1/services/watched?index=N`), then
//!    registers or deregisters an instance of that service, and reports the time from
//!    sending the write to receiving the blocking query's answer.
//!
//! Load generator, registry and etcd share the machine, so the figures compare the stores
//! with each other on that machine; they are not capacity figures for a dedicated host.
//! The run is bounded: at most `--seconds` of heartbeats and `--rounds` watch rounds per
//! store.

// A measurement program: a failure is reported by panicking with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use registry::store::etcd::EtcdOptions;
use registry::store::{EtcdStore, MemoryStore, Store};
use registry::{AppState, Config, app};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Args {
    instances: usize,
    workers: usize,
    seconds: u64,
    rounds: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        instances: 100,
        workers: 32,
        seconds: 5,
        rounds: 200,
    };
    let mut raw = std::env::args().skip(1);
    // Bounded by the argument list.
    while let Some(flag) = raw.next() {
        let value: u64 = raw
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--instances" => args.instances = value.max(1) as usize,
            "--workers" => args.workers = value.max(1) as usize,
            "--seconds" => args.seconds = value.clamp(1, 120),
            "--rounds" => args.rounds = (value as usize).clamp(1, 10_000),
            other => panic!("unknown flag {other}; see the file's docs"),
        }
    }
    args
}

/// What one store measured.
struct Figures {
    store: &'static str,
    heartbeats: usize,
    heartbeat_errors: usize,
    elapsed: Duration,
    heartbeat_latency: Vec<Duration>,
    propagation: Vec<Duration>,
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let config = Config::default();

    let memory: Arc<dyn Store> = Arc::new(MemoryStore::new(config.store_limits()));
    let memory = measure("memory", memory, &config, args).await;

    let Some(etcd) = etcd_harness::EtcdCluster::start(1) else {
        eprintln!("store_bench: no etcd binary, so only the memory store was measured");
        print(&args, &[memory], None);
        return;
    };
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: etcd.endpoints(),
        limits: config.store_limits(),
        ..EtcdOptions::default()
    })
    .await
    .expect("connect to the etcd the bench started");
    let etcd_figures = measure("etcd", Arc::new(store), &config, args).await;
    let version = etcd_version();
    drop(etcd);
    print(&args, &[memory, etcd_figures], version.as_deref());
}

async fn measure(
    name: &'static str,
    store: Arc<dyn Store>,
    config: &Config,
    args: Args,
) -> Figures {
    let state = AppState::with_store(config, store);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn({
        let router = app(state.clone());
        async move { axum::serve(listener, router).await }
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.workers + 4)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Heartbeat throughput.
    let mut leases = Vec::with_capacity(args.instances);
    for i in 0..args.instances {
        let answer: Value = http
            .put(format!("{url}/v1/services/hb/instances/{i}"))
            .json(&json!({ "address": format!("http://127.0.0.1:{}", 10_000 + i), "ttl_secs": 60 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        leases.push((i, answer["lease"].as_str().unwrap().to_owned()));
    }
    let leases = Arc::new(leases);
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let workers: Vec<_> = (0..args.workers)
        .map(|worker| {
            let (http, url, leases) = (http.clone(), url.clone(), Arc::clone(&leases));
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0);
                let mut next = worker;
                // Bounded by `until`.
                while Instant::now() < until {
                    let (id, lease) = &leases[next % leases.len()];
                    next += args.workers;
                    let sent = Instant::now();
                    let answer = http
                        .put(format!("{url}/v1/services/hb/instances/{id}/heartbeat"))
                        .header("X-Lease", lease)
                        .send()
                        .await;
                    match answer {
                        Ok(answer) if answer.status() == 200 => latencies.push(sent.elapsed()),
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut heartbeat_latency = Vec::new();
    let mut heartbeat_errors = 0;
    for worker in workers {
        let (latencies, errors) = worker.await.unwrap();
        heartbeat_latency.extend(latencies);
        heartbeat_errors += errors;
    }
    let elapsed = started.elapsed();

    // Watch propagation: write, then time until the parked blocking query answers.
    let mut propagation = Vec::with_capacity(args.rounds);
    let mut lease: Option<String> = None;
    for _ in 0..args.rounds {
        let index: u64 = http
            .get(format!("{url}/v1/services/watched"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["index"]
            .as_u64()
            .unwrap();
        let parked = state.blocking_queries();
        let watch = tokio::spawn({
            let (http, url) = (http.clone(), url.clone());
            async move {
                let answer = http
                    .get(format!("{url}/v1/services/watched?index={index}&wait=30s"))
                    .send()
                    .await
                    .unwrap();
                let at = Instant::now();
                let body: Value = answer.json().await.unwrap();
                (at, body["index"].as_u64().unwrap())
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while state.blocking_queries() == parked {
            assert!(Instant::now() < deadline, "the blocking query never parked");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let instance = format!("{url}/v1/services/watched/instances/w");
        let sent = Instant::now();
        match lease.take() {
            None => {
                let answer: Value = http
                    .put(&instance)
                    .json(&json!({ "address": "http://127.0.0.1:9", "ttl_secs": 60 }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                lease = Some(answer["lease"].as_str().unwrap().to_owned());
            }
            Some(old) => {
                let answer = http
                    .delete(&instance)
                    .header("X-Lease", old)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), 204);
            }
        }
        let (answered, new_index) = tokio::time::timeout(Duration::from_secs(10), watch)
            .await
            .expect("the blocking query answered")
            .unwrap();
        assert!(new_index > index, "the change moved the index");
        propagation.push(answered.saturating_duration_since(sent));
    }

    state.shutdown().trigger();
    server.abort();
    Figures {
        store: name,
        heartbeats: heartbeat_latency.len(),
        heartbeat_errors,
        elapsed,
        heartbeat_latency,
        propagation,
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn etcd_version() -> Option<String> {
    let output = std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines().next().map(|l| l.trim().to_owned())
}

fn print(args: &Args, figures: &[Figures], etcd: Option<&str>) {
    println!(
        "{} instances, {} concurrent heartbeat clients for {} s; {} watch rounds; {} cores{}",
        args.instances,
        args.workers,
        args.seconds,
        args.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        etcd.map(|v| format!("; {v}")).unwrap_or_default()
    );
    println!();
    println!(
        "| store | heartbeats/s | heartbeat p50 | heartbeat p99 | errors | watch propagation p50 | p90 | p99 | max |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in figures {
        let mut hb = f.heartbeat_latency.clone();
        let mut prop = f.propagation.clone();
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            f.store,
            f.heartbeats as f64 / f.elapsed.as_secs_f64(),
            ms(percentile(&mut hb, 50.0)),
            ms(percentile(&mut hb, 99.0)),
            f.heartbeat_errors,
            ms(percentile(&mut prop, 50.0)),
            ms(percentile(&mut prop, 90.0)),
            ms(percentile(&mut prop, 99.0)),
            ms(percentile(&mut prop, 100.0)),
        );
    }
}
