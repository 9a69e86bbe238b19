//! Where the chaos cluster's registry keeps its registrations: in its own memory (the
//! default), or in a 3-member etcd cluster on loopback, which outlives the registry process
//! and can itself be hurt (its leader killed, its quorum lost).

use std::time::Duration;

use etcd_harness::EtcdCluster;
use system_tests::Proc;

/// How long an etcd member may take to be elected leader, or to be healthy again.
const ETCD_WAIT: Duration = Duration::from_secs(20);

/// The registry's store, and how to start a registry on it.
pub enum RegistryStore {
    /// The registry's own memory: a restarted registry starts empty.
    Memory,
    /// A 3-member etcd cluster: a restarted registry finds every registration still there.
    Etcd {
        /// The members, on loopback ports; killed and removed on drop.
        etcd: EtcdCluster,
        /// `--store etcd --etcd-endpoints .. --etcd-prefix ..`.
        args: Vec<String>,
    },
}

impl RegistryStore {
    /// A fresh 3-member etcd cluster and a registry built with its `etcd` feature. Fails if
    /// either is missing (see [`etcd_unavailable`]).
    pub async fn start_etcd() -> Result<RegistryStore, String> {
        tokio::task::spawn_blocking(system_tests::registry_with_etcd)
            .await
            .map_err(|e| format!("building the registry with etcd: {e}"))??;
        let etcd = tokio::task::spawn_blocking(|| EtcdCluster::start(3))
            .await
            .map_err(|e| format!("starting etcd: {e}"))?
            .ok_or("no etcd binary (install etcd-server, or set ETCD_BIN)")?;
        let args = vec![
            "--store".to_owned(),
            "etcd".to_owned(),
            "--etcd-endpoints".to_owned(),
            etcd.endpoints().join(","),
            "--etcd-prefix".to_owned(),
            format!("/chaos-{:x}/", rand::random::<u64>()),
        ];
        Ok(RegistryStore::Etcd { etcd, args })
    }

    /// Starts a registry on this store, listening on `listen` (`127.0.0.1:0` for a free
    /// port; another address than loopback is passed with `--allow-remote`).
    pub async fn start_registry(&self, listen: &str) -> Proc {
        let mut all = vec!["--listen", listen];
        let loopback = listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|addr| addr.ip().is_loopback());
        if !loopback {
            all.push("--allow-remote");
        }
        match self {
            RegistryStore::Memory => Proc::start("registry", &all).await,
            RegistryStore::Etcd { args, .. } => {
                all.extend(args.iter().map(String::as_str));
                Proc::start(system_tests::REGISTRY_ETCD, &all).await
            }
        }
    }

    /// The etcd cluster, if the store is etcd.
    fn etcd_cluster(&mut self) -> Result<&mut EtcdCluster, String> {
        match self {
            RegistryStore::Etcd { etcd, .. } => Ok(etcd),
            RegistryStore::Memory => Err("the registry's store is not etcd".to_owned()),
        }
    }

    /// The index of etcd's leader, waiting (at most 20 s) for one to be elected.
    pub fn etcd_leader(&mut self) -> Result<usize, String> {
        let etcd = self.etcd_cluster()?;
        Ok(tokio::task::block_in_place(|| {
            etcd.wait_for_leader(ETCD_WAIT)
        }))
    }

    /// SIGKILLs etcd member `i`.
    pub fn kill_etcd(&mut self, i: usize) -> Result<(), String> {
        let etcd = self.etcd_cluster()?;
        tokio::task::block_in_place(|| etcd.kill(i));
        Ok(())
    }

    /// Starts killed etcd member `i` again with its data, and waits until it is healthy
    /// (which needs a quorum running).
    pub fn restart_etcd(&mut self, i: usize) -> Result<(), String> {
        let etcd = self.etcd_cluster()?;
        tokio::task::block_in_place(|| etcd.restart(i));
        Ok(())
    }
}

/// Why the etcd scenarios cannot run here, if they cannot: no etcd binary, or no protoc to
/// build the registry with etcd. `None` when `CI` is set: there they must run, and fail if
/// they cannot.
pub fn etcd_unavailable() -> Option<String> {
    if system_tests::in_ci() {
        return None;
    }
    let has_etcd =
        std::env::var_os("ETCD_BIN").is_some() || system_tests::on_path(&["etcd"]).is_some();
    if !has_etcd {
        return Some("needs etcd (apt-get install -y etcd-server, or set ETCD_BIN)".to_owned());
    }
    let has_protoc =
        std::env::var_os("PROTOC").is_some() || system_tests::on_path(&["protoc"]).is_some();
    if !has_protoc {
        return Some(
            "needs protoc to build the registry with etcd (apt-get install -y protobuf-compiler)"
                .to_owned(),
        );
    }
    None
}
