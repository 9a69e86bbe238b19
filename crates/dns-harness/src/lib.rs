//! A real name server for tests: dnsmasq on a free loopback port.
//!
//! [`NameServer::start`] runs `dnsmasq` (Debian's `dnsmasq-base`; `DNSMASQ_BIN` names
//! another binary) answering UDP and TCP on `127.0.0.1:PORT`, authoritative for the
//! domain `test`: names under `test.` that it has no records for answer NXDOMAIN, and no
//! other server is asked. A and AAAA records come from a hosts file that
//! [`NameServer::set_hosts`] rewrites while it runs (dnsmasq re-reads it on SIGHUP, and
//! `set_hosts` returns once it has); SRV records are fixed at start. Every answer carries
//! the TTL given at start. [`NameServer::pause`] (SIGSTOP) makes it stop answering, as a
//! name server that hangs or is unreachable would; [`NameServer::resume`] brings it back.
//!
//! `start` returns `None` (after printing why) only when no dnsmasq is installed, so a test
//! can skip. When `CI` is set (to anything but empty, `0` or `false`) or `DNSMASQ_REQUIRED`
//! is, a missing dnsmasq is a failure instead, so CI cannot pass by skipping. Any other
//! problem panics with dnsmasq's log.
//!
//! dnsmasq runs under a small `sh` watchdog that kills it as soon as this process's end of
//! a pipe closes, so it never outlives the test process, even one that was killed.

// Test support: a failure here is a test failure, reported by panicking with the reason.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long dnsmasq may take to start, or to re-read its hosts file.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a start is retried with a new port when the port was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// One SRV record: `name` → `target:port`, with its priority and weight.
#[derive(Debug, Clone)]
pub struct Srv {
    /// The SRV name, such as `_http._tcp.ratings.test`.
    pub name: String,
    /// The target host (give it an address with [`Config::host`]).
    pub target: String,
    /// The port.
    pub port: u16,
    /// Lower is preferred.
    pub priority: u16,
    /// Share among records of the same priority.
    pub weight: u16,
}

/// What the name server starts with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The TTL of every answer, in seconds.
    pub ttl: u32,
    /// A and AAAA records (`address name`), as in `/etc/hosts`; changed later with
    /// [`NameServer::set_hosts`].
    pub hosts: Vec<(IpAddr, String)>,
    /// SRV records, fixed for the server's life.
    pub srv: Vec<Srv>,
}

impl Config {
    /// Answers with this TTL (seconds), no records yet.
    pub fn ttl(ttl: u32) -> Self {
        Self {
            ttl,
            hosts: Vec::new(),
            srv: Vec::new(),
        }
    }

    /// Adds an address record for `name`.
    pub fn host(mut self, ip: IpAddr, name: &str) -> Self {
        self.hosts.push((ip, name.to_string()));
        self
    }

    /// Adds an SRV record `name` → `target:port` (priority and weight as given).
    pub fn srv(mut self, name: &str, target: &str, port: u16, priority: u16, weight: u16) -> Self {
        self.srv.push(Srv {
            name: name.into(),
            target: target.into(),
            port,
            priority,
            weight,
        });
        self
    }
}

/// A running dnsmasq on loopback; killed and cleaned up on drop.
#[derive(Debug)]
pub struct NameServer {
    /// Where it answers (UDP and TCP).
    address: SocketAddr,
    /// dnsmasq itself (not the watchdog), for signals.
    pid: u32,
    /// The `sh` watchdog. Closing its stdin kills dnsmasq.
    watchdog: Child,
    /// The hosts file it serves A/AAAA records from.
    hosts: PathBuf,
    /// dnsmasq's log (its stderr).
    log: PathBuf,
    /// Holds the hosts file and the log; removed on drop.
    dir: PathBuf,
}

