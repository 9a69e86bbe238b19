//! The walkthrough in DESIGN.md, step by step, with the real programs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::time::Duration;

use system_tests::*;

const ITEMS: [&str; 4] = ["widget", "gadget", "gizmo", "doohickey"];

#[tokio::test]
async fn without_ratings_the_page_shows_prices_and_no_rating_yet() {
    let registry = registry(&[]).await;
    let mut market = market(&registry, &[]).await;
    let page = http().get(&market.url).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert_eq!(html.matches("no rating yet").count(), 4, "{html}");
    assert!(html.contains('$'), "prices shown: {html}");
    let items = market_items(&market).await;
    assert_eq!(items.len(), 4);
    for (id, rating, source, _) in items {
        assert_eq!((rating, source.as_str()), (None, "none"), "{id}");
    }
    market
        .wait_for_log("ratings: all services are down", Duration::from_secs(2))
        .await;
}

#[tokio::test]
async fn ratings_appear_and_calls_interleave_across_instances() {
    let registry = registry(&[]).await;
    let (_r1, _r2) = two_ratings(&registry, &[]).await;
    let mut market = market(&registry, &[]).await;

    let items = market_items(&market).await;
    let ids: Vec<&str> = items.iter().map(|i| i.0.as_str()).collect();
    assert_eq!(ids, ITEMS);
    for (id, rating, source, _) in &items {
        assert!(matches!(rating, Some(1..=5)), "{id}: {rating:?}");
        assert_eq!(source, "live", "{id}");
    }
    let served_by: Vec<u64> = items.iter().filter_map(|i| i.3).collect();
    assert!(
        served_by.contains(&1) && served_by.contains(&2),
        "{served_by:?}"
    );

    let html = http()
        .get(&market.url)
        .send()
        .await
        .expect("GET /")
        .text()
        .await
        .expect("html");
    assert!(!html.contains("no rating yet"), "{html}");

    // The market's terminal shows each call (two page loads, four calls each), on both
    // instances.
    market
        .wait_for_nth_log("ratings using instance", 8, Duration::from_secs(2))
        .await;
    assert!(market.count("ratings using instance 1: http://127.0.0.1:") >= 1);
    assert!(market.count("ratings using instance 2: http://127.0.0.1:") >= 1);
}

#[tokio::test]
async fn total_failure_serves_ratings_from_the_cache_and_says_all_services_are_down() {
    let registry = registry(&[]).await;
    let (mut r1, mut r2) = two_ratings(&registry, &[]).await;
    let mut market = market(&registry, &[]).await;
    let before = market_items(&market).await;
    assert!(before.iter().all(|i| i.2 == "live"), "{before:?}");

    // Ctrl-C both instances: they deregister, and the market hears of it.
    assert!(r1.terminate().await, "instance 1 exits cleanly");
    assert!(r2.terminate().await, "instance 2 exits cleanly");
    wait_for_instances(&registry, "ratings", &[]).await;
    for n in [1, 2] {
        market
            .wait_for_log(
                &format!("ratings instance {n} removed"),
                Duration::from_secs(5),
            )
            .await;
    }

    let after = market_items(&market).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.1, b.1, "same rating for {}", a.0);
        assert!(a.2 == "stale" || a.2 == "cache", "{a:?}");
    }
    market
        .wait_for_log("ratings: all services are down", Duration::from_secs(2))
        .await;
    let html = http()
        .get(&market.url)
        .send()
        .await
        .expect("GET /")
        .text()
        .await
        .expect("html");
    assert!(
        !html.contains("no rating yet"),
        "ratings still shown: {html}"
    );
}

/// Step 4 over gRPC: with every instance gone the page still shows the last good ratings,
/// marked stale, and the market says all services are down.
#[tokio::test]
async fn over_grpc_total_failure_shows_the_last_good_ratings_stale() {
    let registry = registry(&[]).await;
    let (mut r1, mut r2) = two_ratings(&registry, &[]).await;
    let mut market = market(&registry, &["--ratings-protocol", "grpc"]).await;
    let before = market_items(&market).await;
    assert!(before.iter().all(|i| i.2 == "live"), "{before:?}");

    assert!(r1.terminate().await, "instance 1 exits cleanly");
    assert!(r2.terminate().await, "instance 2 exits cleanly");
    wait_for_instances(&registry, "ratings", &[]).await;
    market
        .wait_for_nth_log("removed", 2, Duration::from_secs(5))
        .await;

    let after = market_items(&market).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.1, b.1, "same rating for {}", a.0);
        assert_eq!(a.2, "stale", "{a:?}");
    }
    market
        .wait_for_log("ratings: all services are down", Duration::from_secs(2))
        .await;
}

