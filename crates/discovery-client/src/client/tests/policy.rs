//! The failure policy through the client, on paused time: an instance that fails a third of
//! its calls, never two in a row.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::FailureRate;
use crate::breaker::BreakerState;

const ONE: &str = "http://10.0.0.1:80";
const TWO: &str = "http://10.0.0.2:80";

/// A client of two instances: ONE answers 500 to every third request it gets, TWO always
/// answers. Also returns the count of requests ONE got.
fn one_in_three_failing(policy: ServiceClientBuilder) -> (ServiceClient, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let transport = tower::service_fn(move |request: http::Request<Bytes>| {
        let one = request.uri().host() == Some("10.0.0.1");
        let failed = one && counted.fetch_add(1, Ordering::SeqCst) % 3 == 2;
        let instance = if one { 1 } else { 2 };
        async move {
            let body = format!(r#"{{"item_id":"widget","rating":4,"instance":{instance}}}"#);
            let mut answer = http::Response::new(Full::new(Bytes::from(body)));
            if failed {
                *answer.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            }
            Ok::<_, std::convert::Infallible>(answer)
        }
    });
    let client = policy
        .discovery(StaticDiscovery::new([ONE, TWO]))
        .transport(transport)
        .timeout(TIMEOUT)
        .retest_delay(RETEST)
        .build()
        .expect("client");
    (client, hits)
}

/// Sends `calls` calls 100 ms apart; every one must succeed. Returns how many times ONE's
/// breaker opened, and how many requests ONE had got when it first opened.
async fn run(client: &ServiceClient, hits: &AtomicUsize, calls: usize) -> (usize, Option<usize>) {
    let mut events = client.subscribe();
    let (mut openings, mut first) = (0, None);
    for _ in 0..calls {
        client
            .get_json::<Rating>("/ratings/widget")
            .await
            .expect("a retry on TWO hides ONE's failures");
        while let Ok(event) = events.try_recv() {
            if event == opened(ONE) {
                openings += 1;
                first.get_or_insert(hits.load(Ordering::SeqCst));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (openings, first)
}

#[tokio::test(start_paused = true)]
async fn a_failure_rate_keeps_out_an_instance_that_never_fails_twice_in_a_row() {
    let base = || ServiceClient::builder("ratings");
    // Two in a row: never opens, and ONE keeps failing a third of its calls.
    let (c, hits) = one_in_three_failing(base().failure_limit(2));
    assert_eq!(run(&c, &hits, 60).await, (0, None));
    assert!(hits.load(Ordering::SeqCst) >= 30, "ONE kept its share");
    // One failure (the default): opens at every failure, each probe lets it back in.
    let (c, hits) = one_in_three_failing(base());
    let (flaps, first) = run(&c, &hits, 60).await;
    assert_eq!((flaps, first), (7, Some(3)));
    // A quarter of 10 within 10 s: opens at ONE's tenth request, then only after ten more
    // outcomes once a probe has closed it.
    let rate = FailureRate {
        ratio: 0.25,
        min_requests: 10,
        window: Duration::from_secs(10),
    };
    let (c, hits) = one_in_three_failing(base().failure_policy(rate));
    assert_eq!(run(&c, &hits, 60).await, (3, Some(10)));
    let states: Vec<_> = c.instances().iter().map(|i| i.state).collect();
    assert_eq!(states[1], BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_bad_failure_rate_is_a_config_error_naming_it() {
    let (transport, fakes) = instances(1);
    let bad = |rate| {
        client(&transport, &fakes)
            .failure_policy(rate)
            .build()
            .expect_err("refused")
    };
    let ten = Duration::from_secs(10);
    let ratio = bad(FailureRate {
        ratio: 1.5,
        min_requests: 10,
        window: ten,
    });
    assert!(
        matches!(ratio, Error::Config(ref m) if m.contains("ratio")),
        "{ratio}"
    );
    let min = bad(FailureRate {
        ratio: 0.5,
        min_requests: 0,
        window: ten,
    });
    assert!(
        matches!(min, Error::Config(ref m) if m.contains("min_requests")),
        "{min}"
    );
    let window = bad(FailureRate {
        ratio: 0.5,
        min_requests: 10,
        window: Duration::ZERO,
    });
    assert!(
        matches!(window, Error::Config(ref m) if m.contains("window")),
        "{window}"
    );
    // The last of failure_limit and failure_policy wins.
    let limit_last = client(&transport, &fakes)
        .failure_policy(FailureRate {
            ratio: 1.5,
            min_requests: 10,
            window: ten,
        })
        .failure_limit(1)
        .build();
    assert!(limit_last.is_ok());
}
