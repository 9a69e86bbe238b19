//! [`Slots`]: the cap on open connections, and what happens at it.
//!
//! Each connection holds a [`Slot`] for as long as it is open. When a new connection
//! arrives and every slot is taken:
//!
//! 1. The longest-idle connection with no request in flight (one still sending its first
//!    request, or an idle keep-alive connection) is closed to make room, and the new one
//!    is served as soon as that one has let go of its slot (at most [`EVICTION_WAIT`]).
//!    Connections that hold a slot without using it (slowloris, idle) are so the first to
//!    go, and a client with a real request still gets in.
//! 2. If every connection has a request in flight, the new one waits up to [`FULL_WAIT`]
//!    for one to finish its request (then evicted as above) or close, and is closed
//!    (refused) if none does. It never hangs.
//!
//! The accept loop admits one connection at a time, so at most one waits at once and open
//! file descriptors stay within the cap plus one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::activity::Activity;

/// Longest a new connection waits for an evicted one to let go of its slot.
pub(crate) const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// Longest a new connection waits for a slot when every open connection is busy.
pub(crate) const FULL_WAIT: Duration = Duration::from_millis(250);

/// While every open connection is busy, how often to look again for one that has finished
/// its request (and so can be evicted).
const LOOK_AGAIN: Duration = Duration::from_millis(10);

/// The open connections, at most `max` of them.
#[derive(Debug)]
pub(crate) struct Slots {
    /// One permit per connection that may still open.
    permits: Arc<Semaphore>,
    /// Every open connection's activity, by a number of its own, so the longest idle can be
    /// found and evicted.
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    /// The last connection's number.
    last_id: AtomicU64,
}

/// How a connection got its slot, or why it did not.
#[derive(Debug)]
pub(crate) enum Admission {
    /// A slot was free.
    Free(Slot),
    /// Another connection, idle, was closed to make room.
    Evicted(Slot),
    /// Every slot stayed taken: the connection is to be closed.
    Refused,
}

/// A connection's place under the cap; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Returned to [`Slots::permits`] on drop.
    _permit: OwnedSemaphorePermit,
    /// This connection's key in [`Slots::open`].
    id: u64,
    slots: Arc<Slots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.open().remove(&self.id);
    }
}

impl Slots {
    /// Room for `max` connections (at least one).
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max.max(1))),
            open: Mutex::new(HashMap::new()),
            last_id: AtomicU64::new(0),
        })
    }

    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        // Nothing panics while holding it; if something did, the map is still usable.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for the connection whose activity this is (see the [module docs](self)).
    pub(crate) async fn admit(self: &Arc<Self>, activity: &Arc<Activity>) -> Admission {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Admission::Free(self.slot(permit, activity));
        }
        // Full: make room by closing the longest-idle connection, looking again every few
        // milliseconds (a busy one may finish its request) until FULL_WAIT has passed.
        let give_up = Instant::now() + FULL_WAIT;
        loop {
            let evicted = self.evict_longest_idle();
            let wait_until = if evicted {
                Instant::now() + EVICTION_WAIT
            } else {
                (Instant::now() + LOOK_AGAIN).min(give_up)
            };
            let permits = Arc::clone(&self.permits);
            match tokio::time::timeout_at(wait_until, permits.acquire_owned()).await {
                Ok(Ok(permit)) if evicted => {
                    return Admission::Evicted(self.slot(permit, activity));
                }
                Ok(Ok(permit)) => return Admission::Free(self.slot(permit, activity)),
                // The semaphore is never closed.
                Ok(Err(_)) => return Admission::Refused,
                Err(_) if evicted || Instant::now() >= give_up => return Admission::Refused,
                Err(_) => {}
            }
        }
    }

    fn slot(self: &Arc<Self>, permit: OwnedSemaphorePermit, activity: &Arc<Activity>) -> Slot {
        let id = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.open().insert(id, Arc::clone(activity));
        Slot {
            _permit: permit,
            id,
            slots: Arc::clone(self),
        }
    }

    /// Tells the open connection idle the longest to close; `false` if every one has a
    /// request in flight (or is already closing).
    fn evict_longest_idle(&self) -> bool {
        let open = self.open();
        // Ties (connections idle since the same instant) go to the one opened first.
        let longest = open
            .iter()
            .filter_map(|(id, activity)| activity.idle_since().map(|since| (since, *id, activity)))
            .min_by_key(|(since, id, _)| (*since, *id));
        match longest {
            Some((_, _, activity)) => {
                activity.evict();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Version;

    use super::*;
    use crate::server::activity::{Expiry, Timeouts};

    const TIMEOUTS: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(75),
    };

    /// Admits a connection (there is room) that lets go of its slot once evicted.
    async fn open(slots: &Arc<Slots>) -> Arc<Activity> {
        let activity = Activity::new(TIMEOUTS);
        let Admission::Free(slot) = slots.admit(&activity).await else {
            panic!("a slot was free");
        };
        let watched = Arc::clone(&activity);
        tokio::spawn(async move {
            if watched.expired().await == Expiry::Evicted {
                drop(slot);
            }
        });
        activity
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_connection_makes_room() {
        let slots = Slots::new(2);
        let oldest = open(&slots).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let newer = open(&slots).await;
        let busy = newer.begin(Version::HTTP_11);
        // Full: the oldest idle one goes, the busy one stays.
        let third = Activity::new(TIMEOUTS);
        let admission = slots.admit(&third).await;
        assert!(matches!(admission, Admission::Evicted(_)), "{admission:?}");
        assert_eq!(oldest.deadline().map(|(_, why)| why), Some(Expiry::Evicted));
        assert_eq!(newer.deadline(), None);
        drop(busy);
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_connection_is_busy_a_new_one_waits_briefly_then_is_refused() {
        let slots = Slots::new(1);
        let only = Activity::new(TIMEOUTS);
        let Admission::Free(slot) = slots.admit(&only).await else {
            panic!("a slot was free");
        };
        let in_flight = only.begin(Version::HTTP_11);
        let start = tokio::time::Instant::now();
        let second = Activity::new(TIMEOUTS);
        assert!(matches!(slots.admit(&second).await, Admission::Refused));
        assert_eq!(start.elapsed(), FULL_WAIT);

        // One that finishes within the wait lets the next in.
        let waiting = {
            let slots = Arc::clone(&slots);
            tokio::spawn(async move { slots.admit(&Activity::new(TIMEOUTS)).await })
        };
        tokio::time::sleep(FULL_WAIT / 2).await;
        drop(in_flight);
        drop(slot);
        let admission = waiting.await.unwrap();
        assert!(
            matches!(admission, Admission::Free(_) | Admission::Evicted(_)),
            "{admission:?}"
        );
    }
}
