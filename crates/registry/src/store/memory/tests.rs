use std::time::Duration;

use tokio::time::{Instant, advance};

use super::*;

fn reg(service: &str, id: &str, address: &str) -> Registration {
    Registration {
        service: service.into(),
        id: id.into(),
        address: address.into(),
        metadata: Metadata::new(),
        ttl: Duration::from_secs(10),
    }
}

fn ids(snapshot: &Snapshot) -> Vec<&str> {
    snapshot.instances.iter().map(|i| i.id.as_str()).collect()
}

#[tokio::test(start_paused = true)]
async fn register_publishes_sorted_instances_and_moves_the_index() {
    let store = MemoryStore::default();
    assert_eq!(store.snapshot("ratings").index, 0);

    let first = store
        .register(reg("ratings", "b", "http://127.0.0.1:8002"), None)
        .unwrap();
    assert!(first.created && first.changed);
    assert_eq!(store.snapshot("ratings").index, 1);

    store
        .register(reg("ratings", "a", "http://127.0.0.1:8001"), None)
        .unwrap();
    let snapshot = store.snapshot("ratings");
    assert_eq!(snapshot.index, 2);
    assert_eq!(ids(&snapshot), ["a", "b"]);
    assert_eq!(snapshot.instances[0].address, "http://127.0.0.1:8001");
    assert_eq!(store.services(), ["ratings"]);
}

