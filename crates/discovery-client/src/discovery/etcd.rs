//! Discovery straight from etcd, for deployments that run no registry process.
//!
//! Instances are read from the keys the registry's etcd store writes (and that anything else
//! may write in the same shape): `<prefix><service>/<id>` holding
//! `{"address": "http://127.0.0.1:8001", "metadata": {...}}` (other fields are ignored),
//! usually attached to an etcd lease so that the key goes when its instance stops
//! heartbeating. The default prefix, `/discovery/`, is the registry's default.
//!
//! The source reads the service's keys once, publishes the set, then watches them from the
//! next revision, so every change arrives as soon as etcd commits it. When the watch breaks
//! it resumes from the next revision on another member, so nothing is missed; if etcd has
//! compacted that revision away, it reads the whole set again. While no member answers, the
//! last known set stays in use; the outage is reported once, and the recovery once.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, KeyValue, WatchOptions};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::{Discovery, DiscoverySink};
use crate::Instance;

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Watches a service's instances in etcd.
///
/// ```no_run
/// use discovery_client::{EtcdDiscovery, ServiceClient};
///
/// # fn demo() -> Result<(), discovery_client::Error> {
/// let ratings = ServiceClient::builder("ratings")
///     .discovery(EtcdDiscovery::new(["http://127.0.0.1:2379"]))
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EtcdDiscovery {
    endpoints: Vec<String>,
    prefix: String,
    timeout: Duration,
}

impl EtcdDiscovery {
    /// Watches etcd through these client URLs (`http://host:port`; several members of one
    /// cluster, any of which may answer).
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: "/discovery/".into(),
            timeout: Duration::from_secs(2),
        }
    }

    /// The key prefix instances are under (default `/discovery/`, as the registry's
    /// `--etcd-prefix`); a trailing `/` is added if missing.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let mut prefix = prefix.into();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        self.prefix = prefix;
        self
    }

    /// Bound on connecting to a member and on each request to it (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoints this source uses.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }
}

impl Discovery for EtcdDiscovery {
    fn watch(&self, service: &str, sink: DiscoverySink) -> BoxFuture<'static, ()> {
        let watcher = Watcher {
            endpoints: self.endpoints.clone(),
            timeout: self.timeout,
            service_prefix: format!("{}{service}/", self.prefix),
            clients: Vec::new(),
            current: 0,
        };
        watcher.run(sink).boxed()
    }
}

