//! The `registry` binary, started as a user would and read from its log.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts the binary with `args` (and `RUST_LOG=info`, no token from the environment);
/// returns it, the URL from its `listening on` line, and its log up to that line.
pub async fn spawn_binary(args: &[&str]) -> (Child, String, Vec<String>) {
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
    let mut log = Vec::new();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let url = line
                .find("listening on http://")
                .map(|at| line[at + "listening on ".len()..].trim().to_owned());
            log.push(line);
            if let Some(url) = url {
                return url;
            }
        }
        panic!("the registry exited before logging its address");
    })
    .await
    .expect("the registry logs `listening on` within 20 s");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url, log)
}
