//! The real programs under test, and the faults that can be done to them.
//!
//! A [`Cluster`] is one registry, N ratings instances (each with its admin endpoint on, behind
//! a random token, and a short registration TTL so it notices a restarted registry within a
//! second) and one market, all started through the `system-tests` harness on free loopback
//! ports. Instances and the registry can be killed and started again on the same port, so
//! clients see the same address come back, as they would after a crash and a restart.
//! Each instance keeps its registration lease in a file (as `make startRatings` does), so
//! one restarted after `kill -9` takes its registration back at once: the registry refuses
//! the id to anyone without the live lease.
//!
//! With [`ClusterConfig::isolation`], instance 1 runs in its own network namespace behind a
//! veth pair ([`NetNs`]), so packet faults can be done to its traffic alone; the registry
//! then listens on the veth's root-side address, which every program can reach.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use system_tests::Proc;
use tokio::time::Instant;

use crate::black_hole::BlackHole;
use crate::delay_relay::DelayRelay;
use crate::load::Truth;
use crate::netns::NetNs;
use crate::store::RegistryStore;

/// The id under which the black hole is registered as a ratings instance.
pub const BLACK_HOLE_ID: &str = "hang";
/// The instance that runs in its own network namespace, with [`ClusterConfig::isolation`].
pub const ISOLATED: u16 = 1;
/// The port the isolated instance listens on in its namespace, where nothing else listens.
const ISOLATED_PORT: u16 = 8001;

/// How the isolated instance (in its own network namespace) is reached from the root
/// namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// At its own address across the veth: the market's calls and its heartbeats cross it.
    Direct,
    /// Through a [`DelayRelay`] in this process, on loopback, which reaches the instance
    /// across the veth: the instance advertises the relay's address.
    Relayed,
}

/// How the cluster is set up.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Ratings instances, numbered from 1.
    pub instances: u16,
    /// The market's per-attempt timeout.
    pub timeout: Duration,
    /// The market's breaker retest delay.
    pub retest_delay: Duration,
    /// Each instance's registration TTL (it heartbeats every third of it).
    pub instance_ttl: Duration,
    /// Whether the registry keeps its registrations in a 3-member etcd cluster (started
    /// with the cluster) rather than in its own memory.
    pub etcd: bool,
    /// Whether instance 1 runs in its own network namespace, and how it is reached.
    pub isolation: Option<Isolation>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            instances: 3,
            timeout: Duration::from_millis(300),
            retest_delay: Duration::from_secs(1),
            instance_ttl: Duration::from_secs(3),
            etcd: false,
            isolation: None,
        }
    }
}

/// One ratings instance: its number, its port (kept across restarts), its process if alive.
struct Instance {
    /// Instance number, also its id in the registry.
    n: u16,
    /// The port it listens on, the same after a restart.
    port: u16,
    /// The running process; `None` while it is killed.
    proc: Option<Proc>,
}

/// The running programs.
pub struct Cluster {
    /// How it was set up.
    config: ClusterConfig,
    /// The registry process; `None` while it is stopped.
    registry: Option<Proc>,
    /// The registry's address (loopback, or the veth's root side with an isolated
    /// instance) and port, the same after a restart.
    registry_addr: SocketAddr,
    /// The ratings instances, in order.
    instances: Vec<Instance>,
    /// The market.
    market: Proc,
    /// The token every instance's admin endpoint requires.
    admin_token: String,
    /// For admin calls and registry calls.
    http: reqwest::Client,
    /// The black hole and its registration lease, while registered.
    black_hole: Option<(BlackHole, String)>,
    /// Instance id by address, to name the instances in breaker log lines.
    ids_by_address: BTreeMap<String, String>,
    /// Where the instances keep their lease files.
    lease_dir: LeaseDir,
    /// The isolated instance's namespace and relay: declared after the programs, so they
    /// are stopped before the namespace is deleted.
    isolated: Option<Isolated>,
    /// The registry's store (etcd members included): declared last, so it is dropped
    /// after the programs that use it.
    store: RegistryStore,
}