/// The value of an instance key, as far as discovery cares.
#[derive(Debug, Deserialize)]
struct Value {
    address: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

struct Watcher {
    endpoints: Vec<String>,
    timeout: Duration,
    /// `<prefix><service>/`.
    service_prefix: String,
    /// One client per endpoint, made on first use.
    clients: Vec<Client>,
    /// Index of the member in use.
    current: usize,
}

/// Why a watch stopped.
enum Ended {
    /// Its start revision was compacted: read the whole set again.
    Compacted,
    /// The member or the connection went away after the watch had been working.
    Broken,
    /// It could not be started.
    Failed(String),
}

impl Watcher {
    async fn run(mut self, sink: DiscoverySink) {
        let mut instances: BTreeMap<String, Instance> = BTreeMap::new();
        // The revision to watch from; `None` means the set must be read first.
        let mut next: Option<i64> = None;
        let mut in_outage = false;
        let mut backoff = FIRST_BACKOFF;
        while !sink.is_closed() {
            let failure = match next {
                None => match self.load().await {
                    Ok((set, revision)) => {
                        instances = set;
                        next = Some(revision + 1);
                        if in_outage {
                            in_outage = false;
                            sink.recovered();
                        }
                        backoff = FIRST_BACKOFF;
                        if !sink.publish(instances.values().cloned().collect()) {
                            return;
                        }
                        continue;
                    }
                    Err(reason) => reason,
                },
                Some(start) => {
                    let mut watched = Watched {
                        instances: &mut instances,
                        next: start,
                        sink: &sink,
                        in_outage: &mut in_outage,
                    };
                    let ended = self.follow(&mut watched).await;
                    next = Some(watched.next);
                    match ended {
                        Ended::Compacted => {
                            next = None;
                            continue;
                        }
                        Ended::Broken => {
                            // It was working: try the next member at once.
                            backoff = FIRST_BACKOFF;
                            self.current += 1;
                            continue;
                        }
                        Ended::Failed(reason) => reason,
                    }
                }
            };
            if !in_outage {
                in_outage = true;
                sink.outage(failure);
            }
            self.current += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The member in use, connecting the clients on first use.
    async fn client(&mut self) -> Result<Client, String> {
        if self.clients.is_empty() {
            let options = ConnectOptions::new()
                .with_connect_timeout(self.timeout)
                .with_timeout(self.timeout)
                .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
                .with_keep_alive_while_idle(true)
                .with_require_leader(true);
            for endpoint in &self.endpoints {
                // Connecting is lazy: this only fails for a malformed endpoint.
                let client = Client::connect([endpoint.as_str()], Some(options.clone()))
                    .await
                    .map_err(|e| format!("etcd endpoint {endpoint:?}: {e}"))?;
                self.clients.push(client);
            }
        }
        if self.clients.is_empty() {
            return Err("no etcd endpoints configured".into());
        }
        Ok(self.clients[self.current % self.clients.len()].clone())
    }

    fn member(&self) -> &str {
        if self.endpoints.is_empty() {
            return "";
        }
        &self.endpoints[self.current % self.endpoints.len()]
    }

    /// Reads the whole set and the revision it was read at.
    async fn load(&mut self) -> Result<(BTreeMap<String, Instance>, i64), String> {
        let mut client = self.client().await?;
        let read = client.get(
            self.service_prefix.as_str(),
            Some(GetOptions::new().with_prefix()),
        );
        let response = match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(format!("etcd at {} failed: {e}", self.member())),
            Err(_) => return Err(format!("etcd at {} did not answer in time", self.member())),
        };
        let revision = response.header().map_or(0, |h| h.revision());
        let set = response
            .kvs()
            .iter()
            .filter_map(|kv| self.decode(kv))
            .map(|instance| (instance.id.clone(), instance))
            .collect();
        Ok((set, revision))
    }

    /// Watches from `watched.next`, publishing every change, until the watch ends.
    async fn follow(&mut self, watched: &mut Watched<'_>) -> Ended {
        let client = match self.client().await {
            Ok(client) => client,
            Err(reason) => return Ended::Failed(reason),
        };
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(watched.next);
        let mut watcher = client.watch_client();
        let started = watcher.watch(self.service_prefix.as_str(), Some(options));
        let mut stream = match tokio::time::timeout(self.timeout, started).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Ended::Failed(format!("etcd at {} failed: {e}", self.member())),
            Err(_) => {
                return Ended::Failed(format!("etcd at {} did not answer in time", self.member()));
            }
        };
        let mut created = false;
        // Ends when the stream does: HTTP/2 keep-alives notice a dead member, and a member
        // that loses its leader ends the watch itself (require-leader).
        loop {
            // Until the member confirms the watch, bound the wait like any request.
            let message = if created {
                stream.message().await
            } else {
                match tokio::time::timeout(self.timeout, stream.message()).await {
                    Ok(message) => message,
                    Err(_) => {
                        return Ended::Failed(format!(
                            "etcd at {} did not start the watch in time",
                            self.member()
                        ));
                    }
                }
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) | Err(_) if created => return Ended::Broken,
                Ok(None) => {
                    return Ended::Failed(format!("etcd at {} closed the watch", self.member()));
                }
                Err(e) => return Ended::Failed(format!("etcd at {} failed: {e}", self.member())),
            };
            if response.created() && !created {
                created = true;
                if *watched.in_outage {
                    *watched.in_outage = false;
                    watched.sink.recovered();
                }
            }
            if response.canceled() {
                if response.compact_revision() > 0 {
                    return Ended::Compacted;
                }
                let reason = format!("etcd canceled the watch: {}", response.cancel_reason());
                return if created {
                    Ended::Broken
                } else {
                    Ended::Failed(reason)
                };
            }
            let mut changed = false;
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                watched.next = watched.next.max(kv.mod_revision() + 1);
                let Some(id) = self.id_of(kv) else { continue };
                let instance = match event.event_type() {
                    EventType::Put => self.decode(kv),
                    EventType::Delete => None,
                };
                changed |= match instance {
                    Some(instance) => {
                        watched.instances.insert(id, instance.clone()) != Some(instance)
                    }
                    None => watched.instances.remove(&id).is_some(),
                };
            }
            if changed
                && !watched
                    .sink
                    .publish(watched.instances.values().cloned().collect())
            {
                return Ended::Broken;
            }
        }
    }

    /// The instance id a key names: the rest of the key after the service prefix, if it is
    /// a single path segment.
    fn id_of(&self, kv: &KeyValue) -> Option<String> {
        let rest = kv.key().strip_prefix(self.service_prefix.as_bytes())?;
        let id = std::str::from_utf8(rest).ok()?;
        (!id.is_empty() && !id.contains('/')).then(|| id.to_owned())
    }

    /// The instance a key holds, if its value has an address.
    fn decode(&self, kv: &KeyValue) -> Option<Instance> {
        let id = self.id_of(kv)?;
        let value: Value = serde_json::from_slice(kv.value()).ok()?;
        Some(Instance {
            id,
            address: value.address,
            metadata: value.metadata,
        })
    }
}

/// What a watch updates as it goes.
struct Watched<'a> {
    /// The current set, by id.
    instances: &'a mut BTreeMap<String, Instance>,
    /// The revision after the last event seen: where to resume.
    next: i64,
    sink: &'a DiscoverySink,
    /// Whether an outage has been reported and not yet its recovery.
    in_outage: &'a mut bool,
}