#[tokio::test]
async fn a_paused_instance_opens_its_breaker_then_retests_and_closes() {
    let registry = registry(&[]).await;
    let (mut r1, _r2) = two_ratings(&registry, &[]).await;
    let mut market = market(&registry, &["--timeout", "300ms", "--retest-delay", "2s"]).await;
    pause_open_retest_resume_close(&mut market, &mut r1).await;
}

/// Step 5 with the market calling ratings over gRPC (`--ratings-protocol grpc`, on the
/// instances' one port): the same lines, the same breaker story. The market marks
/// `GetRating` idempotent, so the calls sent to the paused instance are hedged on the other
/// and the page still shows every rating.
#[tokio::test]
async fn over_grpc_a_paused_instance_opens_its_breaker_then_retests_and_closes() {
    let registry = registry(&[]).await;
    let (mut r1, _r2) = two_ratings(&registry, &[]).await;
    grpc_walkthrough(&registry, &[], &mut r1, "http").await;
}

/// Step 5 over gRPC to `https://` instances: the market (`--ratings-protocol grpc
/// --ca-file`) reaches them over TLS with ALPN `h2`, trusting the test CA, and the breaker
/// story is the same.
#[tokio::test]
async fn over_grpc_and_tls_the_page_shows_live_ratings_and_a_paused_instance_opens_and_closes() {
    let tls = TlsFiles::write();
    let registry = registry(&tls.serve_args()).await;
    let serve_and_trust = [&tls.serve_args()[..], &tls.trust_args()].concat();
    let (mut r1, _r2) = two_ratings(&registry, &serve_and_trust).await;
    grpc_walkthrough(&registry, &tls.trust_args(), &mut r1, "https").await;
}

/// A market over gRPC (with `extra` flags) to instances 1 and 2 at `scheme://` addresses:
/// live ratings, both instances used, then step 5 on instance 1.
async fn grpc_walkthrough(registry: &Proc, extra: &[&str], r1: &mut Proc, scheme: &str) {
    let args = [
        extra,
        &["--ratings-protocol", "grpc"],
        &["--timeout", "300ms", "--retest-delay", "2s"],
    ]
    .concat();
    let mut market = market(registry, &args).await;
    market
        .wait_for_log("ratings: calling ratings over gRPC", Duration::from_secs(2))
        .await;
    let items = market_items(&market).await;
    for (id, rating, source, _) in &items {
        assert!(matches!(rating, Some(1..=5)), "{id}: {rating:?}");
        assert_eq!(source, "live", "{id}");
    }
    market
        .wait_for_nth_log("ratings using instance", 4, Duration::from_secs(2))
        .await;
    for n in [1, 2] {
        let line = format!("ratings using instance {n}: {scheme}://127.0.0.1:");
        assert!(market.count(&line) >= 1, "no {line:?}");
    }
    pause_open_retest_resume_close(&mut market, r1).await;
}

/// An `https://` instance whose certificate the market does not trust (no `--ca-file`) is
/// the instance's failure over gRPC as over HTTP: its breaker opens while the page still
/// loads, without its rating. (The same instance serves the market that trusts the test CA,
/// in the test above.)
#[tokio::test]
async fn over_grpc_an_untrusted_certificate_opens_the_breaker_and_the_page_still_loads() {
    let tls = TlsFiles::write();
    let registry = registry(&[]).await;
    let _r1 = ratings(1, &registry, &tls.serve_args()).await;
    wait_for_instances(&registry, "ratings", &["1"]).await;
    let args = ["--ratings-protocol", "grpc", "--timeout", "300ms"];
    let mut market = market(&registry, &args).await;
    let items = market_items(&market).await;
    assert!(!items.is_empty());
    for (id, rating, _, _) in &items {
        assert_eq!(*rating, None, "{id}: no rating without a trusted instance");
    }
    market
        .wait_for_log(
            "OPEN breaker on [ratings at https://127.0.0.1:",
            Duration::from_secs(5),
        )
        .await;
}

