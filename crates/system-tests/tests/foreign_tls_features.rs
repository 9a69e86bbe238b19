//! A program that turns on reqwest's `rustls-no-provider` for a client of its own, next to
//! discovery-client, as a new user would: the library must choose its crypto provider
//! itself, so none of its `build()`s or `https://` calls may panic.
//!
//! The program is `fixtures/reqwest-no-provider`, a crate of its own outside this workspace
//! (here, feature unification would turn reqwest's TLS on for every crate, and their own
//! `reqwest::Client::new()` would panic). This test builds and runs it with `cargo run`, in
//! `<target dir>/fixtures` so that its build is kept between runs (the first one compiles
//! its dependencies: minutes), and expects exit 0 and `ok`.
//!
//! Without `cargo` (neither `$CARGO` nor on `PATH`) the test says so and passes as skipped,
//! unless `CI` is set (to anything but `""`, `0` or `false`): then it fails, so CI cannot
//! silently stop running it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed expectation is a failed test

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The fixture program's manifest.
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/reqwest-no-provider/Cargo.toml"
);

/// How long building and running the fixture may take: a cold build compiles tokio, hyper,
/// rustls, ring and reqwest on a possibly busy machine.
const PATIENCE: Duration = Duration::from_secs(15 * 60);

/// Whether this is a CI run, where a missing cargo is a failure rather than a skip.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// The cargo running this test (`$CARGO`), or the first `cargo` on `PATH`.
fn cargo() -> Option<PathBuf> {
    let ours = std::env::var_os("CARGO").map(PathBuf::from);
    if let Some(cargo) = ours.filter(|cargo| cargo.is_file()) {
        return Some(cargo);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("cargo"))
        .find(|candidate| candidate.is_file())
}

/// The outer workspace's target directory: the parent of this test's
/// `CARGO_TARGET_TMPDIR` (`<target dir>/tmp`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR has a parent")
        .to_path_buf()
}

/// Whether `name` is one of the variables cargo sets for this test's own run (its package's
/// `CARGO_PKG_*`, `CARGO_MANIFEST_DIR`, ...). The fixture's build must not inherit them: ring's
/// build script watches several, so their values here (system-tests') would differ from a
/// `cargo run` of the fixture in a shell, and each would rebuild ring and what is above it.
fn set_by_cargo_for_this_test(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_CFG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// A child in a process group of its own (cargo and the program it runs), killed as a whole
/// if it is still running when dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = killpg(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

/// Reads `stream` to its end on a thread of its own.
fn read_all(mut stream: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for the group's leader to exit, at most `patience`; `None` (after killing the
/// whole group) when it did not.
fn wait_at_most(group: &mut Group, patience: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = group.0.try_wait().expect("wait for cargo run") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = killpg(Pid::from_raw(group.0.id() as i32), Signal::SIGKILL);
            let _ = group.0.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `max` bytes of `text` (on a character boundary), for messages.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[test]
fn a_program_with_reqwest_rustls_no_provider_builds_and_calls_without_panics() {
    let Some(cargo) = cargo() else {
        let message = "cargo is not on PATH (nor in $CARGO), so the fixture program with \
                       reqwest's `rustls-no-provider` cannot be built";
        assert!(!in_ci(), "CI is set, so this test must run: {message}");
        eprintln!("SKIPPED the foreign TLS features test: {message}");
        return;
    };
    let fixture_target = target_dir().join("fixtures");
    let mut run = Command::new(&cargo);
    run.args(["run", "--quiet", "--manifest-path", FIXTURE])
        .env("CARGO_TARGET_DIR", &fixture_target);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_this_test) {
            run.env_remove(name);
        }
    }
    let started = Instant::now();
    let mut group = Group(
        run.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", cargo.display())),
    );
    let stdout = read_all(group.0.stdout.take().expect("piped stdout"));
    let stderr = read_all(group.0.stderr.take().expect("piped stderr"));
    let status = wait_at_most(&mut group, PATIENCE);
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let took = started.elapsed();
    eprintln!(
        "cargo run of the fixture took {took:.1?} (target dir {})",
        fixture_target.display()
    );
    let stderr = tail(&stderr, 16_000);
    let Some(status) = status else {
        panic!(
            "`cargo run --manifest-path {FIXTURE}` did not finish within {PATIENCE:?}; \
             killed it.\nstdout:\n{stdout}\nstderr (end):\n{stderr}"
        );
    };
    assert!(
        status.success() && stdout.lines().any(|line| line.trim() == "ok"),
        "the program with reqwest's `rustls-no-provider` next to discovery-client failed \
         ({status}; a panic exits 101): \nstdout:\n{stdout}\nstderr (end):\n{stderr}"
    );
    eprint!("{stderr}");
}
