//! Instance-side registration: register with the registry, heartbeat, deregister.
//!
//! A service that wants to be discovered calls [`Registration::start`] once it is
//! listening. That spawns one background task whose lifecycle is:
//!
//! 1. **Register**: `PUT /v1/services/{service}/instances/{id}` with the address, metadata
//!    and TTL; the registry answers with a lease (a secret) and the TTL it granted.
//! 2. **Heartbeat** every third of the TTL (the shorter of the asked and granted ones):
//!    `PUT .../heartbeat` with the lease in `X-Lease`.
//! 3. **Re-register** at once when a heartbeat answers 404 (the registry restarted or the
//!    lease expired) or 403 (the lease is no longer ours). Every registration presents the
//!    lease last held (`X-Lease`): the registry lets only the holder of a live lease
//!    re-register that id, so no one else can take over (and then remove) an instance.
//! 4. **Ride out outages**: while the registry is unreachable (or refuses us), calls are
//!    retried with capped exponential backoff (100 ms doubling to 5 s, with jitter; a
//!    failing heartbeat is retried at least once per heartbeat interval). The outage is
//!    logged once at `warn` when it starts and once at `info` when it ends, never per
//!    attempt.
//! 5. **Wait out an earlier process**: if the id is still held under a live lease this
//!    process does not have (an earlier process of the same instance was killed before it
//!    could deregister), the registry answers 409 with the time that lease has left. That
//!    is logged once ("instance 2 is still registered by an earlier process; retrying when
//!    its lease expires in N s") and registration is retried then, or every 5 s if sooner.
//!    With [`RegistrationConfig::lease_file`] set, the lease is kept on disk and a
//!    restarted process presents it and takes its registration back at once.
//! 6. **Deregister**: [`Registration::deregister`] stops the task and sends
//!    `DELETE .../instances/{id}` with the lease, within 2 s, so the instance disappears
//!    from the registry at once instead of when its TTL runs out. The lease file, if any,
//!    is removed once the registry confirmed.
//!
//! Dropping a [`Registration`] without deregistering stops the heartbeats; the registry
//! then forgets the instance when its TTL expires. When the registry has a token, every
//! call carries `Authorization: Bearer <token>`. An `https://` registry is checked against
//! the system's roots, or the private CA given to [`RegistrationConfig::tls`].
//!
//! Every event carries the fields `service`, `instance` and `address`.
//!
//! ```no_run
//! use std::time::Duration;
//! use discovery_client::registration::{Registration, RegistrationConfig};
//!
//! # async fn example() {
//! let mut config = RegistrationConfig::new(
//!     "http://127.0.0.1:8500",
//!     "ratings",
//!     "1",
//!     "http://127.0.0.1:8001",
//! );
//! config.metadata.insert("instance".into(), "1".into());
//! let registration = Registration::start(config);
//! // Optional: wait for the first successful registration.
//! let _ = tokio::time::timeout(Duration::from_secs(5), registration.registered()).await;
//! // ... serve until shutdown ...
//! if let Err(error) = registration.deregister().await {
//!     eprintln!("could not deregister: {error}");
//! }
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::transport::TlsConfig;

/// Emits a `tracing` event at `$level` carrying the labels' `service`, `instance` and
/// `address` fields, then the given fields and message.
macro_rules! labeled_event {
    ($level:expr, $labels:expr, $($rest:tt)+) => {
        tracing::event!(
            $level,
            service = %$labels.service,
            instance = %$labels.instance,
            address = %$labels.address,
            $($rest)+
        )
    };
}

mod backoff;
mod error;
mod heartbeat;
mod lease_file;
mod outage;
mod registry_api;
#[cfg(test)]
mod tests;

pub use error::RegistrationError;

use heartbeat::Timing;
use lease_file::LeaseFile;
use registry_api::HttpRegistry;

/// The default TTL asked of the registry.
const DEFAULT_TTL: Duration = Duration::from_secs(120);

/// What to register, and where.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistrationConfig {
    /// Base URL of the registry, e.g. `http://127.0.0.1:8500`.
    pub registry_url: String,
    /// The service name clients look up, e.g. `ratings`.
    pub service: String,
    /// This instance's id, unique within the service (e.g. `1`). While it is registered
    /// under a live lease, only the holder of that lease can register it again.
    pub instance_id: String,
    /// The URL clients should call, e.g. `http://127.0.0.1:8001`.
    pub address: String,
    /// Free-form labels stored with the instance.
    pub metadata: BTreeMap<String, String>,
    /// How long the registry keeps the instance without a heartbeat; heartbeats go every
    /// third of it. Sent rounded up to whole seconds.
    pub ttl: Duration,
    /// Bearer token for registries that require one for writes.
    pub token: Option<String>,
    /// Where to keep the lease across restarts (e.g. `.run/ratings-2.lease`), or `None`.
    ///
    /// With a file, every new lease is written there (mode 0600, replaced atomically) and
    /// the first registration after a start presents the lease found there, so a process
    /// restarted after a crash or `kill -9` takes its registration back at once instead
    /// of waiting for the old lease to expire. Use one file per instance id. The file is
    /// removed after a successful [`Registration::deregister`].
    pub lease_file: Option<PathBuf>,
    /// What `https://` connections to the registry trust and present: by default the
    /// system's roots and no client certificate. See [`tls`](Self::tls).
    pub tls: TlsConfig,
}

