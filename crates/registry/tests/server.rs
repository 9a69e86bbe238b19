//! Real sockets: `registry::run` on a port-0 listener, and the `registry` binary itself.

// Tests panic on unexpected errors; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use registry::Config;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(config: Config) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(registry::run(listener, config, async {
        let _ = stopped.await;
    }));
    Server {
        url: format!("http://{addr}"),
        stop: Some(stop),
        task,
    }
}

impl Server {
    /// Stops the server and waits (at most 5 s) for `run` to return.
    async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("run returns promptly after shutdown")
            .expect("run did not panic")
    }
}

#[tokio::test]
async fn serves_the_api_over_http() {
    let server = start(Config::default()).await;
    let http = reqwest::Client::new();
    let url = &server.url;

    let health: Value = http
        .get(format!("{url}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

    let services: Value = http
        .get(format!("{url}/v1/services"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(services, json!({ "services": [] }));

    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_bodies_get_a_json_413_over_the_wire() {
    let server = start(Config::default()).await;
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
    let services: Value = http
        .get(format!("{}/v1/services", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(services, json!({ "services": [] }));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_releases_parked_blocking_queries() {
    let server = start(Config::default()).await;
    let http = reqwest::Client::new();
    let watch = tokio::spawn({
        let url = format!("{}/v1/services/ratings?index=0&wait=60s", server.url);
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
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

/// Starts the binary with `args`; returns it and the URL from its `listening on` line.
async fn spawn_binary(args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("REGISTRY_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            assert!(
                !line.contains('\u{1b}'),
                "no ANSI colours on a pipe: {line:?}"
            );
            if let Some(at) = line.find("listening on http://") {
                return line[at + "listening on ".len()..].trim().to_owned();
            }
        }
        panic!("the registry exited before logging its address");
    })
    .await
    .expect("the registry logs `listening on` within 20 s");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

#[tokio::test]
async fn binary_logs_its_address_and_exits_cleanly_on_sigterm() {
    let (mut child, url) = spawn_binary(&["--listen", "127.0.0.1:0"]).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(!url.ends_with(":0"), "the real port is logged: {url}");

    let health: Value = reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({ "status": "ok" }));

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
