//! The tools people would use instead of our client: nginx and HAProxy in front of the
//! instances. Used when installed (`apt-get install -y nginx haproxy`), skipped with a message
//! when not; the harness never installs anything.
//!
//! Each peer's configuration is rendered from a template in `crates/bench/peers/` (read
//! them to check how each peer is set up) into a temporary directory, and the peer runs as
//! a child process on a loopback port picked free at run time.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use test_certs::Issued;

use crate::procs::Child;

const NGINX_TEMPLATE: &str = include_str!("../peers/nginx.conf.tmpl");
const HAPROXY_TEMPLATE: &str = include_str!("../peers/haproxy.cfg.tmpl");

/// Which proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// nginx (`max_fails`, `fail_timeout`, `proxy_next_upstream`).
    Nginx,
    /// HAProxy (`observe layer7`, `error-limit`, `on-error mark-down`) with L7 retries
    /// (`retry-on`), which keep timed-out requests from failing but also keep the timeout
    /// from marking the server down.
    Haproxy,
    /// The same HAProxy without L7 retries: timeouts mark the server down, and the request
    /// that timed out fails.
    HaproxyMarkDown,
    /// nginx as [`Nginx`](PeerKind::Nginx) with `least_conn` instead of round-robin: its
    /// answer to a slow upstream (the gray scenario).
    NginxLeastConn,
    /// HAProxy as [`Haproxy`](PeerKind::Haproxy) with `balance leastconn` instead of
    /// round-robin (the gray scenario).
    HaproxyLeastConn,
}

impl PeerKind {
    /// `nginx`, `haproxy`, `haproxy-markdown`, `nginx-least-conn` or `haproxy-least-conn`.
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Nginx => "nginx",
            PeerKind::Haproxy => "haproxy",
            PeerKind::HaproxyMarkDown => "haproxy-markdown",
            PeerKind::NginxLeastConn => "nginx-least-conn",
            PeerKind::HaproxyLeastConn => "haproxy-least-conn",
        }
    }

    /// The program: `nginx` or `haproxy`.
    pub fn program(self) -> &'static str {
        match self {
            PeerKind::Nginx | PeerKind::NginxLeastConn => "nginx",
            PeerKind::Haproxy | PeerKind::HaproxyMarkDown | PeerKind::HaproxyLeastConn => "haproxy",
        }
    }

    /// The installed program, if any (`PATH`, then the sbin directories Debian uses).
    pub fn find(self) -> Option<PathBuf> {
        let name = self.program();
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    }
}

/// The settings every contender shares, so each peer can be configured to match.
#[derive(Debug, Clone, Copy)]
pub struct Resilience {
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// How long a failed instance is left alone before it is tried again.
    pub retest: Duration,
    /// Retries on another instance after a failed attempt.
    pub retries: u32,
}

/// A proxy, running.
pub struct Peer {
    /// Which one.
    pub kind: PeerKind,
    /// Its base URL, such as `http://127.0.0.1:41234`.
    pub url: String,
    /// Where its configuration was written.
    pub config_path: PathBuf,
    /// The process (stopped on drop).
    pub process: Child,
    /// The temporary directory, removed on drop.
    dir: tempfile::TempDir,
}

impl Peer {
    /// Renders the configuration for `kind` into a new temporary directory and starts it in
    /// front of `upstreams` (`http://127.0.0.1:PORT` each), waiting until it answers
    /// `GET /health` through to an instance.
    pub async fn start(
        kind: PeerKind,
        program: &Path,
        upstreams: &[String],
        settings: Resilience,
    ) -> Result<Peer, String> {
        let hostports = host_ports(upstreams);
        Peer::launch(kind, program, None, |dir, listen| match kind {
            PeerKind::Nginx => render_nginx(dir, listen, &hostports, settings, false),
            PeerKind::NginxLeastConn => {
                render_nginx_balanced(dir, listen, &hostports, settings, false, "least_conn;")
            }
            PeerKind::Haproxy | PeerKind::HaproxyMarkDown => {
                let l7_retries = kind == PeerKind::Haproxy;
                render_haproxy(dir, listen, &hostports, settings, l7_retries)
            }
            PeerKind::HaproxyLeastConn => {
                render_haproxy_balanced(dir, listen, &hostports, settings, true, "leastconn")
            }
        })
        .await
    }

