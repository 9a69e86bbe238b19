//! Expiry at the registration's TTL, decided by the registries, over etcd leases that
//! outlive a registry outage.
//!
//! An instance key's etcd lease is granted for its TTL plus the *outage grace*
//! ([`EtcdOptions::outage_grace`](super::EtcdOptions::outage_grace)), and a heartbeat
//! renews it to that again. So while no registry is running (nobody can renew anything)
//! etcd keeps every registration for the grace beyond its TTL, and the instances, whose
//! heartbeats fail meanwhile, are still listed when a registry comes back and takes their
//! heartbeats again. Without the grace, a registry down for longer than the TTL came back
//! to an empty service (RELIABILITY.md, finding 6).
//!
//! While a registry runs, it expires instances at their TTL itself:
//!
//! - It remembers, per key and etcd lease, until when it knows the instance is alive: one
//!   TTL after it first saw that lease (a registration by any registry, or its own start:
//!   that is the restart grace, as Consul resets session TTLs on a new leader), after a
//!   heartbeat it handled, or after what etcd says below.
//! - A key past that time is *overdue*: the sweep asks etcd how long its lease has left.
//!   The lease's granted TTL minus what is left is how long ago it was last renewed, by
//!   whichever registry took the heartbeat ([`judge`]). Silent for a whole TTL: the sweep
//!   revokes the lease, etcd deletes the key, and every registry's watch counts an expiry
//!   as before. Otherwise the key is known alive until one TTL after that renewal.
//!
//! With one registry, or heartbeats that keep going to the same one, a live instance never
//! costs an etcd call here; only one that stopped heartbeating (or whose heartbeats went to
//! another registry) is looked up, about once per TTL. etcd reports what is left in whole
//! seconds, so an expiry comes up to a second (and a sweep interval) after the TTL, never
//! before. Keys on a lease this registry did not grant with a grace (a record another tool
//! wrote, or one an older registry made) are left to etcd's own expiry.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// An instance key the sweep watches: a record this store's registries made, on a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Service name.
    pub service: String,
    /// Instance id.
    pub id: String,
    /// The etcd lease the key is on.
    pub lease: i64,
    /// The registration's TTL.
    pub ttl: Duration,
}

/// What etcd's answer about a lease says of its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Renewed within its TTL: alive for at least this much longer.
    Alive(Duration),
    /// Not renewed for a whole TTL (or the lease is gone): expire it.
    Silent,
}

/// Reads etcd's answer for a lease granted `granted_secs` with `left_secs` left (etcd's
/// whole seconds, rounded down; negative once it has run out) for a registration of `ttl`.
///
/// The lease was renewed between `granted - left - 1` and `granted - left` seconds ago;
/// the instance is silent only when even the shorter of those is a whole TTL.
pub fn judge(granted_secs: i64, left_secs: i64, ttl: Duration) -> Verdict {
    if left_secs < 0 {
        return Verdict::Silent;
    }
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let silent_at_least = granted_secs - left_secs - 1;
    if silent_at_least >= ttl_secs {
        return Verdict::Silent;
    }
    let silent_at_most = silent_at_least + 1;
    let alive_for = u64::try_from(ttl_secs - silent_at_most).unwrap_or(0);
    Verdict::Alive(Duration::from_secs(alive_for))
}

/// How soon an overdue key that etcd says is alive, but only just, is looked at again.
const RECHECK: Duration = Duration::from_millis(500);

/// Until when each watched key is known to be alive.
#[derive(Debug)]
pub struct Reaper {
    /// The extra time each etcd lease gets beyond the registration's TTL.
    grace: Duration,
    /// By `(service, id)`: the lease last seen and until when it is known alive.
    known: Mutex<HashMap<(String, String), (i64, Instant)>>,
}

impl Reaper {
    /// A reaper for leases granted `grace` beyond their TTL.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The etcd lease TTL to grant a registration of `ttl_secs`.
    pub fn lease_secs(&self, ttl_secs: u64) -> u64 {
        ttl_secs.saturating_add(self.grace.as_secs())
    }

    /// This registry just heard from the instance (it registered or heartbeat on `lease`).
    pub fn heard(&self, service: &str, id: &str, lease: i64, ttl: Duration) {
        self.lock().insert(
            (service.to_owned(), id.to_owned()),
            (lease, Instant::now() + ttl),
        );
    }

