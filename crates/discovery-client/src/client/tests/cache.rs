//! The response cache through the client: fresh answers, coalesced misses, stale fallback,
//! one decode per answer, and the instance each answer came from.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::breaker::BreakerState;

#[tokio::test(start_paused = true)]
async fn when_every_instance_fails_the_last_good_answer_is_served_stale_with_its_instance() {
    let (transport, mut fakes) = instances(2);
    let c = client(&transport, &fakes)
        .cache_ttl(Duration::ZERO)
        .build()
        .expect("client");
    let first = c
        .get_json_cached::<Rating>("/ratings/widget")
        .await
        .expect("live");
    assert_eq!((first.source, first.value.instance), (Source::Live, 1));
    assert_eq!(first.instance.address, fakes[0].url);
    // Instance 1 starts failing; instance 2 refuses connections.
    fakes[0].set(Behaviour::Status(500));
    drop(fakes.remove(1));
    let stale = c
        .get_json_cached::<Rating>("/ratings/widget")
        .await
        .expect("stale");
    assert_eq!((stale.source, stale.value.instance), (Source::Stale, 1));
    assert_eq!(
        stale.instance.id, "1",
        "the instance that gave the answer, back then"
    );
    let states: Vec<_> = c.instances().iter().map(|i| i.state).collect();
    assert_eq!(states, [BreakerState::Open; 2]);
    // Nothing cached for another path: the error comes through.
    let error = c
        .get_json_cached::<Rating>("/ratings/gadget")
        .await
        .unwrap_err();
    assert_eq!(error, all_down());
}

/// moka keeps its own clock: expiry is tested with a short real TTL.
#[tokio::test]
async fn concurrent_misses_make_one_call_and_answers_expire() {
    let (transport, fakes) = instances(1);
    // Slow enough that the ten calls overlap.
    fakes[0].set(after(50, Behaviour::Ratings));
    let c = client(&transport, &fakes)
        .cache_ttl(Duration::from_millis(300))
        .build()
        .expect("client");
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get_json_cached::<Rating>("/ratings/widget").await })
        })
        .collect();
    let mut sources = Vec::new();
    for call in calls {
        let cached = call.await.expect("task").expect("answer");
        assert_eq!(cached.instance.id, "1");
        sources.push(cached.source);
    }
    assert_eq!(fakes[0].hits(), 1, "ten concurrent misses, one call");
    assert_eq!(
        sources.iter().filter(|s| **s == Source::Live).count(),
        1,
        "{sources:?}"
    );
    let hit = c
        .get_json_cached::<Rating>("/ratings/widget")
        .await
        .expect("hit");
    assert_eq!((hit.source, hit.instance.id.as_str()), (Source::Cache, "1"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let live = c
        .get_json_cached::<Rating>("/ratings/widget")
        .await
        .expect("live");
    assert_eq!(live.source, Source::Live);
    assert_eq!(fakes[0].hits(), 2);
}

/// A rating that counts how often it is decoded.
#[derive(Debug)]
struct Counted;

static DECODED: AtomicUsize = AtomicUsize::new(0);

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Rating::deserialize(d)?;
        DECODED.fetch_add(1, Ordering::SeqCst);
        Ok(Counted)
    }
}

#[tokio::test(start_paused = true)]
async fn each_answer_is_decoded_once() {
    let (transport, fakes) = instances(1);
    let c = client(&transport, &fakes).build().expect("client");
    let decoded = || DECODED.load(Ordering::SeqCst);
    let before = decoded();
    let miss = c
        .get_json_cached::<Counted>("/ratings/widget")
        .await
        .expect("live");
    assert_eq!(
        (miss.source, decoded() - before),
        (Source::Live, 1),
        "judged and kept"
    );
    let hit = c
        .get_json_cached::<Counted>("/ratings/widget")
        .await
        .expect("hit");
    assert_eq!(
        (hit.source, decoded() - before),
        (Source::Cache, 2),
        "from the cache"
    );
    c.get_json::<Counted>("/ratings/widget")
        .await
        .expect("uncached");
    assert_eq!(decoded() - before, 3, "uncached: once");
}