#[tokio::test(start_paused = true)]
async fn identical_reregistration_and_heartbeats_leave_the_index_alone() {
    let store = MemoryStore::default();
    let first = store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap();
    let index = store.snapshot("ratings").index;

    let ttl = store
        .heartbeat("ratings", "1", Some(first.lease.as_str()))
        .unwrap();
    assert_eq!(ttl, Duration::from_secs(10));
    assert_eq!(store.snapshot("ratings").index, index);

    let again = store
        .register(
            reg("ratings", "1", "http://h:1"),
            Some(first.lease.as_str()),
        )
        .unwrap();
    assert!(!again.created && !again.changed);
    assert_eq!(store.snapshot("ratings").index, index);
    assert_ne!(again.lease, first.lease);
    // The old secret stops working; the new one works.
    assert_eq!(
        store.heartbeat("ratings", "1", Some(first.lease.as_str())),
        Err(StoreError::LeaseMismatch)
    );
    assert!(
        store
            .heartbeat("ratings", "1", Some(again.lease.as_str()))
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn metadata_change_moves_the_index() {
    let store = MemoryStore::default();
    let first = store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap();
    let mut changed = reg("ratings", "1", "http://h:1");
    changed.metadata.insert("zone".into(), "a".into());
    let outcome = store.register(changed, Some(first.lease.as_str())).unwrap();
    assert!(outcome.changed);
    let snapshot = store.snapshot("ratings");
    assert_eq!(snapshot.index, 2);
    assert_eq!(snapshot.instances[0].metadata["zone"], "a");
}

#[tokio::test(start_paused = true)]
async fn moving_a_live_id_needs_its_lease() {
    let store = MemoryStore::default();
    let first = store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap();

    let moved = reg("ratings", "1", "http://evil:1");
    let held = StoreError::LeaseHeld {
        retry_after: Some(Duration::from_secs(10)),
    };
    assert_eq!(store.register(moved.clone(), None).unwrap_err(), held);
    assert_eq!(
        store.register(moved.clone(), Some("0123")).unwrap_err(),
        held
    );
    let snapshot = store.snapshot("ratings");
    assert_eq!(snapshot.index, 1);
    assert_eq!(snapshot.instances[0].address, "http://h:1");
    // The rightful owner's lease still works after the refused attempts.
    assert!(
        store
            .heartbeat("ratings", "1", Some(first.lease.as_str()))
            .is_ok()
    );

    let outcome = store.register(moved, Some(first.lease.as_str())).unwrap();
    assert!(outcome.changed);
    let snapshot = store.snapshot("ratings");
    assert_eq!(snapshot.index, 2);
    assert_eq!(snapshot.instances[0].address, "http://evil:1");
}

#[tokio::test(start_paused = true)]
async fn a_live_id_at_the_same_address_cannot_be_taken_over_without_its_lease() {
    let store = MemoryStore::default();
    let owner = store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap()
        .lease;
    advance(Duration::from_millis(2_500)).await;

    // The hijack of old: same address, no lease (or a wrong one), to get a lease that
    // could then deregister the instance. Refused, saying how long the lease has left.
    for presented in [None, Some("0123"), Some("")] {
        assert_eq!(
            store
                .register(reg("ratings", "1", "http://h:1"), presented)
                .unwrap_err(),
            StoreError::LeaseHeld {
                retry_after: Some(Duration::from_millis(7_500))
            },
            "presented {presented:?}"
        );
    }
    assert_eq!(store.snapshot("ratings").index, 1);
    // The owner is untouched: its lease renews and still deregisters.
    store
        .heartbeat("ratings", "1", Some(owner.as_str()))
        .unwrap();
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        store
            .register(reg("ratings", "1", "http://h:1"), None)
            .unwrap_err(),
        StoreError::LeaseHeld {
            retry_after: Some(Duration::from_secs(9))
        },
        "the heartbeat pushed the expiry back"
    );
    store
        .deregister("ratings", "1", Some(owner.as_str()))
        .unwrap();
    assert!(store.snapshot("ratings").instances.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_holder_re_registers_with_its_lease_and_anyone_may_after_expiry() {
    let store = MemoryStore::default();
    let first = store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap();
    // A restarted instance that kept its lease takes the entry back at once.
    let again = store
        .register(
            reg("ratings", "1", "http://h:1"),
            Some(first.lease.as_str()),
        )
        .unwrap();
    assert!(!again.created && !again.changed);
    assert_eq!(
        store.deregister("ratings", "1", Some(first.lease.as_str())),
        Err(StoreError::LeaseMismatch),
        "the old lease is spent"
    );

    // One that lost it waits out the lease, then registers afresh.
    advance(Duration::from_millis(9_999)).await;
    assert!(matches!(
        store.register(reg("ratings", "1", "http://h:1"), None),
        Err(StoreError::LeaseHeld { .. })
    ));
    advance(Duration::from_millis(1)).await;
    let fresh = store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap();
    assert!(fresh.created);
    store
        .deregister("ratings", "1", Some(fresh.lease.as_str()))
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn heartbeat_and_deregister_check_existence_then_lease() {
    let store = MemoryStore::default();
    let unknown = StoreError::UnknownInstance {
        service: "ratings".into(),
        id: "1".into(),
    };
    assert_eq!(
        store.heartbeat("ratings", "1", Some("x")),
        Err(unknown.clone())
    );
    assert_eq!(
        store.deregister("ratings", "1", Some("x")),
        Err(unknown.clone())
    );

    let first = store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap();
    assert_eq!(
        store.heartbeat("ratings", "1", None),
        Err(StoreError::LeaseMismatch)
    );
    assert_eq!(
        store.deregister("ratings", "1", Some("nope")),
        Err(StoreError::LeaseMismatch)
    );
    assert_eq!(store.snapshot("ratings").instances.len(), 1);

    store
        .deregister("ratings", "1", Some(first.lease.as_str()))
        .unwrap();
    let snapshot = store.snapshot("ratings");
    assert!(snapshot.instances.is_empty());
    assert_eq!(
        snapshot.index, 2,
        "an emptied service keeps (and moved) its index"
    );
    assert!(store.services().is_empty());
    assert_eq!(
        store.heartbeat("ratings", "1", Some(first.lease.as_str())),
        Err(unknown)
    );

    // A later registration continues from the kept index.
    store
        .register(reg("ratings", "2", "http://h:2"), None)
        .unwrap();
    assert_eq!(store.snapshot("ratings").index, 3);
}

#[tokio::test(start_paused = true)]
async fn leases_expire_unless_renewed() {
    let store = MemoryStore::default();
    let lease = store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap()
        .lease;
    store
        .register(reg("other", "1", "http://h:2"), None)
        .unwrap();

    advance(Duration::from_secs(9)).await;
    store
        .heartbeat("ratings", "1", Some(lease.as_str()))
        .unwrap();
    advance(Duration::from_secs(2)).await;
    // "other" lapsed at 10 s; "ratings" was renewed at 9 s until 19 s.
    assert_eq!(store.expire(), 1);
    assert_eq!(store.services(), ["ratings"]);
    assert_eq!(store.snapshot("other").index, 3);

    advance(Duration::from_secs(8)).await;
    // Even without a sweep, a lapsed instance is never visible.
    let snapshot = store.snapshot("ratings");
    assert!(snapshot.instances.is_empty());
    assert_eq!(snapshot.index, 4);
    assert_eq!(store.expire(), 0);
    assert!(matches!(
        store.heartbeat("ratings", "1", Some(lease.as_str())),
        Err(StoreError::UnknownInstance { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn an_expired_id_can_be_taken_over_without_a_lease() {
    let store = MemoryStore::default();
    store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap();
    advance(Duration::from_secs(11)).await;
    let outcome = store
        .register(reg("ratings", "1", "http://h:9"), None)
        .unwrap();
    assert!(outcome.created);
    assert_eq!(store.snapshot("ratings").instances[0].address, "http://h:9");
}

#[tokio::test(start_paused = true)]
async fn instance_limit_is_enforced_per_service() {
    let store = MemoryStore::new(StoreLimits {
        max_services: 10,
        max_instances_per_service: 2,
    });
    store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap();
    let second = store
        .register(reg("ratings", "2", "http://h:2"), None)
        .unwrap();
    assert_eq!(
        store
            .register(reg("ratings", "3", "http://h:3"), None)
            .unwrap_err(),
        StoreError::TooManyInstances { limit: 2 }
    );
    // Re-registering an existing id is still allowed at the limit.
    store
        .register(
            reg("ratings", "2", "http://h:2"),
            Some(second.lease.as_str()),
        )
        .unwrap();
    store
        .register(reg("other", "3", "http://h:3"), None)
        .unwrap();
    assert_eq!(store.snapshot("ratings").instances.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn service_limit_evicts_emptied_services_without_going_backwards() {
    let store = MemoryStore::new(StoreLimits {
        max_services: 2,
        max_instances_per_service: 10,
    });
    let a = store
        .register(reg("a", "1", "http://h:1"), None)
        .unwrap()
        .lease;
    store.register(reg("b", "1", "http://h:1"), None).unwrap();
    assert_eq!(
        store
            .register(reg("c", "1", "http://h:1"), None)
            .unwrap_err(),
        StoreError::TooManyServices { limit: 2 }
    );
    assert_eq!(store.services(), ["a", "b"]);

    store.deregister("a", "1", Some(a.as_str())).unwrap();
    let emptied_index = store.snapshot("a").index;
    assert_eq!(emptied_index, 3);
    store.register(reg("c", "1", "http://h:1"), None).unwrap();
    assert_eq!(store.services(), ["b", "c"]);
    // "a" was evicted; its index must not go back to 0.
    assert!(store.snapshot("a").index >= emptied_index);
}

#[tokio::test(start_paused = true)]
async fn wait_returns_at_once_when_the_index_differs() {
    let store = MemoryStore::default();
    store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(30);
    assert_eq!(store.wait_for_change("ratings", 0, deadline).await.index, 1);
    // A higher index than ours (a client from before a registry restart) also returns.
    assert_eq!(
        store.wait_for_change("ratings", 99, deadline).await.index,
        1
    );
    assert_eq!(Instant::now(), start);
}

#[tokio::test(start_paused = true)]
async fn wait_times_out_with_the_unchanged_snapshot() {
    let store = MemoryStore::default();
    let lease = store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap()
        .lease;
    let start = Instant::now();
    let waiting = store.wait_for_change("ratings", 1, start + Duration::from_secs(5));
    let heartbeats = async {
        // Heartbeats are not changes: they must not end the wait.
        for _ in 0..4 {
            advance(Duration::from_secs(1)).await;
            store
                .heartbeat("ratings", "1", Some(lease.as_str()))
                .unwrap();
        }
    };
    let (snapshot, ()) = tokio::join!(waiting, heartbeats);
    assert_eq!(snapshot.index, 1);
    assert_eq!(snapshot.instances.len(), 1);
    assert_eq!(Instant::now() - start, Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn wait_wakes_on_a_change_without_time_passing() {
    let store = Arc::new(MemoryStore::default());
    store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap();
    let start = Instant::now();
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .wait_for_change("ratings", 1, start + Duration::from_secs(60))
                .await
        })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    store
        .register(reg("ratings", "2", "http://h:2"), None)
        .unwrap();
    let snapshot = waiter.await.unwrap();
    assert_eq!(snapshot.index, 2);
    assert_eq!(ids(&snapshot), ["1", "2"]);
    assert_eq!(
        Instant::now(),
        start,
        "woke by notification, not by the clock"
    );
}

#[tokio::test(start_paused = true)]
async fn wait_on_an_unknown_service_wakes_when_it_appears() {
    let store = Arc::new(MemoryStore::default());
    let start = Instant::now();
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .wait_for_change("ratings", 0, start + Duration::from_secs(60))
                .await
        })
    };
    tokio::task::yield_now().await;
    // A change to another service wakes the waiter, which must go back to waiting.
    store
        .register(reg("other", "1", "http://h:1"), None)
        .unwrap();
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());

    store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap();
    let snapshot = waiter.await.unwrap();
    assert_eq!(snapshot.index, 2);
    assert_eq!(ids(&snapshot), ["1"]);
    assert_eq!(Instant::now(), start);
}

#[tokio::test(start_paused = true)]
async fn wait_wakes_on_expiry() {
    let store = Arc::new(MemoryStore::default());
    store
        .register(reg("ratings", "1", "http://h:1"), None)
        .unwrap();
    let start = Instant::now();
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .wait_for_change("ratings", 1, start + Duration::from_secs(60))
                .await
        })
    };
    tokio::task::yield_now().await;
    advance(Duration::from_secs(10)).await;
    assert_eq!(store.expire(), 1);
    let snapshot = waiter.await.unwrap();
    assert_eq!(snapshot.index, 2);
    assert!(snapshot.instances.is_empty());
    assert_eq!(Instant::now() - start, Duration::from_secs(10));
}
