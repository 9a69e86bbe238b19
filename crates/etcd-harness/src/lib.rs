//! Real etcd servers for tests.
//!
//! [`EtcdCluster::start`] runs the members of a fresh etcd cluster (one member, or three to
//! test losing one) on free loopback ports, each with its own temporary data directory, and
//! returns once every member reports itself healthy. Dropping the [`EtcdCluster`] kills the
//! members and removes the directories; [`EtcdCluster::kill`] kills one member early, as a
//! crash would, and [`EtcdCluster::restart`] brings it back with its data.
//!
//! `start` returns `None` (after printing why) only when no `etcd` binary is installed
//! (Debian's `etcd-server`; `ETCD_BIN` names another binary), so a test can skip. When `CI`
//! is set (to anything but empty, `0` or `false`) or `ETCD_REQUIRED` is, a missing binary is
//! a failure instead, so CI cannot pass by skipping. Any other problem (a member that will
//! not start) panics with the member's log.
//!
//! Each member runs under a small `sh` watchdog that kills it as soon as this process's end
//! of a pipe closes, so no member outlives the test process, even one that was killed.
//!
//! Members run with a 50 ms heartbeat and a 500 ms election timeout: a killed leader is
//! replaced within about a second, and the shortest lease etcd grants is 1 s (it rounds
//! shorter TTLs up to one and a half election timeouts).

// Test support: a failure here is a test failure, reported by panicking with the reason.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long all members together may take to report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a start is retried with new ports when a port was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// A running etcd cluster on loopback; killed and cleaned up on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    /// The etcd binary, to restart members with.
    etcd: PathBuf,
    /// The members, in the order of [`EtcdCluster::endpoints`].
    members: Vec<Member>,
    /// Holds every member's data directory and log; removed on drop.
    dir: PathBuf,
}

/// One etcd process and its watchdog.
#[derive(Debug)]
struct Member {
    /// `http://127.0.0.1:PORT`, where clients connect.
    client_url: String,
    /// The etcd process itself (not the watchdog), for `kill`.
    pid: u32,
    /// The `sh` watchdog. Closing its stdin kills the member; it exits when the member does.
    watchdog: Child,
    /// The member's stdout and stderr.
    log: PathBuf,
    /// The etcd arguments it was started with, to restart it.
    args: Vec<String>,
    /// Whether [`EtcdCluster::kill`] already killed it.
    killed: bool,
}

/// Why one attempt to start the cluster failed.
enum StartError {
    /// A port was taken between choosing it and etcd binding it: try again with others.
    PortTaken,
    /// Anything else: give up with this message.
    Failed(String),
}