/// With `--ratings-protocol grpc`, `/api/status` shows the instances of the gRPC channel
/// that carries the calls (not the idle HTTP client's): both closed, with the calls each
/// took; then, with instance 1 paused, its breaker open and the other's closed.
#[tokio::test]
async fn over_grpc_the_status_shows_the_channels_breakers() {
    let registry = registry(&[]).await;
    let (mut r1, _r2) = two_ratings(&registry, &[]).await;
    let args = [
        "--ratings-protocol",
        "grpc",
        "--timeout",
        "300ms",
        "--retest-delay",
        "30s",
    ];
    let mut market = market(&registry, &args).await;
    market
        .wait_for_log("ratings: calling ratings over gRPC", Duration::from_secs(2))
        .await;
    let status_url = format!("{}/api/status", market.url);
    // Page loads until each instance has taken calls, as the channel counts them.
    let before = eventually(Duration::from_secs(5), "calls on both instances", || {
        let (market, status_url) = (&market, &status_url);
        async move {
            market_items(market).await;
            let status = get_json(status_url).await;
            let instances = status["instances"].as_array()?;
            let served = |i: &serde_json::Value| i["requests"].as_u64().is_some_and(|n| n > 0);
            instances.iter().all(served).then_some(status)
        }
    })
    .await;
    let states = |status: &serde_json::Value| -> Vec<(String, String)> {
        let instances = status["instances"].as_array().expect("instances");
        let field = |i: &serde_json::Value, name: &str| i[name].as_str().unwrap_or("").to_owned();
        instances
            .iter()
            .map(|i| (field(i, "id"), field(i, "state")))
            .collect()
    };
    let closed = [("1".into(), "closed".into()), ("2".into(), "closed".into())];
    assert_eq!(states(&before), closed, "{before}");
    assert_eq!(before["service"], "ratings", "{before}");

    r1.pause();
    market_items(&market).await;
    let open = format!("OPEN breaker on [ratings at {}]", r1.url);
    market.wait_for_log(&open, Duration::from_secs(2)).await;
    let after = get_json(&status_url).await;
    let opened = [("1".into(), "open".into()), ("2".into(), "closed".into())];
    assert_eq!(states(&after), opened, "{after}");
    assert!(
        after["instances"][0]["failures"].as_u64() >= Some(1),
        "{after}"
    );
    r1.resume();
}

/// The whole walkthrough over TLS: the registry, three instances and the market serve
/// HTTPS with certificates from a test CA and trust it in their calls, the page shows live
/// ratings, and the breaker's lines name `https://` addresses.
#[tokio::test]
async fn over_tls_the_page_shows_live_ratings_and_a_paused_instance_opens_and_closes() {
    let tls = TlsFiles::write();
    let registry = registry(&tls.serve_args()).await;
    assert!(
        registry.url.starts_with("https://127.0.0.1:"),
        "{}",
        registry.url
    );
    let serve_and_trust = [&tls.serve_args()[..], &tls.trust_args()].concat();
    let mut r1 = ratings(1, &registry, &serve_and_trust).await;
    let _r2 = ratings(2, &registry, &serve_and_trust).await;
    let _r3 = ratings(3, &registry, &serve_and_trust).await;
    wait_for_instances(&registry, "ratings", &["1", "2", "3"]).await;
    // Each instance registered the https:// address it serves on.
    let listed = get_json(&format!("{}/v1/services/ratings", registry.url)).await;
    let addresses: Vec<&str> = listed["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["address"].as_str())
        .collect();
    assert_eq!(addresses.len(), 3, "{listed}");
    assert!(
        addresses
            .iter()
            .all(|a| a.starts_with("https://127.0.0.1:")),
        "{listed}"
    );
    assert!(addresses.contains(&r1.url.as_str()), "{listed}");

    let market_args = [
        &serve_and_trust[..],
        &["--timeout", "300ms", "--retest-delay", "2s"],
    ]
    .concat();
    let mut market = market(&registry, &market_args).await;
    assert!(
        market.url.starts_with("https://127.0.0.1:"),
        "{}",
        market.url
    );
    let (status, html) = get(&market.url).await;
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("no rating yet"), "ratings shown: {html}");
    let items = market_items(&market).await;
    assert_eq!(items.len(), 4);
    for (id, rating, source, _) in &items {
        assert!(matches!(rating, Some(1..=5)), "{id}: {rating:?}");
        assert_eq!(source, "live", "{id}");
    }
    market
        .wait_for_log("ratings using instance", Duration::from_secs(2))
        .await;
    let calls: Vec<String> = market
        .lines()
        .into_iter()
        .filter(|l| l.contains("ratings using instance"))
        .collect();
    assert!(
        calls
            .iter()
            .all(|l| l.contains(": https://127.0.0.1:") && !l.contains("http://")),
        "every call names an https:// instance: {calls:#?}"
    );

    pause_open_retest_resume_close(&mut market, &mut r1).await;
}