/// A private directory for the instances' lease files, removed when dropped.
struct LeaseDir(PathBuf);

impl LeaseDir {
    fn create() -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "chaos-leases-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self(dir))
    }

    /// Instance `n`'s lease file.
    fn file(&self, n: u16) -> PathBuf {
        self.0.join(format!("ratings-{n}.lease"))
    }
}

impl Drop for LeaseDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The isolated instance's network namespace, and the relay it is reached through.
struct Isolated {
    /// The namespace and its veth pair.
    netns: NetNs,
    /// The relay to the instance, with [`Isolation::Relayed`].
    relay: Option<DelayRelay>,
}

impl Isolated {
    async fn create(isolation: Isolation) -> Result<Isolated, String> {
        let netns = tokio::task::block_in_place(NetNs::create)?;
        let relay = match isolation {
            Isolation::Direct => None,
            Isolation::Relayed => {
                let target = SocketAddr::from((netns.inner_ip(), ISOLATED_PORT));
                let relay = DelayRelay::start(target)
                    .await
                    .map_err(|e| format!("delay relay: {e}"))?;
                Some(relay)
            }
        };
        Ok(Isolated { netns, relay })
    }

    /// The address the instance registers: the relay's, or its own across the veth.
    fn advertised(&self) -> String {
        self.relay.as_ref().map_or_else(
            || format!("http://{}:{ISOLATED_PORT}", self.netns.inner_ip()),
            |relay| relay.url().to_owned(),
        )
    }
}

impl Cluster {
    /// Starts the registry, the instances and the market, and waits until the registry
    /// lists every instance.
    pub async fn start(config: ClusterConfig) -> Result<Cluster, String> {
        let store = if config.etcd {
            RegistryStore::start_etcd().await?
        } else {
            RegistryStore::Memory
        };
        let isolated = match config.isolation {
            Some(isolation) => Some(Isolated::create(isolation).await?),
            None => None,
        };
        let registry_ip = isolated
            .as_ref()
            .map_or(Ipv4Addr::LOCALHOST, |i| i.netns.root_ip());
        let registry = store.start_registry(&format!("{registry_ip}:0")).await;
        let registry_addr = SocketAddr::new(IpAddr::V4(registry_ip), port_of(&registry.url)?);
        let admin_token = format!("{:032x}", rand::random::<u128>());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let lease_dir = LeaseDir::create()?;
        let mut cluster_instances = Vec::new();
        let mut ids_by_address = BTreeMap::new();
        for n in 1..=config.instances {
            let isolated = isolated.as_ref().filter(|_| n == ISOLATED);
            let launch = Launch {
                registry: &registry.url,
                config: &config,
                admin_token: &admin_token,
                lease_file: &lease_dir.file(n),
                isolated,
            };
            let port = if isolated.is_some() { ISOLATED_PORT } else { 0 };
            let proc = launch.start(n, port).await;
            let port = port_of(&proc.url)?;
            let advertised = isolated.map_or_else(|| proc.url.clone(), Isolated::advertised);
            ids_by_address.insert(advertised, n.to_string());
            cluster_instances.push(Instance {
                n,
                port,
                proc: Some(proc),
            });
        }
        let ids: Vec<String> = (1..=config.instances).map(|n| n.to_string()).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        system_tests::wait_for_instances(&registry, "ratings", &id_refs).await;
        let timeout = humantime::format_duration(config.timeout).to_string();
        let retest = humantime::format_duration(config.retest_delay).to_string();
        let market = system_tests::market(
            &registry,
            &["--timeout", &timeout, "--retest-delay", &retest],
        )
        .await;
        Ok(Cluster {
            config,
            registry: Some(registry),
            registry_addr,
            instances: cluster_instances,
            market,
            admin_token,
            http,
            black_hole: None,
            ids_by_address,
            lease_dir,
            isolated,
            store,
        })
    }

