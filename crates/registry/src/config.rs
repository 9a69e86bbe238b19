//! Command-line and environment configuration.
//!
//! Every flag has an environment fallback and a default, so `registry` with no arguments
//! serves on `127.0.0.1:8500`. [`Config::validate`] checks what clap cannot (cross-field
//! rules, refusing a non-loopback listen address without `--allow-remote`); `main` runs it
//! before binding anything.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use clap::builder::BoolishValueParser;

use serving::{Server, ServerTls, TlsError};

use crate::store::StoreLimits;
use crate::validate::TtlPolicy;

mod store;

pub use store::StoreKind;

/// Default listen address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8500);

/// Registry configuration.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "registry",
    version,
    about = "Service registry: leases with TTL, heartbeats, blocking-query watch."
)]
pub struct Config {
    /// Address to listen on (`localhost:PORT` means `127.0.0.1:PORT`).
    #[arg(long, env = "REGISTRY_LISTEN", default_value = "127.0.0.1:8500", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Allow listening on a non-loopback address.
    #[arg(long, env = "REGISTRY_ALLOW_REMOTE", default_value_t = false, value_parser = BoolishValueParser::new())]
    pub allow_remote: bool,

    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain, leaf first (needs
    /// --tls-key).
    #[arg(long, env = "REGISTRY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (needs --tls-cert).
    #[arg(long, env = "REGISTRY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Close a connection whose TLS handshake and request headers have not arrived within
    /// this (slowloris, or a client that connects and sends nothing).
    #[arg(long, env = "REGISTRY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = serving::flags::parse_timeout)]
    pub header_read_timeout: Duration,

    /// Close a keep-alive connection with no request begun for this long.
    #[arg(long, env = "REGISTRY_IDLE_TIMEOUT", default_value = "75s", value_parser = serving::flags::parse_timeout)]
    pub idle_timeout: Duration,

    /// Most client connections open at once (keep it under the file-descriptor limit,
    /// `ulimit -n`). At the cap a new connection takes the place of the longest-idle one,
    /// or is refused after 250 ms when every connection has a request in flight.
    #[arg(long, env = "REGISTRY_MAX_CONNECTIONS", default_value = "768", value_parser = serving::flags::parse_max_connections)]
    pub max_connections: usize,

    /// Where registrations live: `memory` (in this process; the default) or `etcd` (shared
    /// by every registry on the same etcd and surviving their restarts; needs the `etcd`
    /// cargo feature).
    #[arg(long, env = "REGISTRY_STORE", value_enum, default_value_t = StoreKind::Memory)]
    pub store: StoreKind,

    /// etcd client URLs for `--store etcd`, comma-separated.
    #[arg(
        long,
        env = "REGISTRY_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: Vec<String>,

    /// Key prefix under which `--store etcd` keeps registrations (`<prefix><service>/<id>`).
    #[arg(long, env = "REGISTRY_ETCD_PREFIX", default_value = "/discovery/")]
    pub etcd_prefix: String,

    /// How long `--store etcd` keeps a registration beyond its TTL while no registry
    /// renews it: the longest outage of every registry on the etcd that loses no
    /// registration (whole seconds; 0 leaves expiry to etcd at the TTL). Registries still
    /// expire an instance that stops heartbeating at its TTL.
    #[arg(long, env = "REGISTRY_ETCD_OUTAGE_GRACE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub etcd_outage_grace: Duration,

    /// Bearer token required on every write (`Authorization: Bearer <token>`); none by default.
    #[arg(long, env = "REGISTRY_TOKEN", hide_env_values = true)]
    pub token: Option<BearerToken>,

    /// Require the token on reads too (not on /health).
    #[arg(long, env = "REGISTRY_PROTECT_READS", default_value_t = false, value_parser = BoolishValueParser::new())]
    pub protect_reads: bool,

    /// Lease TTL for registrations that do not ask for one (whole seconds).
    #[arg(long, env = "REGISTRY_DEFAULT_TTL", default_value = "120s", value_parser = humantime::parse_duration)]
    pub default_ttl: Duration,

    /// Shortest lease TTL accepted (whole seconds).
    #[arg(long, env = "REGISTRY_MIN_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub min_ttl: Duration,

    /// Longest lease TTL accepted (whole seconds).
    #[arg(long, env = "REGISTRY_MAX_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_ttl: Duration,

    /// Longest a blocking query may wait; longer `wait` values are cut to this. Also the
    /// wait of a blocking query that gives none.
    #[arg(long, env = "REGISTRY_MAX_WAIT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub max_wait: Duration,

    /// How often expired leases are swept.
    #[arg(long, env = "REGISTRY_SWEEP_INTERVAL", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub sweep_interval: Duration,

    /// Most instances one service may have.
    #[arg(
        long,
        env = "REGISTRY_MAX_INSTANCES_PER_SERVICE",
        default_value_t = 1000
    )]
    pub max_instances_per_service: usize,

    /// Most services the registry tracks.
    #[arg(long, env = "REGISTRY_MAX_SERVICES", default_value_t = 10_000)]
    pub max_services: usize,

    /// Most blocking queries waiting at once; more are refused with 429.
    #[arg(long, env = "REGISTRY_MAX_BLOCKING_QUERIES", default_value_t = 10_000)]
    pub max_blocking_queries: usize,

    /// Most blocking queries one client (peer IP address) may have waiting at once; more
    /// are refused with 429.
    #[arg(
        long,
        env = "REGISTRY_MAX_BLOCKING_QUERIES_PER_CLIENT",
        default_value_t = 1000
    )]
    pub max_blocking_queries_per_client: usize,
}