/// Step 5 of the walkthrough, with `r1` among the market's instances (the market started
/// with `--timeout 300ms --retest-delay 2s`): the calls sent to it are hedged on
/// another instance and its breaker opens, nothing is sent to it until the retest, and
/// once resumed the probe closes it and traffic reaches it again.
async fn pause_open_retest_resume_close(market: &mut Proc, r1: &mut Proc) {
    market_items(market).await;
    let url1 = r1.url.clone();
    let using1 = format!("ratings using instance 1: {url1}");

    // Ctrl-Z instance 1: the attempts sent to it time out and open its breaker.
    r1.pause();
    let items = market_items(market).await;
    hedged_around(market, &items).await;
    let open = format!("OPEN breaker on [ratings at {url1}]");
    market.wait_for_log(&open, Duration::from_secs(2)).await;

    // Until the retest delay passes, nothing goes to instance 1.
    let calls_to_1 = market.count(&using1);
    for _ in 0..3 {
        let items = market_items(market).await;
        assert!(
            items
                .iter()
                .all(|i| i.2 == "live" && i.3.is_some_and(|n| n != 1)),
            "{items:?}"
        );
    }
    assert_eq!(
        market.count(&using1),
        calls_to_1,
        "no request to an open instance"
    );
    assert_eq!(market.count("RETEST breaker"), 0, "too early for a retest");

    // After the delay the breaker retests by itself.
    let retest = format!("RETEST breaker on [ratings at {url1}]");
    market.wait_for_log(&retest, Duration::from_secs(4)).await;

    // `fg` instance 1; the next probe succeeds and closes the breaker.
    r1.resume();
    market_items(market).await;
    let close = format!("CLOSE breaker on [ratings at {url1}]");
    market.wait_for_log(&close, Duration::from_secs(2)).await;

    // Traffic interleaves again. A just-resumed instance (working off what queued while it
    // was stopped) may answer slowly at first, and latency-aware picking then gives it less
    // for a moment: within a few pages it serves again, beside the others.
    let mut served_by: Vec<u64> = Vec::new();
    for _ in 0..10 {
        let items = market_items(market).await;
        served_by.extend(items.iter().filter_map(|i| i.3));
        if served_by.contains(&1) && served_by.iter().any(|&n| n != 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served_by.contains(&1) && served_by.iter().any(|&n| n != 1),
        "{served_by:?}"
    );
    assert_eq!(market.count(&open), 1, "opened once");
}

/// The page loaded while instance 1 is paused, with hedging: every rating is still shown,
/// as the calls did not wait for the timeout: they were hedged on another instance, and the
/// terminal says so. (The hedge delay is twice the recent p99 latency, at least 50 ms: over
/// TLS the first calls' handshakes can make it a few ms more.)
async fn hedged_around(market: &mut Proc, items: &[(String, Option<u64>, String, Option<u64>)]) {
    assert!(
        items.iter().all(|i| i.1.is_some()),
        "every rating still shown: {items:?}"
    );
    let hedged = market
        .wait_for_log(
            "ratings instance 1 has not answered in ",
            Duration::from_secs(2),
        )
        .await;
    assert!(hedged.contains("ms: hedging on instance "), "{hedged}");
}