    /// nginx in front of `upstreams` (plain `http://127.0.0.1:PORT` each), terminating TLS
    /// with `certificate` and offering h2 and http/1.1 by ALPN; its URL is `https://`. Ready
    /// once its port accepts connections.
    pub async fn start_tls(
        program: &Path,
        upstreams: &[String],
        settings: Resilience,
        certificate: &Issued,
    ) -> Result<Peer, String> {
        let hostports = host_ports(upstreams);
        Peer::launch(
            PeerKind::Nginx,
            program,
            Some(certificate),
            |dir, listen| render_nginx(dir, listen, &hostports, settings, true),
        )
        .await
    }

    /// nginx with a configuration of the caller's: `render(dir, listen)` returns the whole
    /// `nginx.conf` for the temporary directory `dir` (which nginx gets as its prefix, and
    /// which holds `server.pem` and `server.key` when `certificate` is given) and the
    /// loopback address to listen on. Its URL is `https://` with a certificate, `http://`
    /// without. Ready once its port accepts connections.
    pub async fn nginx(
        program: &Path,
        certificate: Option<&Issued>,
        render: impl FnOnce(&Path, SocketAddr) -> String,
    ) -> Result<Peer, String> {
        Peer::launch(PeerKind::Nginx, program, certificate, render).await
    }

    /// Writes the configuration `render` makes (and the certificate, if any) into a new
    /// temporary directory, starts `program` on it on a free loopback port, and waits until
    /// it serves: plain peers until `GET /health` answers 200 through to an instance, TLS
    /// peers until the port accepts connections.
    async fn launch(
        kind: PeerKind,
        program: &Path,
        certificate: Option<&Issued>,
        render: impl FnOnce(&Path, SocketAddr) -> String,
    ) -> Result<Peer, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("discovery-bench-{}-", kind.name()))
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        if let Some(certificate) = certificate {
            for (name, pem) in [
                ("server.pem", &certificate.cert_pem),
                ("server.key", &certificate.key_pem),
            ] {
                let path = dir.path().join(name);
                std::fs::write(&path, pem).map_err(|e| format!("write {}: {e}", path.display()))?;
            }
        }
        let listen = free_loopback_port()?;
        let config = render(dir.path(), listen);
        let (file, args) = match kind {
            PeerKind::Nginx | PeerKind::NginxLeastConn => {
                let file = dir.path().join("nginx.conf");
                let args = vec![
                    "-p".to_string(),
                    dir.path().display().to_string(),
                    "-c".into(),
                    file.display().to_string(),
                    "-e".into(),
                    "stderr".into(),
                ];
                (file, args)
            }
            PeerKind::Haproxy | PeerKind::HaproxyMarkDown | PeerKind::HaproxyLeastConn => {
                let file = dir.path().join("haproxy.cfg");
                let args = vec!["-db".to_string(), "-f".into(), file.display().to_string()];
                (file, args)
            }
        };
        std::fs::write(&file, config).map_err(|e| format!("write {}: {e}", file.display()))?;
        let mut process = Child::spawn(kind.name(), program, &args, &[])?;
        let url = match certificate {
            None => {
                let url = format!("http://{listen}");
                wait_until_serving(&mut process, &url).await?;
                url
            }
            Some(_) => {
                wait_until_listening(&mut process, listen).await?;
                format!("https://{listen}")
            }
        };
        Ok(Peer {
            kind,
            url,
            config_path: file,
            process,
            dir,
        })
    }

    /// The directory holding the rendered configuration.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `127.0.0.1:PORT` of each `http://127.0.0.1:PORT` upstream.
