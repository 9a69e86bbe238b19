//! Helpers for the end-to-end tests in `tests/`: start the real `registry`,
//! `ratings-service` and `market` binaries on port 0, read what they log, signal them as a
//! user would (Ctrl-C, Ctrl-Z, `kill -9`), and wait for conditions with a deadline.
//!
//! Programs can serve TLS: [`TlsFiles`] writes a certificate signed by this test process's
//! CA ([`test_ca`]), and [`get`] / [`get_json`] (so [`wait_for_instances`] and
//! [`market_items`] too) reach an `https://` program through the library's client trusting
//! that CA, since the workspace's reqwest has no TLS.
//!
//! The binaries are built once per test run with `cargo build` (a no-op when they are up to
//! date), so `cargo test` alone is enough.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failure is a test failure

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use discovery_client::transport::{HttpClient, TlsConfig};
use http_body_util::BodyExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use test_certs::TestCa;
use tokio::time::Instant;
use tower::ServiceExt;

/// Where the workspace's binaries are built: the profile directory, which holds test
/// binaries in its `deps/` and other binaries (such as `chaos`) directly.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("binary's directory");
    if dir.ends_with("deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Builds the three service binaries once per test process.
fn ensure_built() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = bin_dir();
            let status = cargo_build(
                &dir,
                &[
                    "-p",
                    "registry",
                    "-p",
                    "ratings-service",
                    "-p",
                    "market-app",
                    "--bins",
                ],
            )
            .expect("run cargo build");
            assert!(
                status.success(),
                "cargo build of the service binaries failed"
            );
            dir
        })
        .clone()
}

/// Runs `cargo build ARGS` in the workspace, with `--release` when the programs' directory
/// `dir` is a release one, and waits for it.
fn cargo_build(dir: &Path, args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    build.current_dir(workspace).arg("build").args(args);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    build.status()
}

/// The name under which [`registry_with_etcd`] keeps the registry built with its `etcd`
/// feature, beside the other programs; pass it to [`Proc::start`].
pub const REGISTRY_ETCD: &str = "registry-etcd";

/// Builds the registry with its `etcd` feature (once per test process) and copies it to
/// [`REGISTRY_ETCD`] in the programs' directory, so a later plain build of `registry`
/// cannot replace it under a running test. Building needs protoc (etcd-client's build
/// script): without it, or if the build fails, the reason.
pub fn registry_with_etcd() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = ensure_built();
            if on_path(&["protoc"]).is_none() && std::env::var_os("PROTOC").is_none() {
                return Err("building the registry with etcd needs protoc \
                            (apt-get install -y protobuf-compiler)"
                    .into());
            }
            let args = ["-p", "registry", "--features", "etcd", "--bin", "registry"];
            let status = cargo_build(&dir, &args).map_err(|e| format!("run cargo: {e}"))?;
            if !status.success() {
                return Err("cargo build -p registry --features etcd failed".into());
            }
            let copy = dir.join(REGISTRY_ETCD);
            std::fs::copy(dir.join("registry"), &copy)
                .map_err(|e| format!("copy the registry to {}: {e}", copy.display()))?;
            Ok(copy)
        })
        .clone()
}

/// The path of the program `name` (`registry`, `ratings-service`, `market`), built first
/// if need be.
pub fn program(name: &str) -> PathBuf {
    ensure_built().join(name)
}

/// One running program, its output kept line by line.
pub struct Proc {
    /// The program's name, for messages.
    pub name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The base URL it listens on, from its `listening on http://...` (or `https://...`)
    /// line.
    pub url: String,
    stopped: bool,
}

impl Proc {
    /// Starts `binary` with `args`, waits for its `listening on` line (at most 20 s).
    pub async fn start(binary: &str, args: &[&str]) -> Proc {
        let mut command = Command::new(ensure_built().join(binary));
        command.args(args);
        Proc::spawn(binary, command).await
    }

    /// Starts `binary` with `args` as [`Proc::start`] does, but with its soft and hard limit
    /// on open files (`RLIMIT_NOFILE`) lowered to `files` first, by `sh -c 'ulimit -n N;
    /// exec ..'`, as an operator's `ulimit -n` would. The process is `exec`ed in place of
    /// the shell, so [`Proc::pid`] is the program's own.
    pub async fn start_with_file_limit(binary: &str, args: &[&str], files: u32) -> Proc {
        let path = ensure_built().join(binary);
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
            .arg(path)
            .args(args);
        Proc::spawn(binary, command).await
    }