impl Default for Config {
    /// The same values as running `registry` with no flags and no environment.
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            allow_remote: false,
            tls_cert: None,
            tls_key: None,
            header_read_timeout: serving::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: serving::DEFAULT_IDLE_TIMEOUT,
            max_connections: serving::DEFAULT_MAX_CONNECTIONS,
            store: StoreKind::Memory,
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            etcd_prefix: "/discovery/".into(),
            etcd_outage_grace: Duration::from_secs(60),
            token: None,
            protect_reads: false,
            default_ttl: Duration::from_secs(120),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(3600),
            max_wait: Duration::from_secs(60),
            sweep_interval: Duration::from_millis(250),
            max_instances_per_service: 1000,
            max_services: 10_000,
            max_blocking_queries: 10_000,
            max_blocking_queries_per_client: 1000,
        }
    }
}

/// A configuration that parsed but makes no sense; the message says which flag to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Checks the rules clap cannot express. Run before binding.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError(message));
        if !self.allow_remote && !self.listen.ip().is_loopback() {
            return fail(format!(
                "--listen {} is not a loopback address; pass --allow-remote to serve other hosts",
                self.listen
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return fail("--tls-cert and --tls-key go together: give both, or neither".into());
        }
        self.validate_store()?;
        for (flag, value) in [
            ("--default-ttl", self.default_ttl),
            ("--min-ttl", self.min_ttl),
            ("--max-ttl", self.max_ttl),
        ] {
            if value.subsec_nanos() != 0 || value.is_zero() {
                return fail(format!(
                    "{flag} must be a whole, non-zero number of seconds (got {})",
                    humantime::format_duration(value)
                ));
            }
        }
        if !(self.min_ttl <= self.default_ttl && self.default_ttl <= self.max_ttl) {
            return fail("TTLs must satisfy --min-ttl <= --default-ttl <= --max-ttl".into());
        }
        for (flag, value) in [
            ("--sweep-interval", self.sweep_interval),
            ("--max-wait", self.max_wait),
        ] {
            if value.is_zero() {
                return fail(format!("{flag} must be greater than zero"));
            }
        }
        for (flag, value) in [
            (
                "--max-instances-per-service",
                self.max_instances_per_service,
            ),
            ("--max-services", self.max_services),
            ("--max-blocking-queries", self.max_blocking_queries),
            (
                "--max-blocking-queries-per-client",
                self.max_blocking_queries_per_client,
            ),
        ] {
            if value == 0 {
                return fail(format!("{flag} must be at least 1"));
            }
        }
        Ok(())
    }

    /// The certificate and key of `--tls-cert` / `--tls-key`, read and checked; `None` for
    /// plain HTTP. Run before binding.
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the file that cannot be used.
    pub fn server_tls(&self) -> Result<Option<ServerTls>, TlsError> {
        ServerTls::from_flags(self.tls_cert.as_deref(), self.tls_key.as_deref())
    }

    /// `server` with the connection limits of `--header-read-timeout`, `--idle-timeout` and
    /// `--max-connections`.
    pub fn limit_connections(&self, server: Server) -> Server {
        server
            .header_read_timeout(self.header_read_timeout)
            .idle_timeout(self.idle_timeout)
            .max_connections(self.max_connections)
    }

    /// The TTL rules for registrations.
    pub fn ttl_policy(&self) -> TtlPolicy {
        TtlPolicy {
            default: self.default_ttl,
            min: self.min_ttl,
            max: self.max_ttl,
        }
    }

    /// The store's memory bounds.
    pub fn store_limits(&self) -> StoreLimits {
        StoreLimits {
            max_services: self.max_services,
            max_instances_per_service: self.max_instances_per_service,
        }
    }
}

