//! The etcd store: registrations kept in etcd, so they survive the loss of a registry
//! process or of an etcd member, and every registry on the same etcd serves the same set.
//!
//! ## How the registry's model maps onto etcd
//!
//! - **Registration**: one key per instance, `<prefix><service>/<id>` (see [`record`] for
//!   the value), attached to a fresh etcd lease whose TTL is the registration's plus the
//!   outage grace ([`EtcdOptions::outage_grace`], see [`reaper`]). The write
//!   is a transaction conditioned on the key's revision as just read, so two registries
//!   racing on one id cannot both win, and the anti-hijack rule (re-registering a live id
//!   needs its lease secret) holds across registries. The time left on a refused caller's
//!   wait is the time until the instance has been silent for its TTL. The previous etcd
//!   lease is revoked once the key has moved to the new one.
//! - **Heartbeat**: after checking the secret against the key's digest, one lease
//!   keep-alive. An unknown key, or a lease that has run out, is 404, as in memory.
//!   (An instance silent for its TTL whose key the sweep has not removed yet is still
//!   renewed, as its heartbeat is only a sweep interval late.)
//! - **Deregistration**: after checking the secret, a transaction conditioned on the key's
//!   revision deletes the key and puts a deregistration marker (see [`record`]) on the
//!   key's etcd lease, which is then revoked, taking the marker with it.
//! - **Expiry**: at the TTL, by the registries' sweep, which revokes the etcd lease of an
//!   instance silent for its TTL (see [`reaper`]); and by etcd itself when no registry ran
//!   for the outage grace beyond it. Either way etcd deletes the key and the watch below
//!   sees the deletion. A deletion without a marker at its revision is an expiry, which
//!   every registry following the etcd counts in `registry_lease_expiries_total` as it sees
//!   it (see [`mirror`]).
//! - **Registry restarts**: a registry that starts gives every registration it finds one
//!   TTL from its start, so instances whose heartbeats failed while no registry ran are
//!   kept while they heartbeat again (and one that died meanwhile goes one TTL later). A
//!   registry down for longer than the TTL plus the grace finds the registrations gone:
//!   etcd expired them; the instances register again when their heartbeats get a 404.
//! - **Index**: the etcd revision of the last change readers can see (see [`mirror`]).
//! - **Epoch**: a random number kept in etcd (see [`epoch`]), the same for every registry
//!   on this etcd and prefix and across their restarts, since registrations and revisions
//!   carry on.
//! - **Reads and blocking queries**: served from an in-memory mirror of the prefix kept up
//!   to date by an etcd watch, so a blocking query answers as soon as the watch delivers
//!   the change. Writes wait until the mirror has seen their revision, so a registry always
//!   reads its own writes. While etcd is unreachable reads answer from the last known view
//!   and writes fail with 503 ([`StoreError::Unavailable`]).
//!
//! Every etcd call is bounded in time and moves to another member when one fails (see
//! [`connection`]).

mod connection;
mod epoch;
mod follow;
pub mod mirror;
pub mod reaper;
pub mod record;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::connection::{CallError, Connection, is_lease_not_found};
use self::mirror::Mirror;
use self::reaper::{Reaper, Verdict, Watched};
use self::record::{KeyLayout, Record};
use super::{
    Lease, OpenError, Registered, Registration, Snapshot, Store, StoreError, StoreFuture,
    StoreLimits,
};

/// How often a conditional write is retried when another writer got in between.
const WRITE_ATTEMPTS: usize = 5;

/// [`EtcdOptions::outage_grace`]'s default: a registry restart, or a rolling upgrade of
/// every registry, takes less.
pub const DEFAULT_OUTAGE_GRACE: Duration = Duration::from_secs(60);

/// How to reach etcd and where to keep the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs of the etcd members (`http://host:port`).
    pub endpoints: Vec<String>,
    /// Key prefix; every key is `<prefix><service>/<id>`.
    pub prefix: String,
    /// The same bounds the memory store enforces.
    pub limits: StoreLimits,
    /// Bound on one request to one member.
    pub attempt_timeout: Duration,
    /// Bound on one etcd call, retries on other members included; also how long opening
    /// the store may take.
    pub call_timeout: Duration,
    /// How long etcd keeps a registration beyond its TTL while no registry renews it:
    /// the longest registry outage (every registry on this etcd down) that loses no
    /// registration. Registries still expire silent instances at their TTL.
    pub outage_grace: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/discovery/".into(),
            limits: StoreLimits::default(),
            attempt_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(5),
            outage_grace: DEFAULT_OUTAGE_GRACE,
        }
    }
}