impl EtcdCluster {
    /// Starts a fresh cluster of `members` members (at least 1) and waits until each one
    /// reports healthy. `None` only when no etcd binary is installed (see the crate docs).
    ///
    /// # Panics
    ///
    /// When the members do not become healthy within 30 s, with their logs in the message.
    pub fn start(members: usize) -> Option<Self> {
        let etcd = find_etcd()?;
        let members = members.max(1);
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = scratch_dir();
            match start_members(&etcd, members, &dir) {
                Ok(cluster) => return Some(cluster),
                Err(StartError::PortTaken) => {
                    last = "a chosen port was taken by another process".into();
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Err(StartError::Failed(message)) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    panic!("etcd did not start: {message}");
                }
            }
        }
        panic!("etcd did not start after {START_ATTEMPTS} attempts: {last}");
    }

    /// Every member's client URL (`http://127.0.0.1:PORT`), killed ones included.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> &str {
        &self.members[i].client_url
    }

    /// How many members the cluster was started with.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never: `start` makes at least one).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kills member `i` with SIGKILL, as a crash would, and waits until it is gone.
    pub fn kill(&mut self, i: usize) {
        let member = &mut self.members[i];
        if member.killed {
            return;
        }
        let status = Command::new("kill")
            .args(["-KILL", &member.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {} failed", member.pid);
        // The watchdog exits as soon as the member does.
        wait_bounded(&mut member.watchdog, Duration::from_secs(10));
        member.killed = true;
    }

    /// Starts killed member `i` again, with the data it had, and waits until it is healthy
    /// (which needs a quorum of members running).
    ///
    /// # Panics
    ///
    /// If the member was not killed, or does not become healthy within 30 s.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].killed, "member {i} is running");
        let member = &self.members[i];
        let (watchdog, pid) = spawn_member(&self.etcd, &member.args, &member.log)
            .unwrap_or_else(|error| panic!("restart member {i}: {error}"));
        let member = &mut self.members[i];
        // The old watchdog's lifeline closes here; its member is already dead.
        member.watchdog = watchdog;
        member.pid = pid;
        member.killed = false;
        let deadline = Instant::now() + START_TIMEOUT;
        let address = member.client_url.trim_start_matches("http://").to_owned();
        // Bounded by the deadline; each pass sleeps 20 ms.
        while !is_healthy(&address) {
            assert!(
                is_running(pid),
                "member {i} exited after restart:\n{}",
                tail(&self.log(i))
            );
            assert!(
                Instant::now() < deadline,
                "member {i} not healthy within {START_TIMEOUT:?} of its restart:\n{}",
                tail(&self.log(i))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The index of the member that is the Raft leader now, as the running members report
    /// it (`POST /v3/maintenance/status`): `None` while there is no leader (an election, or
    /// no quorum) or no running member answers.
    pub fn leader(&self) -> Option<usize> {
        let statuses: Vec<Option<String>> = self
            .members
            .iter()
            .map(|member| {
                let address = member.client_url.trim_start_matches("http://");
                (!member.killed).then(|| member_status(address)).flatten()
            })
            .collect();
        let leader = statuses
            .iter()
            .flatten()
            .find_map(|status| json_string_field(status, "leader").filter(|id| id != "0"))?;
        statuses.iter().position(|status| {
            status
                .as_deref()
                .and_then(|s| json_string_field(s, "member_id"))
                .as_deref()
                == Some(leader.as_str())
        })
    }

    /// Waits (at most `limit`) until a leader is elected and returns its index.
    ///
    /// # Panics
    ///
    /// If no member reports a leader within `limit`.
    pub fn wait_for_leader(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        // Bounded by the deadline; each pass sleeps 20 ms.
        loop {
            if let Some(leader) = self.leader() {
                return leader;
            }
            assert!(Instant::now() < deadline, "no etcd leader within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Member `i`'s log so far (etcd's own output), for diagnosing a failed test.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            // Closing the lifeline makes the watchdog kill the member.
            drop(member.watchdog.stdin.take());
        }
        for member in &mut self.members {
            wait_bounded(&mut member.watchdog, Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The etcd binary to run: `ETCD_BIN`, else `etcd` on the `PATH`. Prints why and returns
/// `None` if there is none, unless CI or `ETCD_REQUIRED` says etcd is required: then panics.
fn find_etcd() -> Option<PathBuf> {
    test_tools::Tool {
        binary: "etcd",
        env: "ETCD_BIN",
        required_env: "ETCD_REQUIRED",
        also_in: &[],
        install: "install Debian's etcd-server",
        needed_for: "a real etcd",
    }
    .find()
}

/// A new, empty directory under the system temp dir.
fn scratch_dir() -> PathBuf {
    test_tools::scratch_dir("etcd-harness")
}

/// Free loopback ports, all distinct (the listeners are held until every port is chosen).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// The watchdog: runs etcd (`$0`, with `$@`) in the background, prints its pid, kills it
/// when stdin (kept as fd 3) reaches end of file, and exits when etcd does.
const WATCHDOG: &str = r#"exec 3<&0
"$0" "$@" </dev/null >>"$ETCD_HARNESS_LOG" 2>&1 &
pid=$!
echo "$pid"
(read -r _ <&3; kill -9 "$pid" 2>/dev/null) &
wait "$pid""#;

/// Starts `n` members with their data and logs in `dir` and waits until all are healthy.
/// On failure the members already started are killed (by dropping the cluster).
fn start_members(etcd: &Path, n: usize, dir: &Path) -> Result<EtcdCluster, StartError> {
    let ports = free_ports(2 * n);
    let client = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i]);
    let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
    let initial_cluster = (0..n)
        .map(|i| format!("m{i}={}", peer(i)))
        .collect::<Vec<_>>()
        .join(",");
    let token = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "etcd-harness".into());

    // Members are pushed straight into the cluster, so an early return kills them.
    let mut cluster = EtcdCluster {
        etcd: etcd.to_path_buf(),
        members: Vec::with_capacity(n),
        dir: dir.to_path_buf(),
    };
    for i in 0..n {
        let log = dir.join(format!("m{i}.log"));
        let args = [
            format!("--name=m{i}"),
            format!("--data-dir={}", dir.join(format!("m{i}.etcd")).display()),
            format!("--listen-client-urls={}", client(i)),
            format!("--advertise-client-urls={}", client(i)),
            format!("--listen-peer-urls={}", peer(i)),
            format!("--initial-advertise-peer-urls={}", peer(i)),
            format!("--initial-cluster={initial_cluster}"),
            "--initial-cluster-state=new".into(),
            format!("--initial-cluster-token={token}"),
            "--heartbeat-interval=50".into(),
            "--election-timeout=500".into(),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
            "--log-level=warn".into(),
        ];
        let args = args.to_vec();
        let (watchdog, pid) = spawn_member(etcd, &args, &log).map_err(StartError::Failed)?;
        cluster.members.push(Member {
            client_url: client(i),
            pid,
            watchdog,
            log,
            args,
            killed: false,
        });
    }

    let deadline = Instant::now() + START_TIMEOUT;
    let mut healthy = vec![false; n];
    // Bounded by the deadline; each pass sleeps 20 ms.
    while healthy.iter().any(|h| !h) {
        for (i, member) in cluster.members.iter().enumerate() {
            if healthy[i] {
                continue;
            }
            if let Some(address) = member.client_url.strip_prefix("http://") {
                healthy[i] = is_healthy(address);
            }
        }
        let mut dead = None;
        for (i, member) in cluster.members.iter().enumerate() {
            if !healthy[i] && !is_running(member.pid) {
                dead = Some(i);
            }
        }
        if let Some(i) = dead {
            let log = cluster.log(i);
            let result = if log.contains("address already in use") {
                StartError::PortTaken
            } else {
                StartError::Failed(format!("member {i} exited:\n{}", tail(&log)))
            };
            // Dropping the cluster kills the others and removes the directory.
            return Err(result);
        }
        if Instant::now() > deadline {
            let logs = (0..n)
                .map(|i| format!("member {i}:\n{}", tail(&cluster.log(i))))
                .collect::<Vec<_>>()
                .join("\n");
            return Err(StartError::Failed(format!(
                "not healthy within {START_TIMEOUT:?}:\n{logs}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(cluster)
}

/// Runs etcd with `args` under a watchdog, its output appended to `log`; returns the
/// watchdog and etcd's pid.
fn spawn_member(etcd: &Path, args: &[String], log: &Path) -> Result<(Child, u32), String> {
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(etcd)
        .args(args)
        .env("ETCD_HARNESS_LOG", log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let mut first = String::new();
    let stdout = watchdog.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut first)
        .map_err(|e| format!("watchdog output: {e}"))?;
    let pid = first
        .trim()
        .parse()
        .map_err(|_| format!("watchdog printed {first:?}, not a pid"))?;
    Ok((watchdog, pid))
}

/// Whether etcd at `address` answers `GET /health` with `"health":"true"`.
fn is_healthy(address: &str) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&address.parse().expect("socket address"), TIMEOUT)
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let request = format!("GET /health HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.take(64 * 1024).read_to_string(&mut answer);
    answer.contains(r#""health":"true""#)
}

/// The body of etcd's `POST /v3/maintenance/status` at `address` (JSON through etcd's
/// gateway, 64-bit ids as strings), or `None` if it does not answer 200.
fn member_status(address: &str) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&address.parse().expect("socket address"), TIMEOUT).ok()?;
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let request = format!(
        "POST /v3/maintenance/status HTTP/1.0\r\nHost: {address}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    let _ = stream.take(64 * 1024).read_to_string(&mut answer);
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_owned())
}

/// The string value of the first `"name":"value"` in `json` (enough for etcd's status,
/// whose ids are decimal strings and contain no quotes).
fn json_string_field(json: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\":\"");
    let start = json.find(&key)? + key.len();
    let end = json[start..].find('"')?;
    Some(json[start..start + end].to_owned())
}

/// Per-probe network timeout while waiting for health.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Whether process `pid` still exists (and is not a zombie).
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits for `child` to exit, at most `limit`; gives up quietly after that.
fn wait_bounded(child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last 40 lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_starts_healthy_and_is_gone_after_drop() {
        let Some(etcd) = EtcdCluster::start(1) else {
            return;
        };
        let address = etcd.endpoint(0).trim_start_matches("http://").to_owned();
        assert!(is_healthy(&address));
        let pid = etcd.members[0].pid;
        let dir = etcd.dir.clone();
        drop(etcd);
        assert!(!is_running(pid), "the member was killed");
        assert!(!dir.exists(), "the data directory was removed");
        assert!(TcpStream::connect(&address).is_err());
    }

    #[test]
    fn a_three_member_cluster_elects_a_new_leader_when_its_leader_dies() {
        let Some(mut etcd) = EtcdCluster::start(3) else {
            return;
        };
        let first = etcd.wait_for_leader(Duration::from_secs(10));
        etcd.kill(first);
        let second = etcd.wait_for_leader(Duration::from_secs(10));
        assert_ne!(second, first, "a killed member cannot lead");
        etcd.restart(first);
        assert!(etcd.wait_for_leader(Duration::from_secs(10)) < 3);
    }

    #[test]
    fn status_fields_are_read_from_etcds_json() {
        let body = r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437"},"leader":"10276657743932975437"}"#;
        assert_eq!(
            json_string_field(body, "member_id").as_deref(),
            Some("10276657743932975437")
        );
        assert_eq!(
            json_string_field(body, "leader").as_deref(),
            Some("10276657743932975437")
        );
        assert_eq!(json_string_field(body, "nope"), None);
    }

    #[test]
    fn a_killed_member_restarts_with_its_data() {
        let Some(mut etcd) = EtcdCluster::start(1) else {
            return;
        };
        let address = etcd.endpoint(0).trim_start_matches("http://").to_owned();
        let old = etcd.members[0].pid;
        etcd.kill(0);
        assert!(!is_running(old));
        assert!(!is_healthy(&address));
        etcd.restart(0);
        assert!(is_healthy(&address));
        assert_ne!(etcd.members[0].pid, old);
    }
}
