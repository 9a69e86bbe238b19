use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use super::*;

fn config(ttl_ms: u64) -> CacheConfig {
    CacheConfig {
        ttl: Duration::from_millis(ttl_ms),
        ..CacheConfig::default()
    }
}

fn refused() -> Error {
    Error::Http {
        address: "http://127.0.0.1:1".into(),
        message: "connection refused".into(),
    }
}

#[tokio::test]
async fn fresh_hit_then_expiry_then_live_again() {
    let cache = ResponseCache::new(&config(150));
    let calls = AtomicUsize::new(0);
    let fetch = || async {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        Ok(Bytes::from(format!("answer {n}")))
    };
    assert_eq!(
        cache.get_or_fetch("/a", fetch()).await,
        Ok((Bytes::from("answer 0"), Source::Live))
    );
    assert_eq!(
        cache.get_or_fetch("/a", fetch()).await,
        Ok((Bytes::from("answer 0"), Source::Cache))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        cache.get_or_fetch("/a", fetch()).await,
        Ok((Bytes::from("answer 1"), Source::Live))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_misses_make_one_upstream_call() {
    let cache = Arc::new(ResponseCache::new(&config(10_000)));
    let calls = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        at_once(20, &cache, &calls).await,
        1,
        "exactly the caller that fetched sees Live"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "coalesced into one call");
}

/// `n` concurrent callers of one key whose fetch takes 100 ms; how many saw `Live`.
async fn at_once(n: usize, cache: &Arc<ResponseCache>, calls: &Arc<AtomicUsize>) -> usize {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let cache = Arc::clone(cache);
            let calls = Arc::clone(calls);
            tokio::spawn(async move {
                cache
                    .get_or_fetch("/same", async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(Bytes::from_static(b"one"))
                    })
                    .await
            })
        })
        .collect();
    let mut live = 0;
    for task in tasks {
        let (body, source) = task.await.expect("task").expect("answer");
        assert_eq!(body, Bytes::from_static(b"one"));
        live += usize::from(source == Source::Live);
    }
    live
}

#[tokio::test]
async fn zero_ttl_shares_a_fetch_only_when_the_client_is_swamped() {
    let cache = Arc::new(ResponseCache::new(&config(0)));
    let calls = Arc::new(AtomicUsize::new(0));
    // A few at once: nobody waits on anybody else's fetch.
    assert_eq!(at_once(20, &cache, &calls).await, 20);
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    // Past the threshold, the calls beyond it share one fetch.
    let swamped = COALESCE_ABOVE + 20;
    assert_eq!(at_once(swamped, &cache, &calls).await, COALESCE_ABOVE + 1);
    assert_eq!(calls.load(Ordering::SeqCst), 20 + COALESCE_ABOVE + 1);
    // Done: the next callers fetch again.
    assert_eq!(at_once(3, &cache, &calls).await, 3);
}

#[tokio::test]
async fn failure_falls_back_to_stale_and_says_so() {
    let cache = ResponseCache::new(&config(50));
    cache
        .get_or_fetch("/a", async { Ok(Bytes::from_static(b"good")) })
        .await
        .expect("first fetch");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let answer = cache.get_or_fetch("/a", async { Err(refused()) }).await;
    assert_eq!(answer, Ok((Bytes::from_static(b"good"), Source::Stale)));
    // Nothing known for another key: the error comes through unchanged.
    let missing = cache.get_or_fetch("/b", async { Err(refused()) }).await;
    assert_eq!(missing, Err(refused()));
}

#[tokio::test]
async fn zero_ttl_fetches_every_call_in_turn_and_keeps_stale_fallback() {
    let cache = ResponseCache::new(&config(0));
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        let (_, source) = cache
            .get_or_fetch("/a", async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(Bytes::from_static(b"v"))
            })
            .await
            .expect("fetch");
        assert_eq!(source, Source::Live);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let answer = cache.get_or_fetch("/a", async { Err(refused()) }).await;
    assert_eq!(answer, Ok((Bytes::from_static(b"v"), Source::Stale)));
    cache.clear();
    let answer = cache.get_or_fetch("/a", async { Err(refused()) }).await;
    assert_eq!(answer, Err(refused()));
}