    /// Waits (at most 20 s) until the market knows every instance and shows every rating
    /// live, and returns those ratings: the truth later answers are checked against.
    pub async fn warm_up(&self) -> Result<Truth, String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.live_ratings().await {
                Ok(truth) => return Ok(truth),
                Err(why) => last = why,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("the market did not warm up in 20 s: {last}"))
    }

    async fn live_ratings(&self) -> Result<Truth, String> {
        let health = self
            .get_json(&format!("{}/health", self.market.url))
            .await?;
        let known = health["ratings"]["instances"]
            .as_array()
            .map_or(0, Vec::len);
        if known != usize::from(self.config.instances) {
            return Err(format!("the market knows {known} instances"));
        }
        let answer = self
            .get_json(&format!("{}/api/items", self.market.url))
            .await?;
        let mut truth = Truth::new();
        for item in answer["items"].as_array().into_iter().flatten() {
            let id = item["id"].as_str().unwrap_or_default();
            match (item["rating"].as_u64(), item["rating_source"].as_str()) {
                (Some(rating), Some("live")) => {
                    truth.insert(id.to_owned(), rating);
                }
                _ => return Err(format!("{id} is not live yet: {item}")),
            }
        }
        if truth.len() == 4 {
            Ok(truth)
        } else {
            Err(format!("{} items", truth.len()))
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        response
            .json::<Value>()
            .await
            .map_err(|e| format!("GET {url}: {e}"))
    }

    /// The market's base URL.
    pub fn market_url(&self) -> &str {
        &self.market.url
    }

    /// The market's process id.
    pub fn market_pid(&self) -> u32 {
        self.market.pid()
    }

    /// How many lines the market has logged so far.
    pub fn market_log_len(&self) -> usize {
        self.market.lines().len()
    }

    /// The market's log lines from line `from` on.
    pub fn market_log_since(&self, from: usize) -> Vec<String> {
        let mut lines = self.market.lines();
        lines.drain(..from.min(lines.len()));
        lines
    }

    /// Instance id by address, for reading breaker log lines.
    pub fn ids_by_address(&self) -> &BTreeMap<String, String> {
        &self.ids_by_address
    }

    fn instance(&mut self, n: u16) -> Result<&mut Instance, String> {
        self.instances
            .iter_mut()
            .find(|i| i.n == n)
            .ok_or_else(|| format!("no ratings instance {n}"))
    }

    fn running(&mut self, n: u16) -> Result<&mut Proc, String> {
        self.instance(n)?
            .proc
            .as_mut()
            .ok_or_else(|| format!("ratings instance {n} is not running"))
    }

    /// Ctrl-Z: SIGSTOP instance `n`.
    pub fn pause(&mut self, n: u16) -> Result<(), String> {
        self.running(n)?.pause();
        Ok(())
    }

    /// `fg`: SIGCONT instance `n`.
    pub fn resume(&mut self, n: u16) -> Result<(), String> {
        self.running(n)?.resume();
        Ok(())
    }

    /// `kill -9` instance `n`: no deregistration, its lease runs out on its own.
    pub fn kill(&mut self, n: u16) -> Result<(), String> {
        let instance = self.instance(n)?;
        if let Some(mut proc) = instance.proc.take() {
            proc.kill();
        }
        Ok(())
    }

    /// Starts instance `n` again on its old port (it re-registers at the same address).
    pub async fn restart(&mut self, n: u16) -> Result<(), String> {
        let Some(instance) = self.instances.iter().find(|i| i.n == n) else {
            return Err(format!("no ratings instance {n}"));
        };
        if instance.proc.is_some() {
            return Ok(());
        }
        let port = instance.port;
        let registry = self.registry_url();
        let launch = Launch {
            registry: &registry,
            config: &self.config,
            admin_token: &self.admin_token,
            lease_file: &self.lease_dir.file(n),
            isolated: self.isolated.as_ref().filter(|_| n == ISOLATED),
        };
        let proc = launch.start(n, port).await;
        self.instance(n)?.proc = Some(proc);
        Ok(())
    }

    /// Sets instance `n`'s injected faults through its admin endpoint, e.g.
    /// `{"latency_ms": 1500}`.
    pub async fn set_faults(&mut self, n: u16, faults: Value) -> Result<(), String> {
        let url = format!("{}/admin/faults", self.running(n)?.url);
        let response = self
            .http
            .put(&url)
            .bearer_auth(&self.admin_token)
            .json(&faults)
            .send()
            .await
            .map_err(|e| format!("PUT {url}: {e}"))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            let body = response.text().await.unwrap_or_default();
            Err(format!("PUT {url} {faults}: {status}: {body}"))
        }
    }

    /// Clears every injected fault of instance `n`.
    pub async fn heal(&mut self, n: u16) -> Result<(), String> {
        self.set_faults(
            n,
            json!({"latency_ms": 0, "error_rate": 0.0, "garbage_rate": 0.0, "throttle_rate": 0.0}),
        )
        .await
    }

    /// The registry's base URL (the same across restarts).
    pub fn registry_url(&self) -> String {
        format!("http://{}", self.registry_addr)
    }

    /// `kill -9` the registry: every registration it held is gone with it.
    pub fn kill_registry(&mut self) {
        if let Some(mut registry) = self.registry.take() {
            registry.kill();
        }
    }

    /// Starts a registry on the old port, on the same store: empty with the memory store,
    /// with every registration still there with etcd.
    pub async fn restart_registry(&mut self) {
        if self.registry.is_none() {
            let listen = self.registry_addr.to_string();
            self.registry = Some(self.store.start_registry(&listen).await);
        }
    }

    /// The isolated instance's network namespace, to hurt its packets.
    pub fn netns(&mut self) -> Result<&mut NetNs, String> {
        self.isolated
            .as_mut()
            .map(|i| &mut i.netns)
            .ok_or_else(|| "no instance runs in its own network namespace".to_owned())
    }

    /// The relay the isolated instance is reached through, to slow it down.
    pub fn delay_relay(&self) -> Result<&DelayRelay, String> {
        self.isolated
            .as_ref()
            .and_then(|i| i.relay.as_ref())
            .ok_or_else(|| "the isolated instance is not reached through a relay".to_owned())
    }

    /// The registry's store, to hurt its etcd members.
    pub fn store(&mut self) -> &mut RegistryStore {
        &mut self.store
    }

    /// An HTTP client for calls to the registry (5 s limit).
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// The ratings instance ids the registry lists now.
    pub async fn registered(&self) -> Result<Vec<String>, String> {
        let answer = self
            .get_json(&format!("{}/v1/services/ratings", self.registry_url()))
            .await?;
        let mut ids: Vec<String> = answer["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Starts a [`BlackHole`] and registers it as ratings instance [`BLACK_HOLE_ID`], through
    /// the registry's HTTP API as any instance would.
    pub async fn add_black_hole(&mut self) -> Result<(), String> {
        let hole = BlackHole::start()
            .await
            .map_err(|e| format!("black hole: {e}"))?;
        let url = format!(
            "{}/v1/services/ratings/instances/{BLACK_HOLE_ID}",
            self.registry_url()
        );
        let answer = self
            .http
            .put(&url)
            .json(&json!({"address": hole.url(), "ttl_secs": 3600}))
            .send()
            .await
            .map_err(|e| format!("PUT {url}: {e}"))?;
        let status = answer.status();
        let body: Value = answer.json().await.map_err(|e| format!("PUT {url}: {e}"))?;
        let lease = body["lease"]
            .as_str()
            .ok_or_else(|| format!("PUT {url}: {status}: {body}"))?
            .to_owned();
        self.ids_by_address
            .insert(hole.url().to_owned(), BLACK_HOLE_ID.to_owned());
        self.black_hole = Some((hole, lease));
        Ok(())
    }

    /// Connections the black hole accepted, if it is there.
    pub fn black_hole_connections(&self) -> usize {
        self.black_hole
            .as_ref()
            .map_or(0, |(hole, _)| hole.accepted())
    }

    /// The black hole's URL, if it is there.
    pub fn black_hole_url(&self) -> Option<String> {
        self.black_hole
            .as_ref()
            .map(|(hole, _)| hole.url().to_owned())
    }

    /// The most requests the black hole held at once since the last reset, if it is there.
    pub fn black_hole_max_held(&self) -> Option<usize> {
        self.black_hole.as_ref().map(|(hole, _)| hole.max_held())
    }

    /// Starts counting the black hole's most-held afresh.
    pub fn reset_black_hole_max_held(&self) {
        if let Some((hole, _)) = &self.black_hole {
            hole.reset_max_held();
        }
    }

    /// The market's per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// Waits (at most `limit`) until the market has logged a line containing `needle`.
    pub async fn wait_for_market_log(&self, needle: &str, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while self.market.count(needle) == 0 {
            if Instant::now() >= deadline {
                return Err(format!(
                    "the market did not log {needle:?} within {limit:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Stops everything: the market first, then the instances (which deregister), then the
    /// registry. Processes are sent SIGTERM; whatever is left is killed on drop.
    pub async fn shut_down(mut self) {
        if let Some((_, lease)) = &self.black_hole {
            let url = format!(
                "{}/v1/services/ratings/instances/{BLACK_HOLE_ID}",
                self.registry_url()
            );
            let _ = self.http.delete(&url).header("X-Lease", lease).send().await;
        }
        self.market.terminate().await;
        for instance in &mut self.instances {
            if let Some(proc) = instance.proc.as_mut() {
                proc.terminate().await;
            }
        }
        if let Some(registry) = self.registry.as_mut() {
            registry.terminate().await;
        }
    }
}

/// How to start one ratings instance.
struct Launch<'a> {
    /// The registry's base URL.
    registry: &'a str,
    /// The cluster's settings (the registration TTL).
    config: &'a ClusterConfig,
    /// The token its admin endpoint requires.
    admin_token: &'a str,
    /// Where it keeps its lease.
    lease_file: &'a Path,
    /// Its namespace and relay, if it is the isolated instance.
    isolated: Option<&'a Isolated>,
}

impl Launch<'_> {
    /// Starts instance `n` on `port` (0 for a free one), in its namespace if it is isolated.
    async fn start(&self, n: u16, port: u16) -> Proc {
        let instance = n.to_string();
        let ttl = humantime::format_duration(self.config.instance_ttl).to_string();
        let lease_file = self.lease_file.to_string_lossy();
        let ip = self
            .isolated
            .map_or(Ipv4Addr::LOCALHOST, |i| i.netns.inner_ip());
        let listen = format!("{ip}:{port}");
        let mut args = vec![
            "--instance",
            &instance,
            "--listen",
            &listen,
            "--registry",
            self.registry,
            "--ttl",
            &ttl,
            "--admin",
            "--admin-token",
            self.admin_token,
            "--lease-file",
            &lease_file,
        ];
        let Some(isolated) = self.isolated else {
            return Proc::start("ratings-service", &args).await;
        };
        let advertised = isolated.advertised();
        args.extend(["--allow-remote", "--advertise", &advertised]);
        Proc::start_in_netns(isolated.netns.name(), "ratings-service", &args).await
    }
}

fn port_of(url: &str) -> Result<u16, String> {
    url.rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .ok_or_else(|| format!("no port in {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_of_a_base_url() {
        assert_eq!(port_of("http://127.0.0.1:8001"), Ok(8001));
        assert_eq!(port_of("http://127.0.0.1:8001/"), Ok(8001));
        assert!(port_of("http://localhost").is_err());
    }
}