impl RegistrationConfig {
    /// A config with no metadata, a 120 s TTL, no token, no lease file and the default
    /// [`TlsConfig`].
    pub fn new(
        registry_url: impl Into<String>,
        service: impl Into<String>,
        instance_id: impl Into<String>,
        address: impl Into<String>,
    ) -> Self {
        Self {
            registry_url: registry_url.into(),
            service: service.into(),
            instance_id: instance_id.into(),
            address: address.into(),
            metadata: BTreeMap::new(),
            ttl: DEFAULT_TTL,
            token: None,
            lease_file: None,
            tls: TlsConfig::new(),
        }
    }

    /// Sets [`lease_file`](Self::lease_file).
    pub fn lease_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.lease_file = Some(path.into());
        self
    }

    /// Sets [`tls`](Self::tls): for an `https://` registry whose certificate comes from a
    /// private CA, trust that CA ([`TlsConfig::add_root_certificate`]); for one that asks
    /// for a client certificate, present one ([`TlsConfig::identity`]).
    ///
    /// ```no_run
    /// use discovery_client::registration::{Registration, RegistrationConfig};
    /// use discovery_client::transport::TlsConfig;
    ///
    /// # async fn demo() -> Result<(), discovery_client::Error> {
    /// let config = RegistrationConfig::new(
    ///     "https://registry.internal:8500",
    ///     "ratings",
    ///     "1",
    ///     "https://ratings-1.internal:8001",
    /// )
    /// .tls(TlsConfig::new().add_root_certificate_file("certs/ca.pem")?);
    /// let registration = Registration::start(config);
    /// # let _ = registration;
    /// # Ok(()) }
    /// ```
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// Checks that the config can work: an `http(s)://` registry URL with a host,
    /// non-empty service, instance id and address, a non-zero TTL, a token that fits in
    /// a header, and TLS settings rustls accepts. [`Registration::start`] runs the same checks; call this first to fail
    /// fast at startup.
    pub fn validate(&self) -> Result<(), RegistrationError> {
        registry_api::Endpoints::for_config(self).map(drop)
    }
}

impl fmt::Debug for RegistrationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationConfig")
            .field("registry_url", &self.registry_url)
            .field("service", &self.service)
            .field("instance_id", &self.instance_id)
            .field("address", &self.address)
            .field("metadata", &self.metadata)
            .field("ttl", &self.ttl)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("lease_file", &self.lease_file)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The fields every registration event carries.
#[derive(Debug, Clone)]
pub(crate) struct Labels {
    /// The service name.
    pub(crate) service: String,
    /// The instance id.
    pub(crate) instance: String,
    /// The advertised address.
    pub(crate) address: String,
}

/// A running registration: a background task keeping this instance registered.
///
/// Made by [`Registration::start`]; ended by [`Registration::deregister`] (or by dropping
/// it, which stops heartbeating without telling the registry).
pub struct Registration {
    /// Fields for this registration's events.
    labels: Labels,
    /// The running task, or why it could not start.
    state: State,
}

/// Whether the background task is running.
enum State {
    /// The task runs; this is how to talk to it.
    Running(Running),
    /// The config was invalid (or there was no runtime); kept for `deregister` to return.
    Failed(RegistrationError),
}

/// Handles on a running background task.
struct Running {
    /// Used again by `deregister` for the DELETE.
    registry: Arc<HttpRegistry>,
    /// Fires (or is dropped) to stop the task.
    stop: oneshot::Sender<()>,
    /// Becomes `true` after the first successful registration.
    registered: watch::Receiver<bool>,
    /// Yields the lease held when the task stopped.
    task: JoinHandle<Option<registry_api::Lease>>,
    /// Removed once the lease in it has been spent by a deregistration.
    lease_file: Option<LeaseFile>,
    /// Bound on `deregister`.
    deregister_timeout: Duration,
}

impl Registration {
    /// Spawns the background task that registers, heartbeats and re-registers (see the
    /// [module docs](self)).
    ///
    /// Must be called within a tokio runtime. Never panics: an invalid config (see
    /// [`RegistrationConfig::validate`]) or a missing runtime is logged at `error`, nothing
    /// is registered, [`registered`](Self::registered) never resolves and
    /// [`deregister`](Self::deregister) returns the error.
    pub fn start(config: RegistrationConfig) -> Registration {
        let timing = Timing::for_ttl(config.ttl);
        Self::start_with(config, timing)
    }