    /// What etcd said of `key`'s `lease`: known alive for `alive_for` more, unless the key
    /// has moved to another lease meanwhile.
    pub fn alive(&self, key: &Watched, alive_for: Duration) {
        let until = Instant::now() + alive_for.max(RECHECK);
        if let Some(known) = self.lock().get_mut(&(key.service.clone(), key.id.clone())) {
            if known.0 == key.lease {
                known.1 = until;
            }
        }
    }

    /// Brings the bookkeeping in line with the keys that exist now and returns those
    /// overdue at `now`. A key on a lease not seen before is alive for one TTL from now.
    pub fn overdue(&self, keys: Vec<Watched>, now: Instant) -> Vec<Watched> {
        let mut known = self.lock();
        let mut kept = HashMap::with_capacity(keys.len());
        let mut overdue = Vec::new();
        for key in keys {
            let name = (key.service.clone(), key.id.clone());
            let until = match known.remove(&name) {
                Some((lease, until)) if lease == key.lease => until,
                _ => now + key.ttl,
            };
            kept.insert(name, (key.lease, until));
            if until <= now {
                overdue.push(key);
            }
        }
        *known = kept;
        overdue
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), (i64, Instant)>> {
        // A panic while the map was held leaves it usable: at worst one key is checked early.
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3);

    fn key(id: &str, lease: i64) -> Watched {
        Watched {
            service: "ratings".into(),
            id: id.into(),
            lease,
            ttl: TTL,
        }
    }

    #[test]
    fn a_lease_renewed_within_the_ttl_is_alive_until_one_ttl_after_the_renewal() {
        // Granted 3 + 60 s. Just renewed: 62 s left (rounded down), alive 3 s at least.
        assert_eq!(judge(63, 62, TTL), Verdict::Alive(Duration::from_secs(2)));
        assert_eq!(judge(63, 63, TTL), Verdict::Alive(Duration::from_secs(3)));
        // Renewed between 2 and 3 s ago: maybe silent for the TTL already, not surely.
        assert_eq!(judge(63, 60, TTL), Verdict::Alive(Duration::ZERO));
    }

    #[test]
    fn a_lease_not_renewed_for_a_whole_ttl_is_silent_though_etcd_still_keeps_it() {
        assert_eq!(judge(63, 59, TTL), Verdict::Silent);
        assert_eq!(judge(63, 1, TTL), Verdict::Silent);
        assert_eq!(judge(63, -1, TTL), Verdict::Silent);
    }

    #[test]
    fn a_lease_granted_for_the_ttl_alone_is_left_to_etcd() {
        // No grace (an older registry's lease, or a grace of 0): never silent while it
        // exists, and alive for what etcd says is left.
        for left in 0..=3 {
            assert_eq!(
                judge(3, left, TTL),
                Verdict::Alive(Duration::from_secs(left as u64))
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_is_overdue_one_ttl_after_it_was_first_seen_or_last_heard() {
        let reaper = Reaper::new(Duration::from_secs(60));
        let start = Instant::now();
        let keys = || vec![key("1", 10), key("2", 20)];
        assert!(reaper.overdue(keys(), start).is_empty());

        tokio::time::advance(Duration::from_secs(2)).await;
        reaper.heard("ratings", "2", 20, TTL);
        assert!(reaper.overdue(keys(), Instant::now()).is_empty());

        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(reaper.overdue(keys(), Instant::now()), [key("1", 10)]);

        // etcd says 1 was renewed (through another registry): alive again for a while.
        reaper.alive(&key("1", 10), Duration::from_secs(2));
        assert!(reaper.overdue(keys(), Instant::now()).is_empty());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            reaper.overdue(keys(), Instant::now()),
            [key("1", 10), key("2", 20)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_lease_or_a_gone_key_resets_the_bookkeeping() {
        let reaper = Reaper::new(Duration::from_secs(60));
        assert!(
            reaper
                .overdue(vec![key("1", 10)], Instant::now())
                .is_empty()
        );
        tokio::time::advance(TTL).await;
        // Re-registered (a new lease): one more TTL from now, not overdue.
        assert!(
            reaper
                .overdue(vec![key("1", 11)], Instant::now())
                .is_empty()
        );
        // What etcd said of the old lease does not count for the new one.
        reaper.alive(&key("1", 10), Duration::from_secs(600));
        tokio::time::advance(TTL).await;
        assert_eq!(
            reaper.overdue(vec![key("1", 11)], Instant::now()),
            [key("1", 11)]
        );
        // Gone, then back on the same lease: seen afresh.
        assert!(reaper.overdue(Vec::new(), Instant::now()).is_empty());
        assert!(
            reaper
                .overdue(vec![key("1", 11)], Instant::now())
                .is_empty()
        );
    }
}
