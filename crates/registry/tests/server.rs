//! Real sockets: `registry::run` on a port-0 listener, and the `registry` binary itself.

// Tests panic on unexpected errors; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use registry::Config;
use serde_json::{Value, json};
use tokio::process::Command;

use support::binary::spawn_binary;
use support::get_json;
use support::server::Server;

#[tokio::test]
async fn serves_the_api_over_http() {
    let server = Server::start(Config::default()).await;
    let http = reqwest::Client::new();
    let url = &server.url;

    let health = get_json(&http, &format!("{url}/health")).await;
    assert_eq!(health, json!({ "status": "ok" }));

    let answer = http
        .put(format!("{url}/v1/services/ratings/instances/1"))
        .json(&json!({ "address": "http://127.0.0.1:8001", "ttl_secs": 30 }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let registered: Value = answer.json().await.unwrap();
    let lease = registered["lease"].as_str().unwrap().to_owned();
    assert_eq!(registered["ttl_secs"], 30);

    let answer = http
        .get(format!("{url}/v1/services/ratings"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["x-registry-index"], "1");
    let body: Value = answer.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "index": 1,
            "instances": [{ "id": "1", "address": "http://127.0.0.1:8001", "metadata": {} }]
        })
    );

    // A parked blocking query is answered within milliseconds of a change.
    let watch = tokio::spawn({
        let http = http.clone();
        let url = format!("{url}/v1/services/ratings?index=1&wait=30s");
        async move {
            let answer = http.get(url).send().await.unwrap();
            (Instant::now(), answer.json::<Value>().await.unwrap())
        }
    });
    // Give the query time to reach the server and park (it would return at once with
    // index 2 if it arrived after the deregistration, failing the timing check below
    // only if it were *not* woken).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !watch.is_finished(),
        "the query blocks while nothing changes"
    );
    let answer = http
        .delete(format!("{url}/v1/services/ratings/instances/1"))
        .header("X-Lease", &lease)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let changed_at = Instant::now();
    let (answered_at, body) = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the blocking query was woken")
        .unwrap();
    assert!(
        answered_at.duration_since(changed_at) < Duration::from_secs(1),
        "woken {:?} after the change",
        answered_at.duration_since(changed_at)
    );
    assert_eq!(body, json!({ "index": 2, "instances": [] }));

    let services = get_json(&http, &format!("{url}/v1/services")).await;
    assert_eq!(services, json!({ "services": [] }));

    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_bodies_get_a_json_413_over_the_wire() {
    let server = Server::start(Config::default()).await;
    let http = reqwest::Client::new();
    let huge = format!(
        r#"{{"address":"http://127.0.0.1:1","metadata":{{"k":"{}"}}}}"#,
        "v".repeat(100_000)
    );
    for _ in 0..10 {
        let answer = http
            .put(format!("{}/v1/services/ratings/instances/1", server.url))
            .header("content-type", "application/json")
            .body(huge.clone())
            .send()
            .await
            .expect("the 413 answer arrives");
        assert_eq!(answer.status(), 413);
        let body: Value = answer.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("length limit"),
            "{body}"
        );
    }
    let services = get_json(&http, &format!("{}/v1/services", server.url)).await;
    assert_eq!(services, json!({ "services": [] }));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_releases_parked_blocking_queries() {
    let server = Server::start(Config::default()).await;
    let http = reqwest::Client::new();
    let watch = tokio::spawn({
        let url = format!("{}/v1/services/ratings?index=0&wait=60s", server.url);
        async move { get_json(&http, &url).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!watch.is_finished());
    let started = Instant::now();
    server.stop().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let body = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the parked query was answered")
        .unwrap();
    assert_eq!(body, json!({ "index": 0, "instances": [] }));
}

#[tokio::test]
async fn binary_logs_its_address_and_exits_cleanly_on_sigterm() {
    let (child, url, log) = spawn_binary(&["--listen", "127.0.0.1:0"]).await;
    for line in &log {
        assert!(
            !line.contains('\u{1b}'),
            "no ANSI colours on a pipe: {line:?}"
        );
    }
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(!url.ends_with(":0"), "the real port is logged: {url}");

    let health = get_json(&reqwest::Client::new(), &format!("{url}/health")).await;
    assert_eq!(health, json!({ "status": "ok" }));

    exits_cleanly_on_sigterm(child).await;
}

#[tokio::test]
async fn sigterm_sent_on_reading_listening_on_is_a_clean_shutdown() {
    // The handlers are installed before the line is logged, so there is no window in which
    // SIGTERM kills the process instead of shutting it down.
    for _ in 0..5 {
        let (child, _url, _log) = spawn_binary(&["--listen", "127.0.0.1:0"]).await;
        exits_cleanly_on_sigterm(child).await;
    }
}

/// Sends SIGTERM to `child` and asserts it exits successfully within 10 s.
async fn exits_cleanly_on_sigterm(mut child: tokio::process::Child) {
    let pid = child.id().expect("still running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within 10 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit}");
}

#[tokio::test]
async fn binary_refuses_bad_configuration() {
    for (args, needle) in [
        (&["--listen", "0.0.0.0:0"][..], "--allow-remote"),
        (&["--max-wait", "soon"], "--max-wait"),
        (&["--min-ttl", "10s", "--default-ttl", "5s"], "--min-ttl"),
    ] {
        let output = tokio::time::timeout(
            Duration::from_secs(20),
            Command::new(env!("CARGO_BIN_EXE_registry"))
                .args(args)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("exits at once")
        .unwrap();
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
