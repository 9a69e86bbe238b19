//! The background task that removes instances whose lease ran out.
//!
//! Every memory store operation already expires lapsed leases before it runs, so readers
//! never see one; the sweeper exists so that *blocking* readers learn about an expiry
//! promptly even when nothing else touches the store. On etcd it is what expires instances
//! at their TTL (see the etcd store's `reaper`). It ticks every `--sweep-interval` on tokio's
//! clock (so paused-time tests drive it) and stops when the [`Shutdown`] signal fires.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::shutdown::Shutdown;
use crate::store::Store;

/// Spawns the sweeper; it exits when `shutdown` fires. Await the handle to be sure it has.
/// `every` is raised to at least 1 ms.
pub fn spawn<S>(store: Arc<S>, every: Duration, shutdown: Shutdown) -> JoinHandle<()>
where
    S: Store + ?Sized,
{
    // `interval` panics on a zero period.
    let every = every.max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            // A sweep waiting on etcd is dropped at shutdown.
            tokio::select! {
                () = shutdown.triggered() => break,
                _ = async {
                    ticks.tick().await;
                    store.expire().await
                } => {}
            }
        }
        tracing::debug!("sweeper stopped");
    })
}

#[cfg(test)]
mod tests {
    use tokio::time::advance;

    use super::*;
    use crate::store::{MemoryStore, Metadata, Registration};

    #[tokio::test(start_paused = true)]
    async fn sweeps_expired_leases_and_stops_on_shutdown() {
        let store = Arc::new(MemoryStore::default());
        store
            .register(
                Registration {
                    service: "ratings".into(),
                    id: "1".into(),
                    address: "http://h:1".into(),
                    metadata: Metadata::new(),
                    ttl: Duration::from_secs(1),
                },
                None,
            )
            .unwrap();
        let start = tokio::time::Instant::now();
        let shutdown = Shutdown::new();
        let task = spawn(
            Arc::clone(&store),
            Duration::from_millis(250),
            shutdown.clone(),
        );
        let waiter = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                store.wait_for_change("ratings", 1, deadline).await
            })
        };
        // The waiter only wakes if the sweeper expires the lease (nothing else touches
        // the store), shortly after the 1 s TTL.
        let snapshot = waiter.await.unwrap();
        assert!(snapshot.instances.is_empty());
        assert_eq!(snapshot.index, 2);
        let elapsed = tokio::time::Instant::now() - start;
        assert!(
            elapsed >= Duration::from_secs(1) && elapsed <= Duration::from_millis(1250),
            "expired after {elapsed:?}"
        );

        shutdown.trigger();
        advance(Duration::from_millis(1)).await;
        task.await.unwrap();
    }
}