    /// Starts `binary` with `args` as [`Proc::start`] does, but inside the network namespace
    /// `netns`, by `ip netns exec NETNS ..` (which needs root). `ip` `exec`s the program in
    /// its own place, so [`Proc::pid`] is the program's own.
    pub async fn start_in_netns(netns: &str, binary: &str, args: &[&str]) -> Proc {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns])
            .arg(ensure_built().join(binary))
            .args(args);
        Proc::spawn(binary, command).await
    }

    /// Spawns `command` (which runs `binary`), collects its output, and waits for its
    /// `listening on` line (at most 20 s).
    async fn spawn(binary: &str, mut command: Command) -> Proc {
        let mut child = command
            .env("RUST_LOG", "info")
            .env_remove("REGISTRY_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("stdout"), Arc::clone(&lines));
        collect(child.stderr.take().expect("stderr"), Arc::clone(&lines));
        let mut proc = Proc {
            name: binary.to_string(),
            child,
            lines,
            url: String::new(),
            stopped: false,
        };
        let line = proc
            .wait_for_log("listening on http", Duration::from_secs(20))
            .await;
        let at = line.find("listening on http").expect("found") + "listening on ".len();
        proc.url = line[at..]
            .split_whitespace()
            .next()
            .expect("url")
            .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_string();
        proc
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// How many lines logged so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until a line containing `needle` is logged; returns it. Panics with the whole
    /// log after `limit`.
    pub async fn wait_for_log(&mut self, needle: &str, limit: Duration) -> String {
        self.wait_for_nth_log(needle, 1, limit).await
    }

    /// Waits until `n` lines containing `needle` have been logged; returns the n-th.
    pub async fn wait_for_nth_log(&mut self, needle: &str, n: usize, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .nth(n - 1)
            {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before logging {needle:?}:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not log {needle:?} {n} time(s) within {limit:?}:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).expect("send signal");
    }

    /// Ctrl-Z: SIGSTOP. The process keeps its sockets but answers nothing.
    pub fn pause(&mut self) {
        self.signal(Signal::SIGSTOP);
        self.stopped = true;
    }

    /// `fg`: SIGCONT.
    pub fn resume(&mut self) {
        self.signal(Signal::SIGCONT);
        self.stopped = false;
    }

    /// Ctrl-C as a service manager sends it (SIGTERM), then waits for a clean exit (at most
    /// 10 s). Returns whether it exited successfully.
    pub async fn terminate(&mut self) -> bool {
        if self.stopped {
            self.resume();
        }
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            assert!(Instant::now() < deadline, "{} ignored SIGTERM", self.name);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `kill -9`: no chance to deregister.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.stopped {
            let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGCONT);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("SYSTEM_TESTS_ECHO").is_some() {
                eprintln!("{line}");
            }
            lines.lock().unwrap().push(line);
        }
    });
}

/// Starts the registry on a free loopback port.
pub async fn registry(extra: &[&str]) -> Proc {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Proc::start("registry", &args).await
}

/// Starts ratings instance `n` on a free loopback port, registered with `registry`, and
/// waits until it says it registered.
pub async fn ratings(n: u32, registry: &Proc, extra: &[&str]) -> Proc {
    let instance = n.to_string();
    let mut args = vec![
        "--instance",
        &instance,
        "--listen",
        "127.0.0.1:0",
        "--registry",
        &registry.url,
    ];
    args.extend_from_slice(extra);
    Proc::start("ratings-service", &args).await
}

/// Starts ratings instances 1 and 2 (each with `extra`) registered with `registry`, and
/// waits until the registry lists both: the set-up of most end-to-end tests.
pub async fn two_ratings(registry: &Proc, extra: &[&str]) -> (Proc, Proc) {
    let r1 = ratings(1, registry, extra).await;
    let r2 = ratings(2, registry, extra).await;
    wait_for_instances(registry, "ratings", &["1", "2"]).await;
    (r1, r2)
}

/// Starts the market on a free loopback port, using `registry` for discovery.
pub async fn market(registry: &Proc, extra: &[&str]) -> Proc {
    let mut args = vec!["--listen", "127.0.0.1:0", "--registry", &registry.url];
    args.extend_from_slice(extra);
    Proc::start("market", &args).await
}

