//! The market over real sockets: `run` on port 0, and the `market` binary as a user starts it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_ratings::{Behaviour, FakeRatings};
use market_app::Config;
use support::http_get;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::time::Instant;

#[tokio::test]
async fn run_serves_until_shutdown() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        listen: addr,
        static_ratings: Some(vec![fake.url.clone()]),
        ..Config::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(market_app::run(listener, config, async {
        let _ = stopped.await;
    }));

    let (status, body) = http_get(addr, "/health").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(addr, "/api/items").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["items"][0]["rating_source"], "live");
    assert_eq!(fake.hits(), 4);

    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("run did not return within 5 s of shutdown")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn run_refuses_a_bad_configuration_with_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        timeout: Duration::ZERO,
        ..Config::default()
    };
    let error = market_app::run(listener, config, std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("--timeout"), "{error}");
}

/// The `market` binary's stdout lines, collected as they arrive.
struct Market {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Market {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_market"));
        command
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// Waits (at most 10 s) for a stdout line containing `needle` and returns it.
    async fn wait_for_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needle:?} in:\n{}",
                self.lines.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address from the `listening on http://ADDR` line.
    async fn addr(&self) -> std::net::SocketAddr {
        let line = self.wait_for_line("listening on http://").await;
        let (_, rest) = line.split_once("listening on http://").unwrap();
        rest.split_whitespace().next().unwrap().parse().unwrap()
    }

    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("market did not exit within 10 s")
            .unwrap()
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_each_ratings_call_and_exits_cleanly_on_sigterm() {
    let fake = FakeRatings::start(1, Behaviour::Ratings).await;
    // Configured through the environment fallbacks, as `make market` might.
    let mut market = Market::start(
        &[],
        &[
            ("MARKET_LISTEN", "127.0.0.1:0"),
            ("RATINGS_STATIC_URLS", &fake.url),
        ],
    );
    let addr = market.addr().await;

    let (status, page) = http_get(addr, "/").await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("rating-number").count(), 4);

    let used = market
        .wait_for_line(&format!("ratings using instance 1: {}", fake.url))
        .await;
    assert!(
        !used.contains('\u{1b}'),
        "no ANSI colours when stdout is a pipe: {used:?}"
    );
    market.wait_for_line("page load / in").await;
    let calls = market
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("ratings using instance 1:"))
        .count();
    assert_eq!(calls, 4, "one logged call per item");

    let pid = market.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = market.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[tokio::test]
async fn the_binary_refuses_bad_flags_with_a_usage_error() {
    for args in [
        &["--timeout", "soon"][..],
        &["--failure-limit", "0"],
        &["--listen", "0.0.0.0:0"],
        &["--static-ratings", "127.0.0.1:8001"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_market"))
            .args(args)
            .stdin(Stdio::null())
            .output();
        let output = tokio::time::timeout(Duration::from_secs(10), output)
            .await
            .expect("market did not exit within 10 s")
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error:") && stderr.contains("--help"),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?}: started anyway");
    }
}
