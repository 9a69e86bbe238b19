//! [`CacheLayer`] by itself over a small counting upstream (moka keeps its own clock, so
//! expiry uses short real TTLs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use futures::future::BoxFuture;
use tower::{Layer, ServiceExt};

use super::*;
use crate::test_metrics::{TestRecorder, key};

/// What the upstream does: 0 answers with its status, 1 fails with an error.
#[derive(Debug, Default)]
struct Upstream {
    status: AtomicU16,
    failing: std::sync::atomic::AtomicBool,
    hits: AtomicUsize,
}

type Svc = tower::util::BoxCloneService<http::Request<()>, http::Response<Bytes>, Error>;

fn upstream(delay: Duration) -> (Arc<Upstream>, Svc) {
    let state = Arc::new(Upstream::default());
    state.status.store(200, Ordering::SeqCst);
    let shared = Arc::clone(&state);
    let svc = tower::service_fn(
        move |_: http::Request<()>| -> BoxFuture<'static, Result<http::Response<Bytes>, Error>> {
            let state = Arc::clone(&shared);
            Box::pin(async move {
                let n = state.hits.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                if state.failing.load(Ordering::SeqCst) {
                    return Err(Error::Http {
                        address: "http://a".into(),
                        message: "connection refused".into(),
                    });
                }
                let mut answer = http::Response::new(Bytes::from(format!("answer {n}")));
                *answer.status_mut() =
                    http::StatusCode::from_u16(state.status.load(Ordering::SeqCst))
                        .expect("status");
                Ok(answer)
            })
        },
    );
    (state, tower::util::BoxCloneService::new(svc))
}

fn layer(ttl_ms: u64) -> CacheLayer {
    CacheLayer::new(
        "ratings",
        CacheConfig {
            ttl: Duration::from_millis(ttl_ms),
            ..CacheConfig::default()
        },
    )
}

fn get(path: &str) -> http::Request<()> {
    http::Request::get(path).body(()).expect("request")
}

async fn fetch(svc: CacheService<Svc>, path: &str) -> Result<(String, Option<Source>), Error> {
    let answer = svc.oneshot(get(path)).await?;
    let source = answer.extensions().get::<Source>().copied();
    let body = String::from_utf8(answer.into_body().to_vec()).expect("utf-8");
    Ok((body, source))
}

#[tokio::test]
async fn concurrent_misses_make_one_upstream_call_then_hits_are_served_from_the_cache() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (state, inner) = upstream(Duration::from_millis(100));
    let svc = layer(10_000).layer(inner);
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { fetch(svc.clone(), "/ratings/widget").await })
        })
        .collect();
    let mut live = 0;
    for call in calls {
        let (body, source) = call.await.expect("task").expect("answer");
        assert_eq!(body, "answer 0");
        live += usize::from(source == Some(Source::Live));
    }
    assert_eq!(state.hits.load(Ordering::SeqCst), 1, "coalesced");
    assert_eq!(live, 1);
    let (_, source) = fetch(svc.clone(), "/ratings/widget").await.expect("hit");
    assert_eq!(source, Some(Source::Cache));
    let (body, _) = fetch(svc.clone(), "/ratings/widget?fresh=1")
        .await
        .expect("miss");
    assert_eq!(body, "answer 1", "the query is part of the key");
    let count = |result| {
        recorder.counter(&key(
            "discovery_client_cache_total",
            &[("service", "ratings"), ("result", result)],
        ))
    };
    assert_eq!((count("hit"), count("miss"), count("stale")), (10, 2, 0));
}

#[tokio::test]
async fn failures_fall_back_to_the_stale_answer_and_4xx_comes_through() {
    let (state, inner) = upstream(Duration::ZERO);
    let svc = layer(50).layer(inner);
    assert_eq!(
        fetch(svc.clone(), "/a").await.expect("live"),
        ("answer 0".into(), Some(Source::Live))
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    state.failing.store(true, Ordering::SeqCst);
    assert_eq!(
        fetch(svc.clone(), "/a").await.expect("stale"),
        ("answer 0".into(), Some(Source::Stale))
    );
    state.failing.store(false, Ordering::SeqCst);
    state.status.store(503, Ordering::SeqCst);
    assert_eq!(
        fetch(svc.clone(), "/a").await.expect("stale"),
        ("answer 0".into(), Some(Source::Stale)),
        "a 5xx answer is a failure too"
    );
    state.status.store(404, Ordering::SeqCst);
    let (body, source) = fetch(svc.clone(), "/a").await.expect("the 404 itself");
    assert_eq!(source, None, "a 4xx is the caller's answer, not replaced");
    assert!(body.starts_with("answer"), "{body}");
    // Nothing known for another path: the error comes through.
    state.failing.store(true, Ordering::SeqCst);
    assert!(matches!(
        fetch(svc.clone(), "/b").await,
        Err(Error::Http { .. })
    ));
    svc.clear();
    assert!(
        fetch(svc.clone(), "/a").await.is_err(),
        "cleared: no stale answer left"
    );
}

#[tokio::test]
async fn other_methods_bypass_the_cache() {
    let (state, inner) = upstream(Duration::ZERO);
    let svc = layer(10_000).layer(inner);
    for _ in 0..2 {
        let answer = svc
            .clone()
            .oneshot(http::Request::post("/a").body(()).expect("request"))
            .await
            .expect("answer");
        assert_eq!(answer.extensions().get::<Source>(), None);
    }
    assert_eq!(state.hits.load(Ordering::SeqCst), 2);
}