/// An HTTP client for talking to the programs as a browser or script would.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// GETs `url` and decodes JSON, panicking with the body on a non-2xx status.
pub async fn get_json(url: &str) -> serde_json::Value {
    let (status, body) = get(url).await;
    assert!(
        (200..300).contains(&status),
        "GET {url} answered {status}: {body}"
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

/// GETs `url`: its status and body. `http://` through [`http`]; `https://` through the
/// library's `HttpClient` trusting only [`test_ca`] (HTTP/2 by ALPN), within 10 s.
pub async fn get(url: &str) -> (u16, String) {
    if !url.starts_with("https://") {
        let response = http().get(url).send().await.expect("GET");
        let status = response.status().as_u16();
        return (status, response.text().await.expect("body"));
    }
    // A client per call: a pooled connection must not outlive the test's runtime.
    let client = HttpClient::builder()
        .tls(
            TlsConfig::new()
                .roots_only(test_ca().cert_pem())
                .expect("CA"),
        )
        .build()
        .expect("client");
    let request = http::Request::get(url).body(Bytes::new()).expect("request");
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let response = client
            .oneshot(request)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.expect("body");
        (
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        )
    });
    answer
        .await
        .unwrap_or_else(|_| panic!("GET {url}: no answer within 10 s"))
}

/// This test process's certificate authority: [`TlsFiles`] are signed by it, and [`get`]
/// trusts it.
pub fn test_ca() -> &'static TestCa {
    static CA: LazyLock<TestCa> = LazyLock::new(|| TestCa::new("system-tests CA"));
    &CA
}

/// TLS files for the programs, in a temporary directory removed on drop: [`test_ca`]'s
/// certificate, and a server certificate it signed for `127.0.0.1` and `localhost` with its
/// key.
pub struct TlsFiles {
    /// Where the files are; removed with them on drop.
    dir: tempfile::TempDir,
    ca: String,
    cert: String,
    key: String,
}

impl TlsFiles {
    /// Writes the files.
    pub fn write() -> TlsFiles {
        let dir = tempfile::tempdir().expect("temporary directory");
        let issued = test_ca().server(&["127.0.0.1", "localhost"]);
        let write = |name: &str, contents: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).expect("write TLS file");
            path.to_str().expect("UTF-8 path").to_owned()
        };
        let ca = write("ca.pem", &test_ca().cert_pem());
        let cert = write("server.pem", &issued.cert_pem);
        let key = write("server.key", &issued.key_pem);
        TlsFiles { dir, ca, cert, key }
    }

    /// `--tls-cert FILE --tls-key FILE`: serve HTTPS with the server certificate.
    pub fn serve_args(&self) -> [&str; 4] {
        ["--tls-cert", &self.cert, "--tls-key", &self.key]
    }

    /// `--ca-file FILE`: trust the test CA in outgoing calls.
    pub fn trust_args(&self) -> [&str; 2] {
        ["--ca-file", &self.ca]
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Calls `check` every 10 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the registry lists exactly `ids` for `service` (at most 10 s).
pub async fn wait_for_instances(registry: &Proc, service: &str, ids: &[&str]) {
    let url = format!("{}/v1/services/{service}", registry.url);
    let want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    eventually(
        Duration::from_secs(10),
        &format!("{service} instances {ids:?}"),
        || {
            let url = url.clone();
            let want = want.clone();
            async move {
                let answer = get_json(&url).await;
                let mut have: Vec<String> = answer["instances"]
                    .as_array()?
                    .iter()
                    .filter_map(|i| i["id"].as_str().map(str::to_string))
                    .collect();
                have.sort();
                (have == want).then_some(())
            }
        },
    )
    .await;
}

/// The market's `/api/items` answer as (item id, rating, source, instance) rows.
pub async fn market_items(market: &Proc) -> Vec<(String, Option<u64>, String, Option<u64>)> {
    let answer = get_json(&format!("{}/api/items", market.url)).await;
    answer["items"]
        .as_array()
        .expect("items array")
        .iter()
        .map(|item| {
            (
                item["id"].as_str().expect("id").to_string(),
                item["rating"].as_u64(),
                item["rating_source"].as_str().expect("source").to_string(),
                item["rating_instance"].as_u64(),
            )
        })
        .collect()
}

/// Whether this is a CI run (`CI` set to anything but `""`, `0` or `false`), where a test
/// whose tool (chromium, prometheus) is missing fails rather than skips.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// The first of `names` found on `PATH`.
pub fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A loopback port free right now (bound and released), for programs that cannot be told
/// to bind port 0 and report it (chromedriver, Prometheus).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    listener.local_addr().expect("port").port()
}

/// The workspace's root directory (for files such as `deploy/`).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
