//! The `watch` program against a real market on port 0: one poll, printed as a plain table
//! (stdout is a pipe here, so no screen clearing and no colour).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use fake_ratings::{Behaviour, ClosedPort, FakeRatings};
use market_app::Config;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::oneshot;

async fn run_watch(args: &[&str]) -> (bool, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        Command::new(env!("CARGO_BIN_EXE_watch"))
            .args(args)
            .env_remove("MARKET_URL")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("watch exits by itself after --count polls")
    .expect("run watch");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
    )
}

#[tokio::test]
async fn watch_prints_the_markets_status_as_a_table() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let market = format!("http://{addr}");
    let config = Config {
        static_ratings: Some(vec![fake.url.clone()]),
        ..Config::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(market_app::run(listener, config, async {
        let _ = stopped.await;
    }));

    let (status, _) = support::http_get(addr, "/api/items").await;
    assert_eq!(status, 200);
    // The history samples every second: wait (bounded) for a sample of instance 1.
    let mut sampled = false;
    for _ in 0..50 {
        let (_, body) = support::http_get(addr, "/api/status/history").await;
        if body.contains("\"state\":\"closed\"") {
            sampled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sampled, "the history has a sample of instance 1 within 5 s");

    let (ok, out) = run_watch(&["--market", &market, "--count", "2", "--interval", "100ms"]).await;
    assert!(ok, "{out}");
    assert_eq!(
        out.matches("ID  ADDRESS").count(),
        2,
        "one table per poll: {out}"
    );
    assert!(!out.contains('\x1b'), "plain text into a pipe: {out:?}");
    assert!(
        out.contains("ID  ADDRESS")
            && out.contains("IN FLIGHT  REQUESTS  FAILURES  P50 MS  P99 MS  SHARE %"),
        "{out}"
    );
    let row: Vec<&str> = out
        .lines()
        .find(|line| line.starts_with("1 "))
        .unwrap_or_else(|| panic!("instance 1 listed: {out}"))
        .split_whitespace()
        .collect();
    // Id, address, breaker, in flight, requests, failures: the page load's four calls.
    assert_eq!(row[..6], ["1", &fake.url, "closed", "0", "4", "0"], "{out}");
    for latency in &row[6..8] {
        assert!(latency.parse::<f64>().is_ok_and(|ms| ms > 0.0), "{out}");
    }
    // The only instance has a full share.
    assert_eq!(row[8], "100.0", "{out}");
    assert_eq!(row.len(), 9, "{out}");
    assert!(
        out.contains("ratings shown: 4 live, 0 cache, 0 stale, 0 none"),
        "{out}"
    );

    // Under the table, the breaker timeline: instance 1 closed up to now.
    assert_eq!(
        out.matches("ratings breakers, last 60 s").count(),
        2,
        "a timeline per poll: {out}"
    );
    let timeline = out
        .lines()
        .find(|line| line.starts_with("1  ") && line.contains('─'))
        .unwrap_or_else(|| panic!("instance 1's timeline: {out}"));
    assert!(timeline.ends_with("─  closed"), "{timeline:?}");
    assert!(out.contains("last events:"), "{out}");
    assert!(out.contains("added     instance 1"), "{out}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    fake.stop().await;
}

#[tokio::test]
async fn watch_says_when_the_market_cannot_be_reached() {
    let port = ClosedPort::bind();
    let closed = port.url.clone();
    let (ok, out) = run_watch(&["--market", &closed, "--count", "1", "--interval", "50ms"]).await;
    assert!(ok);
    assert!(
        out.contains(&format!(
            "cannot get the status from the market at {closed}"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn watch_polls_an_https_market_trusting_its_ca_file() {
    let ca = test_certs::TestCa::new("watch tests CA");
    let issued = ca.server(&["127.0.0.1"]);
    let tls = serving::ServerTls::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let ca_file = ca_file.to_str().unwrap();

    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let server = serving::Server::new(TcpListener::bind("127.0.0.1:0").await.unwrap()).tls(tls);
    let market = server.url().unwrap();
    assert!(market.starts_with("https://"), "{market}");
    let config = Config {
        static_ratings: Some(vec![fake.url.clone()]),
        ..Config::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(market_app::run(server, config, async {
        let _ = stopped.await;
    }));

    let (ok, out) = run_watch(&["--market", &market, "--ca-file", ca_file, "--count", "1"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("ID  ADDRESS"), "a table: {out}");
    assert!(out.contains(&fake.url), "instance 1 listed: {out}");

    // Without the CA the certificate is not trusted, and watch says why.
    let (ok, out) = run_watch(&["--market", &market, "--count", "1"]).await;
    assert!(ok);
    assert!(
        out.contains(&format!(
            "cannot get the status from the market at {market}"
        )) && out.to_lowercase().contains("certificate"),
        "{out}"
    );

    let _ = stop.send(());
    served.await.unwrap().unwrap();
    fake.stop().await;
}