impl NameServer {
    /// Starts dnsmasq with `config` on a free loopback port and waits until it has read its
    /// records. `None` only when dnsmasq is not installed (see the crate docs).
    ///
    /// # Panics
    ///
    /// When dnsmasq does not start within 10 s, with its log in the message.
    pub fn start(config: &Config) -> Option<Self> {
        let dnsmasq = find_dnsmasq()?;
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match start_once(&dnsmasq, config) {
                Ok(server) => return Some(server),
                Err(log) if log.contains("in use") => last = log,
                Err(log) => panic!("dnsmasq did not start:\n{log}"),
            }
        }
        panic!("dnsmasq did not start after {START_ATTEMPTS} attempts:\n{last}");
    }

    /// Where it answers, over UDP and TCP.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Replaces every A and AAAA record with `hosts` and returns once dnsmasq has re-read
    /// them (so a lookup from now on sees them).
    ///
    /// # Panics
    ///
    /// When dnsmasq does not re-read them within 10 s.
    pub fn set_hosts(&self, hosts: &[(IpAddr, &str)]) {
        let reads = self.reads();
        write_hosts(&self.hosts, hosts.iter().map(|(ip, name)| (*ip, *name)));
        self.signal("HUP");
        let deadline = Instant::now() + READY_TIMEOUT;
        // Bounded by the deadline; each pass sleeps 1 ms.
        while self.reads() <= reads {
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not re-read its hosts within {READY_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops answering (SIGSTOP): queries time out, as with a hung or unreachable server.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Answers again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// dnsmasq's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many times dnsmasq has read its hosts file.
    fn reads(&self) -> usize {
        let needle = format!("read {}", self.hosts.display());
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid);
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        // A paused dnsmasq must run again to die of SIGKILL promptly in every kernel.
        let _ = Command::new("kill")
            .args(["-CONT", &self.pid.to_string()])
            .status();
        // Closing the lifeline makes the watchdog kill dnsmasq.
        drop(self.watchdog.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        // Bounded by the deadline; each pass sleeps 10 ms.
        while Instant::now() < deadline {
            if !matches!(self.watchdog.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The watchdog: runs dnsmasq (`$0`, with `$@`) in the background, prints its pid, kills it
/// when stdin (kept as fd 3) reaches end of file, and exits when dnsmasq does.
const WATCHDOG: &str = r#"exec 3<&0
"$0" "$@" </dev/null >>"$DNS_HARNESS_LOG" 2>&1 &
pid=$!
echo "$pid"
(read -r _ <&3; kill -9 "$pid" 2>/dev/null) &
wait "$pid""#;

/// One attempt to start dnsmasq on a free port; `Err` with its log if it did not.
fn start_once(dnsmasq: &Path, config: &Config) -> Result<NameServer, String> {
    let dir = scratch_dir();
    let hosts = dir.join("hosts");
    let log = dir.join("dnsmasq.log");
    write_hosts(
        &hosts,
        config.hosts.iter().map(|(ip, name)| (*ip, name.as_str())),
    );
    let port = free_port();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut args = vec![
        "--keep-in-foreground".to_string(),
        "--log-facility=-".into(),
        "--conf-file=/dev/null".into(),
        format!("--port={port}"),
        "--listen-address=127.0.0.1".into(),
        "--bind-interfaces".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--no-negcache".into(),
        "--pid-file=".into(),
        "--local=/test/".into(),
        format!("--local-ttl={}", config.ttl),
        format!("--auth-ttl={}", config.ttl),
        format!("--addn-hosts={}", hosts.display()),
    ];
    for srv in &config.srv {
        args.push(format!(
            "--srv-host={},{},{},{},{}",
            srv.name, srv.target, srv.port, srv.priority, srv.weight
        ));
    }
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(dnsmasq)
        .args(&args)
        .env("DNS_HARNESS_LOG", &log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn sh for {}: {e}", dnsmasq.display()))?;
    let mut first = String::new();
    if let Some(out) = watchdog.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut first);
    }
    let pid: u32 = first
        .trim()
        .parse()
        .map_err(|_| format!("the watchdog printed no pid: {first:?}"))?;
    let server = NameServer {
        address,
        pid,
        watchdog,
        hosts,
        log,
        dir,
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    // Bounded by the deadline; each pass sleeps 5 ms.
    while server.reads() == 0 {
        if !matches!(Command::new("kill").args(["-0", &pid.to_string()]).status(), Ok(s) if s.success())
        {
            return Err(server.log());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not ready within {READY_TIMEOUT:?}:\n{}",
                server.log()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(server)
}

/// Writes `hosts` as an `/etc/hosts`-style file anyone can read (dnsmasq drops to `nobody`
/// when started as root, and re-reads the file as that user).
fn write_hosts<'a>(path: &Path, hosts: impl Iterator<Item = (IpAddr, &'a str)>) {
    let mut text = String::new();
    for (ip, name) in hosts {
        let _ = writeln!(text, "{ip} {name}");
    }
    let partial = path.with_extension("new");
    let mut file = std::fs::File::create(&partial).expect("create the hosts file");
    file.write_all(text.as_bytes())
        .expect("write the hosts file");
    drop(file);
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644))
        .expect("make the hosts file readable");
    // Replaced whole, so dnsmasq never reads half a file.
    std::fs::rename(&partial, path).expect("replace the hosts file");
}

/// A loopback port free for both UDP and TCP right now.
fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP port");
        let port = udp.local_addr().expect("local address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP in 100 tries");
}

/// The dnsmasq binary to run: `DNSMASQ_BIN`, else `dnsmasq` on the `PATH` or in
/// `/usr/sbin`. Prints why and returns `None` if there is none, unless CI or
/// `DNSMASQ_REQUIRED` says it is required: then panics.
fn find_dnsmasq() -> Option<PathBuf> {
    test_tools::Tool {
        binary: "dnsmasq",
        env: "DNSMASQ_BIN",
        required_env: "DNSMASQ_REQUIRED",
        also_in: &["/usr/sbin"],
        install: "install Debian's dnsmasq-base",
        needed_for: "a real name server",
    }
    .find()
}

/// A new, empty directory under the system temp dir that dnsmasq (as `nobody`) can read.
fn scratch_dir() -> PathBuf {
    let dir = test_tools::scratch_dir("dns-harness");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .expect("make the scratch directory readable");
    dir
}
