//! The real `ratings-service` binary: the `listening on` line, env fallbacks, a clean exit
//! on SIGTERM, and a clear refusal of bad configuration.

#![allow(clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const PATIENCE: Duration = Duration::from_secs(10);

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ratings-service"));
    command
        .env_remove("RUST_LOG")
        .env_remove("REGISTRY_URL")
        .env_remove("REGISTRY_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

type StdoutLines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// Reads stdout until a line containing `needle`, and returns that line.
async fn line_with(lines: &mut StdoutLines, needle: &str) -> String {
    let find = async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("stdout closed before a line with {needle:?}");
    };
    tokio::time::timeout(PATIENCE, find)
        .await
        .unwrap_or_else(|_| panic!("no line with {needle:?} in time"))
}

#[tokio::test]
async fn env_configured_instance_serves_and_exits_cleanly_on_sigterm() {
    let mut child = binary()
        .env("RATINGS_INSTANCE", "7")
        .env("RATINGS_LISTEN", "127.0.0.1:0")
        .env("RATINGS_NO_REGISTER", "true")
        .spawn()
        .expect("spawn ratings-service");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = line_with(&mut lines, "listening on http://").await;
    let (_, addr) = line.split_once("listening on http://").expect("address");
    let addr = addr.trim().to_owned();
    assert!(!addr.ends_with(":0"), "{addr}");

    let health: serde_json::Value = reqwest::get(format!("http://{addr}/health"))
        .await
        .expect("health answers")
        .json()
        .await
        .expect("health is JSON");
    assert_eq!(health, serde_json::json!({ "status": "ok", "instance": 7 }));

    let rating = reqwest::get(format!("http://{addr}/ratings/widget"))
        .await
        .expect("rating answers");
    assert!(rating.status().is_success());
    let served = line_with(&mut lines, "served rating for").await;
    assert!(served.contains("INFO"), "{served}");
    assert!(
        served.contains("instance 7 served rating for widget"),
        "{served}"
    );
    assert!(
        !served.contains('\u{1b}'),
        "ANSI colours in a pipe: {served:?}"
    );
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let pid = child.id().expect("child pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(killed.success());
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_non_loopback_listen_address_is_refused_with_a_clear_message() {
    let output = binary()
        .args(["--no-register", "--listen", "0.0.0.0:0"])
        .output()
        .await
        .expect("run ratings-service");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}

#[tokio::test]
async fn out_of_range_flags_are_refused() {
    for args in [&["--error-rate", "2"][..], &["--instance", "1000"]] {
        let output = binary()
            .args(args)
            .output()
            .await
            .expect("run ratings-service");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
}