    /// [`start`](Self::start) with explicit timings (the TTL is taken from `config`).
    pub(crate) fn start_with(config: RegistrationConfig, timing: Timing) -> Registration {
        let labels = Labels {
            service: config.service.clone(),
            instance: config.instance_id.clone(),
            address: config.address.clone(),
        };
        let timing = Timing {
            ttl: config.ttl,
            ..timing
        };
        let state = match Self::spawn(&config, &labels, timing) {
            Ok(running) => State::Running(running),
            Err(error) => {
                labeled_event!(
                    tracing::Level::ERROR,
                    labels,
                    error = %error,
                    "cannot register with the registry"
                );
                State::Failed(error)
            }
        };
        Registration { labels, state }
    }

    /// Validates `config` and spawns the task.
    fn spawn(
        config: &RegistrationConfig,
        labels: &Labels,
        timing: Timing,
    ) -> Result<Running, RegistrationError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            RegistrationError::InvalidConfig(
                "Registration::start must be called within a tokio runtime".into(),
            )
        })?;
        let registry = Arc::new(HttpRegistry::new(config, timing.request_timeout)?);
        let (registered_tx, registered) = watch::channel(false);
        let (stop, stop_rx) = oneshot::channel();
        let deregister_timeout = timing.deregister_timeout;
        let lease_file = config.lease_file.clone().map(LeaseFile::new);
        let task = runtime.spawn({
            let registry = Arc::clone(&registry);
            let labels = labels.clone();
            let lease_file = lease_file.clone();
            async move {
                heartbeat::run(
                    &*registry,
                    &labels,
                    &timing,
                    lease_file.as_ref(),
                    &registered_tx,
                    stop_rx,
                )
                .await
            }
        });
        Ok(Running {
            registry,
            stop,
            registered,
            task,
            lease_file,
            deregister_timeout,
        })
    }

    /// Resolves once the first registration has succeeded; stays resolved afterwards.
    ///
    /// Waits as long as the registry is unreachable, so wrap it in a timeout. Never
    /// resolves if the registration could not start (invalid config).
    pub async fn registered(&self) {
        if let State::Running(running) = &self.state {
            let mut registered = running.registered.clone();
            if registered.wait_for(|done| *done).await.is_ok() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }

    /// Stops heartbeating and deletes the registration, all within 2 s.
    ///
    /// A registration call in flight is allowed to finish first (within the same 2 s), so
    /// that an entry the registry just accepted is deleted too.
    ///
    /// Returns `Ok(())` when the registry confirmed (or already did not know the
    /// instance), and also when the instance never got registered, as there is then
    /// nothing to delete. Errors: the registry was unreachable, too slow or refused
    /// (then the entry expires after its TTL), or the background task had died.
    pub async fn deregister(self) -> Result<(), RegistrationError> {
        let Registration { labels, state } = self;
        let running = match state {
            State::Running(running) => running,
            State::Failed(error) => return Err(error),
        };
        let Running {
            registry,
            stop,
            task,
            lease_file,
            deregister_timeout,
            ..
        } = running;
        // The task may already have ended; then there is nothing to stop.
        let _ = stop.send(());
        let deadline = tokio::time::Instant::now() + deregister_timeout;
        let mut task = task;
        let lease = match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(lease)) => lease,
            Ok(Err(_)) => return Err(RegistrationError::TaskFailed),
            Err(_elapsed) => {
                // Still finishing a registration call the registry has not answered.
                task.abort();
                return Err(RegistrationError::Timeout {
                    url: registry.base_url().to_owned(),
                    after: deregister_timeout,
                });
            }
        };
        let Some(lease) = lease else {
            labeled_event!(
                tracing::Level::DEBUG,
                labels,
                "not registered; nothing to deregister"
            );
            return Ok(());
        };
        match tokio::time::timeout_at(deadline, registry.deregister(&lease)).await {
            Ok(Ok(())) => {
                labeled_event!(
                    tracing::Level::INFO,
                    labels,
                    "deregistered from the registry"
                );
                if let Some(file) = lease_file {
                    file.remove(&labels).await;
                }
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            Err(_elapsed) => Err(RegistrationError::Timeout {
                url: registry.base_url().to_owned(),
                after: deregister_timeout,
            }),
        }
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Running(running) if *running.registered.borrow() => "registered",
            State::Running(_) => "registering",
            State::Failed(_) => "failed",
        };
        f.debug_struct("Registration")
            .field("service", &self.labels.service)
            .field("instance", &self.labels.instance)
            .field("address", &self.labels.address)
            .field("state", &state)
            .finish()
    }
}