fn host_ports(upstreams: &[String]) -> Vec<&str> {
    upstreams
        .iter()
        .map(|u| u.trim_start_matches("http://").trim_end_matches('/'))
        .collect()
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// Whole seconds, rounded up: nginx's `fail_timeout` takes no finer unit.
fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

fn fill(template: &str, pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .fold(template.to_string(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

/// The nginx configuration for these upstreams (`127.0.0.1:PORT` each); with `tls`, it
/// terminates TLS (h2 and http/1.1 by ALPN) with `server.pem` and `server.key` from `dir`.
pub fn render_nginx(
    dir: &Path,
    listen: SocketAddr,
    upstreams: &[&str],
    s: Resilience,
    tls: bool,
) -> String {
    render_nginx_balanced(
        dir,
        listen,
        upstreams,
        s,
        tls,
        "# round-robin (nginx's default)",
    )
}

/// [`render_nginx`] with `balance` as the upstream's balancing line (`least_conn;`).
pub fn render_nginx_balanced(
    dir: &Path,
    listen: SocketAddr,
    upstreams: &[&str],
    s: Resilience,
    tls: bool,
    balance: &str,
) -> String {
    let servers: Vec<String> = upstreams
        .iter()
        .map(|hp| {
            format!(
                "        server {hp} max_fails=1 fail_timeout={};",
                seconds(s.retest)
            )
        })
        .collect();
    let (listen, certificate) = match tls {
        false => (listen.to_string(), "        # plain HTTP".to_string()),
        true => (
            format!("{listen} ssl http2"),
            format!(
                "        ssl_certificate {dir}/server.pem;\n        ssl_certificate_key {dir}/server.key;",
                dir = dir.display()
            ),
        ),
    };
    fill(
        NGINX_TEMPLATE,
        &[
            ("UPSTREAMS", servers.join("\n")),
            ("BALANCE", balance.to_string()),
            ("TLS", certificate),
            ("DIR", dir.display().to_string()),
            ("LISTEN", listen),
            ("TIMEOUT", millis(s.timeout)),
            ("RETEST", seconds(s.retest)),
            ("TRIES", (s.retries + 1).to_string()),
            ("WORKERS", workers().to_string()),
        ],
    )
}

/// The HAProxy configuration for these upstreams (`127.0.0.1:PORT` each), with or without
/// L7 retries.
pub fn render_haproxy(
    dir: &Path,
    listen: SocketAddr,
    upstreams: &[&str],
    s: Resilience,
    l7_retries: bool,
) -> String {
    render_haproxy_balanced(dir, listen, upstreams, s, l7_retries, "roundrobin")
}

/// [`render_haproxy`] with `balance` as the backend's algorithm (`leastconn`).
pub fn render_haproxy_balanced(
    dir: &Path,
    listen: SocketAddr,
    upstreams: &[&str],
    s: Resilience,
    l7_retries: bool,
    balance: &str,
) -> String {
    let retry_on = if l7_retries {
        "retry-on conn-failure empty-response response-timeout 500 502 503 504"
    } else {
        "# no retry-on: timeouts mark the server down, and the timed-out request fails"
    };
    let servers: Vec<String> = upstreams
        .iter()
        .enumerate()
        .map(|(i, hp)| format!("    server r{} {hp}", i + 1))
        .collect();
    fill(
        HAPROXY_TEMPLATE,
        &[
            ("SERVERS", servers.join("\n")),
            ("BALANCE", balance.to_string()),
            ("DIR", dir.display().to_string()),
            ("LISTEN", listen.to_string()),
            ("TIMEOUT", millis(s.timeout)),
            ("RETEST", millis(s.retest)),
            ("RETRIES", s.retries.to_string()),
            ("THREADS", workers().to_string()),
            ("RETRY_ON", retry_on.to_string()),
        ],
    )
}

/// Worker processes (nginx) or threads (HAProxy): one per core, as both recommend.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A loopback port that was free a moment ago (bound, read, released).
pub fn free_loopback_port() -> Result<SocketAddr, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    listener
        .local_addr()
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Polls `addr` until it accepts a TCP connection (at most 10 s) or the process exits.
async fn wait_until_listening(process: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if process.has_exited() {
            return Err(format!(
                "{} exited at start:\n{}",
                process.name,
                process.output()
            ));
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} did not listen on {addr} within 10 s:\n{}",
                process.name,
                process.output()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `GET {url}/health` until it answers 200 (at most 10 s) or the process exits.
async fn wait_until_serving(process: &mut Child, url: &str) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if process.has_exited() {
            return Err(format!(
                "{} exited at start:\n{}",
                process.name,
                process.output()
            ));
        }
        if let Ok(answer) = http.get(format!("{url}/health")).send().await {
            if answer.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} did not serve {url}/health within 10 s:\n{}",
                process.name,
                process.output()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Resilience {
        Resilience {
            timeout: Duration::from_secs(1),
            retest: Duration::from_secs(30),
            retries: 2,
        }
    }

    #[test]
    fn nginx_config_matches_our_defaults_and_fills_every_placeholder() {
        let listen: SocketAddr = "127.0.0.1:9000".parse().unwrap_or_else(|_| unreachable!());
        let text = render_nginx(
            Path::new("/tmp/x"),
            listen,
            &["127.0.0.1:1", "127.0.0.1:2"],
            settings(),
            false,
        );
        assert!(!text.contains("{{"), "{text}");
        assert!(text.contains("server 127.0.0.1:2 max_fails=1 fail_timeout=30s;"));
        assert!(text.contains("proxy_read_timeout 1000ms;"));
        assert!(text.contains("proxy_next_upstream_tries 3;"));
        assert!(text.contains("listen 127.0.0.1:9000;"));
        assert!(!text.contains("ssl"), "{text}");
    }

    #[test]
    fn nginx_tls_config_terminates_tls_with_the_certificate_in_its_directory() {
        let listen: SocketAddr = "127.0.0.1:9000".parse().unwrap_or_else(|_| unreachable!());
        let text = render_nginx(
            Path::new("/tmp/x"),
            listen,
            &["127.0.0.1:1"],
            settings(),
            true,
        );
        assert!(!text.contains("{{"), "{text}");
        assert!(text.contains("listen 127.0.0.1:9000 ssl http2;"), "{text}");
        assert!(
            text.contains("ssl_certificate /tmp/x/server.pem;"),
            "{text}"
        );
        assert!(
            text.contains("ssl_certificate_key /tmp/x/server.key;"),
            "{text}"
        );
        assert!(text.contains("proxy_pass http://ratings;"), "{text}");
    }

    #[test]
    fn haproxy_config_matches_our_defaults_and_fills_every_placeholder() {
        let listen: SocketAddr = "127.0.0.1:9000".parse().unwrap_or_else(|_| unreachable!());
        let text = render_haproxy(
            Path::new("/tmp/x"),
            listen,
            &["127.0.0.1:1"],
            settings(),
            true,
        );
        assert!(!text.contains("{{"), "{text}");
        assert!(text.contains("retry-on conn-failure"));
        let text = render_haproxy(
            Path::new("/tmp/x"),
            listen,
            &["127.0.0.1:1"],
            settings(),
            false,
        );
        assert!(!text.contains("    retry-on"), "{text}");
        assert!(text.contains("server r1 127.0.0.1:1"));
        assert!(text.contains("error-limit 1 on-error mark-down"));
        assert!(text.contains("downinter 30000ms"));
        assert!(text.contains("retries 2"));
        assert!(text.contains("balance roundrobin"), "{text}");
    }

    #[test]
    fn least_connection_variants_change_only_the_balancing() {
        let listen: SocketAddr = "127.0.0.1:9000".parse().unwrap_or_else(|_| unreachable!());
        let dir = Path::new("/tmp/x");
        let ups = ["127.0.0.1:1", "127.0.0.1:2"];
        let plain = render_nginx(dir, listen, &ups, settings(), false);
        let least = render_nginx_balanced(dir, listen, &ups, settings(), false, "least_conn;");
        assert!(!least.contains("{{"), "{least}");
        assert!(least.contains("        least_conn;\n"), "{least}");
        assert!(!plain.contains("least_conn;\n"), "{plain}");
        let least = render_haproxy_balanced(dir, listen, &ups, settings(), true, "leastconn");
        assert!(!least.contains("{{"), "{least}");
        assert!(least.contains("    balance leastconn\n"), "{least}");
        assert!(!least.contains("    balance roundrobin\n"), "{least}");
    }
}