/// A shared bearer token. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BearerToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("the token must not be empty".into());
        }
        if !s.chars().all(|c| c.is_ascii_graphic()) {
            return Err("the token must be printable ASCII without spaces".into());
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// `--listen`: see [`service_telemetry::listen::parse_listen`].
fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    service_telemetry::listen::parse_listen(value, DEFAULT_LISTEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("registry").chain(args.iter().copied()))
    }

    #[test]
    fn no_flags_gives_the_documented_defaults() {
        let config = parse(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.listen, "127.0.0.1:8500".parse().unwrap());
        assert_eq!(config.default_ttl, Duration::from_secs(120));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn flags_parse_durations_and_tokens() {
        let config = parse(&[
            "--listen",
            "localhost:0",
            "--token",
            "s3cret",
            "--protect-reads",
            "--max-wait",
            "500ms",
            "--default-ttl",
            "2m",
        ])
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(
            config.token.as_ref().map(BearerToken::as_str),
            Some("s3cret")
        );
        assert!(config.protect_reads);
        assert_eq!(config.max_wait, Duration::from_millis(500));
        assert_eq!(config.default_ttl, Duration::from_secs(120));
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn connection_limits_parse_and_refuse_zero() {
        let config = parse(&[
            "--header-read-timeout",
            "5s",
            "--idle-timeout",
            "2m",
            "--max-connections",
            "100",
        ])
        .unwrap();
        assert_eq!(config.header_read_timeout, Duration::from_secs(5));
        assert_eq!(config.idle_timeout, Duration::from_secs(120));
        assert_eq!(config.max_connections, 100);
        assert_eq!(Config::default().max_connections, 768);
        for args in [
            &["--header-read-timeout", "0s"][..],
            &["--idle-timeout", "0s"],
            &["--max-connections", "0"],
        ] {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn malformed_flags_are_parse_errors() {
        assert!(parse(&["--listen", "nowhere"]).is_err());
        assert!(parse(&["--max-wait", "soon"]).is_err());
        assert!(parse(&["--token", ""]).is_err());
        assert!(parse(&["--max-services", "-1"]).is_err());
    }

    #[test]
    fn tls_needs_both_the_certificate_and_the_key() {
        let config = parse(&["--tls-cert", "server.pem", "--tls-key", "server.key"]).unwrap();
        assert_eq!(config.tls_cert, Some(PathBuf::from("server.pem")));
        assert_eq!(config.tls_key, Some(PathBuf::from("server.key")));
        assert_eq!(config.validate(), Ok(()));
        for args in [&["--tls-cert", "server.pem"], &["--tls-key", "server.key"]] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(error.to_string().contains("required"), "{error}");
        }
        let half = Config {
            tls_cert: Some("server.pem".into()),
            ..Config::default()
        };
        assert!(
            half.validate()
                .unwrap_err()
                .to_string()
                .contains("--tls-key")
        );
        let missing = parse(&["--tls-cert", "/nonexistent/server.pem", "--tls-key", "k"]).unwrap();
        let error = missing.server_tls().unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot read /nonexistent/server.pem: "),
            "{error}"
        );
        assert!(Config::default().server_tls().unwrap().is_none());
    }

    #[test]
    fn non_loopback_needs_allow_remote() {
        let remote = parse(&["--listen", "0.0.0.0:8500"]).unwrap();
        let err = remote.validate().unwrap_err();
        assert!(err.to_string().contains("--allow-remote"), "{err}");
        let allowed = parse(&["--listen", "0.0.0.0:8500", "--allow-remote"]).unwrap();
        assert_eq!(allowed.validate(), Ok(()));
        assert_eq!(parse(&["--listen", "[::1]:0"]).unwrap().validate(), Ok(()));
    }

    #[test]
    fn inconsistent_values_are_rejected() {
        for args in [
            &["--min-ttl", "10s", "--default-ttl", "5s"][..],
            &["--max-ttl", "1m", "--default-ttl", "2m"],
            &["--default-ttl", "1500ms"],
            &["--min-ttl", "0s"],
            &["--sweep-interval", "0s"],
            &["--max-wait", "0s"],
            &["--max-services", "0"],
            &["--max-blocking-queries", "0"],
            &["--max-blocking-queries-per-client", "0"],
        ] {
            let config = parse(args).unwrap();
            assert!(config.validate().is_err(), "{args:?} was accepted");
        }
    }
}
