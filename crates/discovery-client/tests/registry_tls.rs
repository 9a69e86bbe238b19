//! An `https://` registry: the real registry's router (over a memory store that counts
//! heartbeats) served over TLS on port 0, with a certificate from a throwaway CA. Given that
//! CA, an instance registers, heartbeats and deregisters over https and discovery follows
//! it; without it, discovery reports an outage that names TLS and the certificate.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use discovery_client::discovery::InstanceStream;
use discovery_client::registration::{Registration, RegistrationConfig};
use discovery_client::transport::TlsConfig;
use discovery_client::{Error, Instance, RegistryDiscovery};
use futures::TryStreamExt;
use registry::store::{
    MemoryStore, Registered, Registration as Entry, Snapshot, Store, StoreError, StoreFuture,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use test_certs::TestCa;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tower::discover::Change;

/// How long a test waits for a condition before failing.
const PATIENCE: Duration = Duration::from_secs(5);

/// What the instance registers as its address.
const ADDRESS: &str = "http://127.0.0.1:8001";

/// The real registry (memory store, lease sweeper) served over TLS on a free loopback port.
struct TlsRegistry {
    /// `https://127.0.0.1:{port}`.
    url: String,
    /// How many heartbeats the registry accepted.
    heartbeats: watch::Receiver<usize>,
    /// The server and the sweeper, aborted on drop.
    tasks: Vec<JoinHandle<()>>,
}

impl TlsRegistry {
    /// Serves the registry with a certificate for `localhost` and `127.0.0.1` from `ca`.
    async fn start(ca: &TestCa) -> Self {
        let config = registry::Config::default();
        let (counter, heartbeats) = watch::channel(0);
        let store = CountingStore {
            inner: MemoryStore::new(config.store_limits()),
            heartbeats: counter,
        };
        let state = registry::AppState::with_store(&config, Arc::new(store));
        let sweeper = registry::sweeper::spawn(
            Arc::clone(state.store()),
            config.sweep_interval,
            state.shutdown().clone(),
        );
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", tcp.local_addr().unwrap());
        let listener = TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(server_config(ca))),
        };
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, registry::app(state)).await;
        });
        Self {
            url,
            heartbeats,
            tasks: vec![server, sweeper],
        }
    }
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The registry's memory store, counting the heartbeats it accepts.
#[derive(Debug)]
struct CountingStore {
    inner: MemoryStore,
    heartbeats: watch::Sender<usize>,
}

impl Store for CountingStore {
    fn register<'a>(
        &'a self,
        registration: Entry,
        presented: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Registered, StoreError>> {
        Store::register(&self.inner, registration, presented)
    }

    fn heartbeat<'a>(
        &'a self,
        service: &'a str,
        id: &'a str,
        presented: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Duration, StoreError>> {
        Box::pin(async move {
            let renewed = Store::heartbeat(&self.inner, service, id, presented).await;
            if renewed.is_ok() {
                self.heartbeats.send_modify(|n| *n += 1);
            }
            renewed
        })
    }

    fn deregister<'a>(
        &'a self,
        service: &'a str,
        id: &'a str,
        presented: Option<&'a str>,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        Store::deregister(&self.inner, service, id, presented)
    }

    fn services(&self) -> Vec<String> {
        Store::services(&self.inner)
    }

    fn epoch(&self) -> u64 {
        Store::epoch(&self.inner)
    }

    fn snapshot(&self, service: &str) -> Arc<Snapshot> {
        Store::snapshot(&self.inner, service)
    }

    fn wait_for_change<'a>(
        &'a self,
        service: &'a str,
        index: u64,
        deadline: Instant,
    ) -> StoreFuture<'a, Arc<Snapshot>> {
        Store::wait_for_change(&self.inner, service, index, deadline)
    }

    fn expire(&self) -> StoreFuture<'_, usize> {
        Store::expire(&self.inner)
    }
}

/// A rustls server config with a certificate from `ca`, the `ring` provider given
/// explicitly, and HTTP/1.1 (what the registry speaks) by ALPN.
#[allow(deprecated)]
fn server_config(ca: &TestCa) -> rustls::ServerConfig {
    let issued = ca.server(&["localhost", "127.0.0.1"]);
    let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// Accepts TCP connections and completes their TLS handshakes, one at a time; a client
/// that gives up on the handshake (it does not trust the certificate) is skipped.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The next change discovery reports, failing after [`PATIENCE`].
async fn next_change(stream: &mut InstanceStream) -> Result<Change<String, Instance>, Error> {
    let change = tokio::time::timeout(PATIENCE, stream.try_next())
        .await
        .expect("a change in time")?;
    Ok(change.expect("the stream goes on"))
}

#[tokio::test]
async fn an_instance_registers_and_is_discovered_over_https_with_the_private_ca() {
    let ca = TestCa::new("registry CA");
    let registry = TlsRegistry::start(&ca).await;
    let tls = TlsConfig::new()
        .add_root_certificate(ca.cert_pem())
        .unwrap();

    let mut config =
        RegistrationConfig::new(&registry.url, "ratings", "1", ADDRESS).tls(tls.clone());
    // The registry's shortest TTL: a heartbeat every third of a second.
    config.ttl = Duration::from_secs(1);
    let registration = Registration::start(config);
    tokio::time::timeout(PATIENCE, registration.registered())
        .await
        .expect("registered over https");

    let discovery = RegistryDiscovery::new(&registry.url)
        .wait(Duration::from_millis(500))
        .tls(tls);
    let mut instances = InstanceStream::new("ratings", discovery).unwrap();
    let added = next_change(&mut instances).await.unwrap();
    assert!(
        matches!(&added, Change::Insert(address, instance) if address == ADDRESS && instance.id == "1"),
        "{added:?}"
    );

    // Heartbeats reach the registry over https too.
    let mut heartbeats = registry.heartbeats.clone();
    tokio::time::timeout(PATIENCE, heartbeats.wait_for(|n| *n >= 2))
        .await
        .expect("two heartbeats in time")
        .unwrap();

    registration
        .deregister()
        .await
        .expect("deregistered over https");
    let removed = next_change(&mut instances).await.unwrap();
    assert!(
        matches!(&removed, Change::Remove(address) if address == ADDRESS),
        "{removed:?}"
    );
}

#[tokio::test]
async fn without_the_private_ca_discovery_reports_a_tls_outage_naming_the_certificate() {
    let ca = TestCa::new("registry CA");
    let registry = TlsRegistry::start(&ca).await;

    // The default settings: the system's roots, which do not hold the test CA.
    let discovery = RegistryDiscovery::new(&registry.url);
    let mut instances = InstanceStream::new("ratings", discovery).unwrap();
    match next_change(&mut instances).await {
        Err(Error::Discovery(reason)) => {
            assert!(reason.contains("TLS"), "{reason}");
            assert!(reason.contains(&registry.url), "{reason}");
            assert!(reason.contains("invalid peer certificate"), "{reason}");
            assert!(reason.contains("UnknownIssuer"), "{reason}");
        }
        other => panic!("expected a discovery error, got {other:?}"),
    }

    // Registration with the default settings does not get through either (the typed error,
    // `RegistrationError::Tls`, is checked by the registry API's own tests).
    let config = RegistrationConfig::new(&registry.url, "ratings", "1", ADDRESS);
    let registration = Registration::start(config);
    let registered = tokio::time::timeout(Duration::from_millis(500), registration.registered());
    assert!(
        registered.await.is_err(),
        "registered without trusting the CA"
    );
}