/// The registry store on etcd. Create it with [`EtcdStore::connect`].
#[derive(Debug)]
pub struct EtcdStore {
    /// The members, and which one is in use.
    conn: Arc<Connection>,
    /// Where keys live.
    layout: KeyLayout,
    /// What reads are served from, kept current by `follower`.
    mirror: Arc<Mirror>,
    /// Bounds checked before creating an instance.
    limits: StoreLimits,
    /// The watch task; aborted when the store is dropped.
    follower: JoinHandle<()>,
    /// Tells `follower` to stop backing off and reconnect now.
    retry_now: Arc<Notify>,
    /// The epoch kept in etcd for this prefix (see [`epoch`]).
    epoch: u64,
    /// Until when each instance is known alive; drives expiry at the TTL.
    reaper: Reaper,
}

/// An instance key as etcd has it now.
#[derive(Debug, Clone)]
struct Current {
    /// The value, if it is a record.
    record: Option<Record>,
    /// The etcd lease the key is attached to.
    lease: i64,
    /// The revision of the key's last write, for conditional writes.
    mod_revision: i64,
}

/// What is left of the lease an instance key is attached to.
#[derive(Debug, Clone, Copy)]
enum TimeLeft {
    /// At most this long (`None`: the key has no lease and never expires).
    Left(Option<Duration>),
    /// The lease has run out; the key is gone or going.
    Gone,
}

/// Whether a registration at `address` presenting `presented` may replace the key's
/// current value: only with its lease secret. A record that no registry made (no lease
/// digest, so no secret can prove ownership) may be taken over at its own address, as
/// before; one that is not a record at all may not.
fn may_replace(record: Option<&Record>, address: &str, presented: Option<&str>) -> bool {
    record.is_some_and(|record| {
        record.owned_by(presented) || (record.lease_sha256.is_empty() && record.address == address)
    })
}

impl EtcdStore {
    /// Connects to etcd, loads the registrations under the prefix and starts following
    /// them. Fails if no member answers within `call_timeout`.
    pub async fn connect(options: EtcdOptions) -> Result<Self, OpenError> {
        let fail = |reason: String| OpenError::Etcd {
            endpoints: options.endpoints.join(","),
            reason,
        };
        let conn = Connection::new(
            &options.endpoints,
            options.attempt_timeout,
            options.call_timeout,
        )
        .await
        .map_err(|error| fail(error.to_string()))?;
        let conn = Arc::new(conn);
        let layout = KeyLayout::new(&options.prefix);
        let epoch = epoch::load_or_create(&conn, &layout).await.map_err(fail)?;
        let mirror = Arc::new(Mirror::new(options.limits.max_services));
        follow::load(&conn, &layout, &mirror)
            .await
            .map_err(|error| fail(error.to_string()))?;
        let retry_now = Arc::new(Notify::new());
        let follower = tokio::spawn(follow::follow(
            Arc::clone(&conn),
            layout.clone(),
            Arc::clone(&mirror),
            Arc::clone(&retry_now),
        ));
        tracing::info!(
            endpoints = %conn.endpoints(),
            prefix = layout.prefix(),
            revision = mirror.applied(),
            epoch,
            "using the etcd store"
        );
        Ok(Self {
            conn,
            epoch,
            layout,
            mirror,
            limits: options.limits,
            follower,
            retry_now,
            reaper: Reaper::new(options.outage_grace),
        })
    }

    /// The key prefix in use (ends with `/`).
    pub fn prefix(&self) -> &str {
        self.layout.prefix()
    }

    /// The etcd revision the store's view reflects.
    pub fn revision(&self) -> i64 {
        self.mirror.applied()
    }

