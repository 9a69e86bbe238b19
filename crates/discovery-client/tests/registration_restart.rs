//! A registration restarted after a crash, against the real registry on port 0: the
//! registry refuses a second process the id while the first one's lease lives; with a lease
//! file the new process takes the registration back at once, without one it waits for the
//! old lease to run out.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use discovery_client::registration::{Registration, RegistrationConfig};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const ADDRESS: &str = "http://127.0.0.1:8001";

/// The real registry (memory store) on a free loopback port.
struct Registry {
    url: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Registry {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(registry::run(
            listener,
            registry::Config::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            url,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task,
        }
    }

    fn instance_url(&self) -> String {
        format!("{}/v1/services/ratings/instances/1", self.url)
    }

    /// The ratings instances listed, as `(id, address)`.
    async fn listed(&self) -> Vec<(String, String)> {
        let url = format!("{}/v1/services/ratings", self.url);
        let body: Value = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let field = |name: &str| i[name].as_str().unwrap().to_owned();
                (field("id"), field("address"))
            })
            .collect()
    }

    /// The status of a heartbeat for instance 1 with `lease`.
    async fn heartbeat(&self, lease: &str) -> u16 {
        let url = format!("{}/heartbeat", self.instance_url());
        let answer = self.http.put(url).header("X-Lease", lease).send().await;
        answer.unwrap().status().as_u16()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

fn config(registry: &Registry, ttl: Duration) -> RegistrationConfig {
    let mut config = RegistrationConfig::new(&registry.url, "ratings", "1", ADDRESS);
    config.ttl = ttl;
    config
}

/// The lease secret in a lease file.
fn lease_in(path: &Path) -> String {
    let stored: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(stored["service"], "ratings");
    assert_eq!(stored["instance"], "1");
    stored["lease"].as_str().unwrap().to_owned()
}

/// How long `registration` took to register, failing after `limit`.
async fn registered_within(registration: &Registration, limit: Duration) -> Duration {
    let started = Instant::now();
    tokio::time::timeout(limit, registration.registered())
        .await
        .unwrap_or_else(|_| panic!("not registered within {limit:?}"));
    started.elapsed()
}

#[tokio::test]
async fn a_restarted_process_takes_its_registration_back_at_once_with_its_lease_file() {
    let registry = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ratings-1.lease");
    let config = config(&registry, Duration::from_secs(60)).lease_file(&path);

    let first = Registration::start(config.clone());
    registered_within(&first, Duration::from_secs(5)).await;
    let first_lease = lease_in(&path);
    assert_eq!(
        registry.heartbeat(&first_lease).await,
        200,
        "the file holds the live lease"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }

    // The process dies without deregistering: its lease lives on for up to 60 s.
    drop(first);
    // Anyone else is refused the id, even at the same address.
    let hijack = registry
        .http
        .put(registry.instance_url())
        .json(&json!({ "address": ADDRESS }))
        .send()
        .await
        .unwrap();
    assert_eq!(hijack.status(), 409);

    // The restarted process presents the lease from the file and is back at once.
    let second = Registration::start(config);
    let took = registered_within(&second, Duration::from_secs(1)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    let second_lease = lease_in(&path);
    assert_ne!(
        second_lease, first_lease,
        "a new lease, written to the file"
    );
    assert_eq!(
        registry.heartbeat(&first_lease).await,
        403,
        "the old lease is spent"
    );
    assert_eq!(
        registry.listed().await,
        [("1".to_owned(), ADDRESS.to_owned())]
    );

    // A clean stop deregisters and removes the file, whose lease is then spent.
    second.deregister().await.unwrap();
    assert!(registry.listed().await.is_empty());
    assert!(!path.exists(), "the lease file outlived the deregistration");
    registry.stop().await;
}

#[tokio::test]
async fn without_a_lease_file_a_restarted_process_waits_out_the_earlier_lease() {
    let registry = Registry::start().await;
    let ttl = Duration::from_secs(2);

    let first = Registration::start(config(&registry, ttl));
    registered_within(&first, Duration::from_secs(5)).await;
    drop(first);
    let died = Instant::now();

    let second = Registration::start(config(&registry, ttl));
    // Refused while the first lease lives: the entry is the first process's, untouched.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), second.registered())
            .await
            .is_err(),
        "registered over a live lease"
    );
    assert_eq!(
        registry.listed().await,
        [("1".to_owned(), ADDRESS.to_owned())]
    );
    // Then registered as soon as the registry said the lease runs out (within the 2 s TTL
    // of the last heartbeat, rounded up to whole seconds), not a full backoff later.
    registered_within(&second, Duration::from_secs(4)).await;
    let after = died.elapsed();
    assert!(
        after >= Duration::from_millis(1_000) && after < Duration::from_millis(3_500),
        "registered {after:?} after the first process died, with a 2 s TTL"
    );
    second.deregister().await.unwrap();
    assert!(registry.listed().await.is_empty());
    registry.stop().await;
}