    async fn register(
        &self,
        registration: Registration,
        presented: Option<&str>,
    ) -> Result<Registered, StoreError> {
        let Registration {
            service,
            id,
            address,
            metadata,
            ttl,
        } = registration;
        let key = self.layout.key(&service, &id);
        let ttl_secs = ttl.as_secs().max(1);
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.read(&key).await?;
            match &current {
                Some(current) if !may_replace(current.record.as_ref(), &address, presented) => {
                    match self.time_left(current).await? {
                        // Silent for its TTL (the sweep would expire it now), or it ran out
                        // after the read: let it go and look again.
                        TimeLeft::Gone => {
                            self.revoke(current.lease).await?;
                            continue;
                        }
                        TimeLeft::Left(retry_after) => {
                            return Err(StoreError::LeaseHeld { retry_after });
                        }
                    }
                }
                Some(_) => {}
                None => self.check_room(&service)?,
            }

            let secret = Lease::generate();
            let record = Record::new(address.clone(), metadata.clone(), ttl_secs, &secret);
            let lease = self.grant(self.reaper.lease_secs(ttl_secs)).await?;
            let condition = match &current {
                Some(current) => {
                    Compare::mod_revision(key.as_str(), CompareOp::Equal, current.mod_revision)
                }
                None => Compare::version(key.as_str(), CompareOp::Equal, 0),
            };
            let put = TxnOp::put(
                key.as_str(),
                record.to_json(),
                Some(PutOptions::new().with_lease(lease)),
            );
            let txn = Txn::new().when([condition]).and_then([put]);
            let Some(revision) = self.write(&key, txn, Some(lease)).await? else {
                // Another writer got in between: drop our lease and look again.
                self.revoke_later(lease);
                continue;
            };

            let previous = current.and_then(|c| c.record.map(|record| (record, c.lease)));
            if let Some((old, old_lease)) = &previous {
                // Only leases a registry made hold nothing but this key.
                if !old.lease_sha256.is_empty() && *old_lease != lease {
                    self.revoke_later(*old_lease);
                }
            }
            self.reaper.heard(&service, &id, lease, ttl);
            self.caught_up(revision).await;
            let created = previous.is_none();
            let changed = previous
                .as_ref()
                .is_none_or(|(old, _)| old.address != address || old.metadata != metadata);
            tracing::info!(
                service = %service,
                instance = %id,
                address = %address,
                ttl_secs,
                created,
                changed,
                "instance registered"
            );
            return Ok(Registered {
                lease: secret,
                ttl,
                created,
                changed,
            });
        }
        Err(contended("register", &key))
    }

    async fn heartbeat(
        &self,
        service: &str,
        id: &str,
        presented: Option<&str>,
    ) -> Result<Duration, StoreError> {
        let key = self.layout.key(service, id);
        let current = self.read(&key).await?.ok_or_else(|| unknown(service, id))?;
        let record = current
            .record
            .filter(|record| record.owned_by(presented))
            .ok_or(StoreError::LeaseMismatch)?;
        let lease = current.lease;
        let kept = self
            .conn
            .call(|client: Client| async move {
                let mut leases = client.lease_client();
                leases.keep_alive(lease).await.map(|_| ())
            })
            .await;
        match kept {
            Ok(()) => {
                let ttl = Duration::from_secs(record.ttl_secs);
                self.reaper.heard(service, id, lease, ttl);
                tracing::debug!(service, instance = id, "heartbeat");
                Ok(ttl)
            }
            // It ran out between the read and the keep-alive; etcd is deleting the key.
            Err(error) if is_lease_not_found(&error) => Err(unknown(service, id)),
            Err(error) => Err(unavailable("heartbeat", &key, &error)),
        }
    }

    async fn deregister(
        &self,
        service: &str,
        id: &str,
        presented: Option<&str>,
    ) -> Result<(), StoreError> {
        let key = self.layout.key(service, id);
        let mut attempted = false;
        for _ in 0..WRITE_ATTEMPTS {
            let Some(current) = self.read(&key).await? else {
                // Gone: never there, or removed by an earlier attempt of this very call
                // whose answer was lost.
                return if attempted {
                    Ok(())
                } else {
                    Err(unknown(service, id))
                };
            };
            let record = current
                .record
                .filter(|record| record.owned_by(presented))
                .ok_or(StoreError::LeaseMismatch)?;
            let mut ops = vec![TxnOp::delete(key.as_str(), None)];
            // Tells every registry's watch that this deletion is no expiry. A key without a
            // lease never expires, so needs no marker (which would then never go away).
            if current.lease != 0 {
                ops.push(TxnOp::put(
                    self.layout.marker(service, id),
                    Vec::new(),
                    Some(PutOptions::new().with_lease(current.lease)),
                ));
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    current.mod_revision,
                )])
                .and_then(ops);
            attempted = true;
            let Some(revision) = self.write(&key, txn, None).await? else {
                continue;
            };
            // A registry's lease holds nothing but this key and now the marker: both go.
            self.revoke_later(current.lease);
            self.caught_up(revision).await;
            tracing::info!(service, instance = id, address = %record.address, "instance deregistered");
            return Ok(());
        }
        Err(contended("deregister", &key))
    }

    /// The key as etcd has it now (a linearizable read).
    async fn read(&self, key: &str) -> Result<Option<Current>, StoreError> {
        let response = self
            .conn
            .call(|mut client: Client| async move { client.get(key, None).await })
            .await
            .map_err(|error| unavailable("read", key, &error))?;
        Ok(response.kvs().first().map(|kv| Current {
            record: Record::parse(kv.value()),
            lease: kv.lease(),
            mod_revision: kv.mod_revision(),
        }))
    }

    /// Runs a conditional write. `Some(revision)` if it was applied: by this attempt, or,
    /// when `ours` is the lease it attaches, by an earlier attempt whose answer was lost.
    async fn write(
        &self,
        key: &str,
        txn: Txn,
        ours: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let response = self
            .conn
            .call(|mut client: Client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await
            .map_err(|error| unavailable("write", key, &error))?;
        if response.succeeded() {
            return Ok(Some(response.header().map_or(0, |h| h.revision())));
        }
        if let Some(lease) = ours {
            if let Some(now) = self.read(key).await? {
                if now.lease == lease {
                    return Ok(Some(now.mod_revision));
                }
            }
        }
        Ok(None)
    }

    /// How long until the instance in `current` has been silent for its TTL, by what etcd
    /// says is left of its lease (see [`reaper::judge`]), plus a second for etcd's whole
    /// seconds. If etcd cannot say, the record's full TTL plus the grace is a bound.
    async fn time_left(&self, current: &Current) -> Result<TimeLeft, StoreError> {
        let lease = current.lease;
        if lease == 0 {
            // A key without a lease never expires.
            return Ok(TimeLeft::Left(None));
        }
        let ttl = Duration::from_secs(current.record.as_ref().map_or(0, |r| r.ttl_secs));
        match self.lease_left(lease, ttl).await {
            Ok(Some(Verdict::Alive(alive_for))) => {
                Ok(TimeLeft::Left(Some(alive_for + Duration::from_secs(1))))
            }
            Ok(Some(Verdict::Silent) | None) => Ok(TimeLeft::Gone),
            Err(error) => {
                tracing::debug!(lease, %error, "could not read an etcd lease's TTL");
                let bound = Duration::from_secs(self.reaper.lease_secs(ttl.as_secs().max(1)));
                Ok(TimeLeft::Left(Some(bound)))
            }
        }
    }

    /// What etcd says of `lease`, held by a registration of `ttl`; `None` if the lease is
    /// gone.
    async fn lease_left(&self, lease: i64, ttl: Duration) -> Result<Option<Verdict>, CallError> {
        let answer = self
            .conn
            .call(|mut client: Client| async move { client.lease_time_to_live(lease, None).await })
            .await;
        match answer {
            Ok(answer) => Ok(Some(reaper::judge(answer.granted_ttl(), answer.ttl(), ttl))),
            Err(error) if is_lease_not_found(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Expires the instances silent for their TTL (see [`reaper`]): looks up the leases of
    /// those this registry has not heard from lately, and revokes the silent ones. Returns
    /// how many it revoked. Stops at the first etcd call that fails: nothing expires while
    /// etcd is unreachable.
    async fn reap(&self) -> usize {
        let overdue = self.reaper.overdue(self.mirror.watched(), Instant::now());
        let mut revoked = 0;
        for key in overdue {
            let verdict = match self.lease_left(key.lease, key.ttl).await {
                Ok(verdict) => verdict,
                Err(error) => {
                    tracing::debug!(%error, "etcd unreachable; expiry waits");
                    break;
                }
            };
            match verdict {
                Some(Verdict::Alive(alive_for)) => self.reaper.alive(&key, alive_for),
                // etcd is deleting it already.
                None => {}
                Some(Verdict::Silent) => match self.revoke(key.lease).await {
                    Ok(()) => {
                        revoked += 1;
                        let Watched { service, id, .. } = &key;
                        tracing::debug!(%service, instance = %id, "no heartbeat for its TTL: lease revoked");
                    }
                    Err(_) => break,
                },
            }
        }
        revoked
    }

    /// Revokes a lease now, deleting the keys on it; one that is gone already is no error.
    async fn revoke(&self, lease: i64) -> Result<(), StoreError> {
        revoke(&self.conn, lease)
            .await
            .map_err(|error| unavailable("revoke a lease", "", &error))
    }

    /// A new etcd lease of `ttl_secs`.
    async fn grant(&self, ttl_secs: u64) -> Result<i64, StoreError> {
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
        self.conn
            .call(|mut client: Client| async move { client.lease_grant(ttl, None).await })
            .await
            .map(|granted| granted.id())
            .map_err(|error| unavailable("grant a lease", "", &error))
    }

    /// Revokes a lease in the background; if that fails it simply runs out.
    fn revoke_later(&self, lease: i64) {
        if lease == 0 {
            return;
        }
        let conn = Arc::clone(&self.conn);
        tokio::spawn(async move {
            if let Err(error) = revoke(&conn, lease).await {
                tracing::debug!(lease, %error, "could not revoke an old etcd lease");
            }
        });
    }

    /// Waits until the mirror has seen `revision`, so this registry reads its own write.
    ///
    /// If the watch is slow to deliver it (it may be backing off after an outage), the
    /// follower is told to reconnect at once.
    async fn caught_up(&self, revision: i64) {
        let soon = Duration::from_millis(100);
        if self.mirror.wait_applied(revision, soon).await {
            return;
        }
        self.retry_now.notify_one();
        let limit = self.conn.attempt_timeout();
        if !self.mirror.wait_applied(revision, limit).await {
            tracing::warn!(
                revision,
                "the etcd watch is behind; reads may miss the latest change for a moment"
            );
        }
    }

    /// Refuses a new instance beyond the limits (as far as this registry's view knows).
    fn check_room(&self, service: &str) -> Result<(), StoreError> {
        let (instances, live_services) = self.mirror.counts(service);
        if instances >= self.limits.max_instances_per_service {
            return Err(StoreError::TooManyInstances {
                limit: self.limits.max_instances_per_service,
            });
        }
        if instances == 0 && live_services >= self.limits.max_services {
            return Err(StoreError::TooManyServices {
                limit: self.limits.max_services,
            });
        }
        Ok(())
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl Store for EtcdStore {
    fn register<'a>(
        &'a self,
        registration: Registration,
        presented: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Registered, StoreError>> {
        Box::pin(EtcdStore::register(self, registration, presented))
    }

    fn heartbeat<'a>(
        &'a self,
        service: &'a str,
        id: &'a str,
        presented: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Duration, StoreError>> {
        Box::pin(EtcdStore::heartbeat(self, service, id, presented))
    }

    fn deregister<'a>(
        &'a self,
        service: &'a str,
        id: &'a str,
        presented: Option<&'a str>,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(EtcdStore::deregister(self, service, id, presented))
    }

    fn services(&self) -> Vec<String> {
        self.mirror.services()
    }

    fn snapshot(&self, service: &str) -> Arc<Snapshot> {
        self.mirror.snapshot(service)
    }

    fn wait_for_change<'a>(
        &'a self,
        service: &'a str,
        index: u64,
        deadline: Instant,
    ) -> StoreFuture<'a, Arc<Snapshot>> {
        Box::pin(self.mirror.wait_for_change(service, index, deadline))
    }

    fn expire(&self) -> StoreFuture<'_, usize> {
        // The watch sees the deletions and counts them as expiries.
        Box::pin(self.reap())
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// Revokes `lease`, deleting the keys on it; a lease that is gone already is no error.
async fn revoke(conn: &Connection, lease: i64) -> Result<(), CallError> {
    let revoked = conn
        .call(|mut client: Client| async move { client.lease_revoke(lease).await })
        .await;
    match revoked {
        Err(error) if !is_lease_not_found(&error) => Err(error),
        _ => Ok(()),
    }
}

fn unknown(service: &str, id: &str) -> StoreError {
    StoreError::UnknownInstance {
        service: service.to_owned(),
        id: id.to_owned(),
    }
}

/// Logs why etcd could not be used and answers 503 without the details.
fn unavailable(operation: &str, key: &str, error: &CallError) -> StoreError {
    tracing::warn!(operation, key, %error, "etcd call failed");
    StoreError::Unavailable
}

/// Logs a write that kept losing its condition and answers 503.
fn contended(operation: &str, key: &str) -> StoreError {
    tracing::warn!(
        operation,
        key,
        attempts = WRITE_ATTEMPTS,
        "etcd key kept changing under a conditional write"
    );
    StoreError::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Metadata;

    #[test]
    fn only_the_lease_replaces_a_registry_record_at_any_address() {
        let lease = Lease::generate();
        let record = Record::new("http://h:1".into(), Metadata::new(), 30, &lease);
        for address in ["http://h:1", "http://h:2"] {
            assert!(may_replace(Some(&record), address, Some(lease.as_str())));
            assert!(!may_replace(Some(&record), address, None));
            assert!(!may_replace(Some(&record), address, Some("wrong")));
        }
    }

    #[test]
    fn a_foreign_record_is_taken_over_only_at_its_own_address() {
        let foreign = Record::parse(br#"{"address":"http://h:1"}"#).unwrap();
        assert!(may_replace(Some(&foreign), "http://h:1", None));
        assert!(!may_replace(Some(&foreign), "http://h:2", None));
        assert!(!may_replace(Some(&foreign), "http://h:2", Some("")));
        // A value that is not a record at all is never replaced.
        assert!(!may_replace(None, "http://h:1", None));
    }
}
