//! Command-line and environment configuration.
//!
//! Every flag has an environment fallback and a default, so `market` with no arguments
//! serves on `127.0.0.1:5000` and finds ratings through the registry on `127.0.0.1:8500`,
//! with the original contract's resilience settings (timeout 1 s, failure limit 1, retest
//! delay 30 s). [`Config::validate`] checks what clap cannot (a non-loopback listen address
//! without `--allow-remote`, zero durations, malformed URLs); `main` runs it before binding
//! anything and reports a failure as a usage error.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::builder::BoolishValueParser;
use discovery_client::transport::TlsConfig;
use serving::{Server, ServerTls, TlsError};

/// Default listen address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5000);

/// Market configuration.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "market",
    version,
    about = "The market web app: four items, a cart, and ratings fetched resiliently."
)]
pub struct Config {
    /// Address to listen on (`localhost:PORT` means `127.0.0.1:PORT`).
    #[arg(long, env = "MARKET_LISTEN", default_value = "127.0.0.1:5000", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Allow listening on a non-loopback address.
    #[arg(long, env = "MARKET_ALLOW_REMOTE", default_value_t = false, value_parser = BoolishValueParser::new())]
    pub allow_remote: bool,

    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain, leaf first (needs
    /// --tls-key).
    #[arg(long, env = "MARKET_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (needs --tls-cert).
    #[arg(long, env = "MARKET_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Close a connection whose TLS handshake and request headers have not arrived within
    /// this (slowloris, or a client that connects and sends nothing).
    #[arg(long, env = "MARKET_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = serving::flags::parse_timeout)]
    pub header_read_timeout: Duration,

    /// Close a keep-alive connection with no request begun for this long.
    #[arg(long, env = "MARKET_IDLE_TIMEOUT", default_value = "75s", value_parser = serving::flags::parse_timeout)]
    pub idle_timeout: Duration,

    /// Most client connections open at once (keep it under the file-descriptor limit,
    /// `ulimit -n`). At the cap a new connection takes the place of the longest-idle one,
    /// or is refused after 250 ms when every connection has a request in flight.
    #[arg(long, env = "MARKET_MAX_CONNECTIONS", default_value = "768", value_parser = serving::flags::parse_max_connections)]
    pub max_connections: usize,

    /// Also trust the CA certificates in this PEM file when calling https:// ratings
    /// instances and an https:// registry (besides the system's roots).
    #[arg(long, env = "MARKET_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Base URL of the registry that knows the ratings instances (http:// or https://).
    #[arg(long, env = "REGISTRY_URL", default_value = "http://127.0.0.1:8500", value_parser = parse_base_url)]
    pub registry: String,

    /// Name of the ratings service in the registry.
    #[arg(long, env = "RATINGS_SERVICE", default_value = "ratings", value_parser = parse_service_name)]
    pub ratings_service: String,

    /// Per-request timeout for one call to a ratings instance (`500ms`, `1s`, ...).
    #[arg(long, env = "RATINGS_TIMEOUT", default_value = "1s", value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// Consecutive failures that open an instance's circuit breaker.
    #[arg(long, env = "RATINGS_FAILURE_LIMIT", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub failure_limit: u32,

    /// Open an instance's breaker on its failure rate instead of --failure-limit: when at
    /// least this share (in (0, 1], such as `0.5`) of its outcomes over
    /// --failure-rate-window failed, once --failure-rate-min-requests were seen.
    #[arg(long, env = "RATINGS_FAILURE_RATE", conflicts_with = "failure_limit")]
    pub failure_rate: Option<FailureRatio>,

    /// With --failure-rate: the outcomes the window must hold before the rate is judged.
    #[arg(long, env = "RATINGS_FAILURE_RATE_MIN_REQUESTS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub failure_rate_min_requests: u32,

    /// With --failure-rate: how far back outcomes count (`10s`, ...).
    #[arg(long, env = "RATINGS_FAILURE_RATE_WINDOW", default_value = "10s", value_parser = parse_positive_duration)]
    pub failure_rate_window: Duration,

    /// How long an open breaker waits before letting one probe through (`30s`, ...).
    #[arg(long, env = "RATINGS_RETEST_DELAY", default_value = "30s", value_parser = parse_positive_duration)]
    pub retest_delay: Duration,

    /// How long a rating is served from the fresh cache without calling ratings. `0s` (the
    /// default) calls ratings on every page load, except that when the market is swamped
    /// (more than 32 ratings calls in flight, as after a CPU-starved pause) page loads asking
    /// for the same rating while a call for it is in flight share that call; the last good
    /// rating is still served, marked stale, when every instance is down.
    #[arg(long, env = "RATINGS_CACHE_TTL", default_value = "0s", value_parser = humantime::parse_duration)]
    pub cache_ttl: Duration,

    /// Slow start (off by default): a ratings instance that appears, or whose breaker
    /// closes, gets a share of the calls that ramps up over this window (`30s`, ...).
    #[arg(long, env = "RATINGS_SLOW_START", value_parser = parse_positive_duration)]
    pub slow_start: Option<Duration>,

    /// How the market calls ratings: `http` (`GET /ratings/{id}`, with the response cache
    /// and its stale fallback) or `grpc` (`ratings.v1.Ratings/GetRating` through the
    /// library's gRPC channel: the same picking, breakers, timeouts and log lines; no fresh
    /// cache, but the last good rating of each item is shown stale when every instance
    /// fails).
    #[arg(long, env = "RATINGS_PROTOCOL", value_enum, default_value_t = RatingsProtocol::Http)]
    pub ratings_protocol: RatingsProtocol,

    /// Comma-separated base URLs of ratings instances to use instead of the registry
    /// (instances are numbered 1, 2, ... in this order).
    #[arg(long, env = "RATINGS_STATIC_URLS", value_delimiter = ',', value_parser = parse_base_url)]
    pub static_ratings: Option<Vec<String>>,

    /// Where the ratings instances are found: `registry` (the registry at --registry),
    /// `dns:NAME:PORT` (the A/AAAA records of NAME, one instance per address, on PORT: a
    /// Kubernetes headless Service) or `srv:NAME` (the SRV records of NAME: Consul DNS).
    /// DNS names are looked up again as their TTLs run out (at least 1 s, at most 30 s apart).
    #[arg(long, env = "RATINGS_DISCOVERY", default_value = "registry", value_parser = parse_discovery)]
    pub discovery: RatingsDiscovery,

    /// With `--discovery dns:..` or `srv:..`: ask this name server (`IP:PORT`, such as
    /// `127.0.0.1:8600` for a Consul agent) instead of those in /etc/resolv.conf.
    #[arg(long, env = "RATINGS_DNS_SERVER", value_parser = parse_dns_server)]
    pub dns_server: Option<SocketAddr>,

    /// Bearer token for the registry's reads, when it was started with `--protect-reads`.
    #[arg(long, env = "REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<RegistryToken>,

    /// Most carts kept in memory; the least recently used is dropped to make room.
    #[arg(long, env = "MARKET_MAX_CARTS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_carts: u64,
}

/// How the market calls the ratings service (`--ratings-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RatingsProtocol {
    /// JSON over HTTP, through the library's `ServiceClient` (with its response cache).
    #[default]
    Http,
    /// gRPC (`ratings.v1.Ratings`), through the library's gRPC channel.
    Grpc,
}

impl Default for Config {
    /// The same values as running `market` with no flags and no environment.
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            allow_remote: false,
            tls_cert: None,
            tls_key: None,
            header_read_timeout: serving::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: serving::DEFAULT_IDLE_TIMEOUT,
            max_connections: serving::DEFAULT_MAX_CONNECTIONS,
            ca_file: None,
            registry: "http://127.0.0.1:8500".into(),
            ratings_service: "ratings".into(),
            timeout: Duration::from_secs(1),
            failure_limit: 1,
            failure_rate: None,
            failure_rate_min_requests: 10,
            failure_rate_window: Duration::from_secs(10),
            retest_delay: Duration::from_secs(30),
            cache_ttl: Duration::ZERO,
            slow_start: None,
            ratings_protocol: RatingsProtocol::Http,
            static_ratings: None,
            discovery: RatingsDiscovery::Registry,
            dns_server: None,
            registry_token: None,
            max_carts: 10_000,
        }
    }
}

/// A share of failures for `--failure-rate`: a number in `(0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureRatio(f64);

impl FailureRatio {
    /// The share, in `(0, 1]`.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// Never NaN (the parser refuses it), so equality is total.
impl Eq for FailureRatio {}

impl std::str::FromStr for FailureRatio {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<f64>() {
            Ok(ratio) if ratio > 0.0 && ratio <= 1.0 => Ok(Self(ratio)),
            _ => Err(format!(
                "{s:?} is not a share of failures in (0, 1], such as 0.5"
            )),
        }
    }
}

/// Where the market finds ratings instances (`--discovery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RatingsDiscovery {
    /// The registry at `--registry` (the default).
    Registry,
    /// The A/AAAA records of `name`, each address on `port`.
    Dns {
        /// The DNS name.
        name: String,
        /// The port every address serves on.
        port: u16,
    },
    /// The SRV records of `name`.
    Srv {
        /// The SRV name, such as `_http._tcp.ratings.service.consul`.
        name: String,
    },
}

impl std::fmt::Display for RatingsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RatingsDiscovery::Registry => f.write_str("registry"),
            RatingsDiscovery::Dns { name, port } => write!(f, "dns:{name}:{port}"),
            RatingsDiscovery::Srv { name } => write!(f, "srv:{name}"),
        }
    }
}

/// `--discovery`: `registry`, `dns:NAME:PORT` or `srv:NAME`.
fn parse_discovery(value: &str) -> Result<RatingsDiscovery, String> {
    let value = value.trim();
    let usage = "registry, dns:NAME:PORT or srv:NAME";
    if value == "registry" {
        return Ok(RatingsDiscovery::Registry);
    }
    if let Some(rest) = value.strip_prefix("dns:") {
        let (name, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{value:?} has no port: give dns:NAME:PORT"))?;
        let port =
            port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                format!("{value:?}: port {port:?} is not a number from 1 to 65535")
            })?;
        return Ok(RatingsDiscovery::Dns {
            name: parse_dns_name(name)?,
            port,
        });
    }
    if let Some(name) = value.strip_prefix("srv:") {
        return Ok(RatingsDiscovery::Srv {
            name: parse_dns_name(name)?,
        });
    }
    Err(format!("{value:?} is not one of {usage}"))
}

/// A DNS name: 1 to 253 characters of `[A-Za-z0-9._-]`, labels of 1 to 63 (a final dot
/// allowed).
fn parse_dns_name(name: &str) -> Result<String, String> {
    let labels = name.strip_suffix('.').unwrap_or(name);
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if labels.is_empty()
        || labels.len() > 253
        || !labels.chars().all(valid)
        || labels.split('.').any(|l| l.is_empty() || l.len() > 63)
    {
        return Err(format!("{name:?} is not a DNS name"));
    }
    Ok(name.to_string())
}

/// `--dns-server`: an `IP:PORT` (a name server cannot be found by name).
fn parse_dns_server(value: &str) -> Result<SocketAddr, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not an IP:PORT such as 127.0.0.1:53"))
}

/// A registry bearer token. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryToken(String);

impl RegistryToken {
    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for RegistryToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_graphic()) {
            return Err("the token must be printable ASCII without spaces".into());
        }
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for RegistryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryToken(<redacted>)")
    }
}

/// A configuration that parsed but makes no sense; the message says which flag to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Checks the rules clap cannot express. Run before binding.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.allow_remote && !self.listen.ip().is_loopback() {
            return Err(ConfigError(format!(
                "--listen {} is not a loopback address; pass --allow-remote to serve other hosts",
                self.listen
            )));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError(
                "--tls-cert and --tls-key go together: give both, or neither".into(),
            ));
        }
        self.client_tls()?;
        if let Some(urls) = &self.static_ratings {
            if urls.is_empty() {
                return Err(ConfigError(
                    "--static-ratings needs at least one URL".into(),
                ));
            }
        }
        match (&self.discovery, &self.static_ratings, self.dns_server) {
            (RatingsDiscovery::Registry, _, Some(server)) => {
                return Err(ConfigError(format!(
                    "--dns-server {server} is for --discovery dns:NAME:PORT or srv:NAME"
                )));
            }
            (RatingsDiscovery::Dns { .. } | RatingsDiscovery::Srv { .. }, Some(_), _) => {
                return Err(ConfigError(format!(
                    "--discovery {} and --static-ratings are two sources: give one",
                    self.discovery
                )));
            }
            _ => {}
        }
        // Flags are checked by their parsers; these repeat the checks for a `Config` built
        // in code, such as `Config { timeout: Duration::ZERO, ..Config::default() }`.
        for (flag, value) in [
            ("--timeout", self.timeout),
            ("--retest-delay", self.retest_delay),
            ("--failure-rate-window", self.failure_rate_window),
        ] {
            if value.is_zero() {
                return Err(ConfigError(format!("{flag} must be greater than zero")));
            }
        }
        if self.failure_limit == 0 {
            return Err(ConfigError("--failure-limit must be at least 1".into()));
        }
        if self.failure_rate_min_requests == 0 {
            return Err(ConfigError(
                "--failure-rate-min-requests must be at least 1".into(),
            ));
        }
        if self.max_carts == 0 {
            return Err(ConfigError("--max-carts must be at least 1".into()));
        }
        parse_service_name(&self.ratings_service).map_err(ConfigError)?;
        parse_base_url(&self.registry).map_err(ConfigError)?;
        Ok(())
    }

    /// `server` with the connection limits of `--header-read-timeout`, `--idle-timeout` and
    /// `--max-connections`.
    pub fn limit_connections(&self, server: Server) -> Server {
        server
            .header_read_timeout(self.header_read_timeout)
            .idle_timeout(self.idle_timeout)
            .max_connections(self.max_connections)
    }

    /// The certificate and key of `--tls-cert` / `--tls-key`, read and checked; `None` for
    /// plain HTTP. Run before binding.
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the file that cannot be used, or the flag that is missing.
    pub fn server_tls(&self) -> Result<Option<ServerTls>, TlsError> {
        ServerTls::from_flags(self.tls_cert.as_deref(), self.tls_key.as_deref())
    }

    /// What the market's calls (ratings instances, the registry) trust: the system's roots,
    /// and `--ca-file`'s.
    ///
    /// # Errors
    ///
    /// If the file cannot be read or holds no certificate; the message names it.
    pub fn client_tls(&self) -> Result<TlsConfig, ConfigError> {
        let tls = TlsConfig::new();
        let Some(path) = &self.ca_file else {
            return Ok(tls);
        };
        let fail = |reason: String| ConfigError(format!("--ca-file {}: {reason}", path.display()));
        let pem = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        tls.add_root_certificate(pem).map_err(|error| match error {
            discovery_client::Error::Config(reason) => fail(reason),
            other => fail(other.to_string()),
        })
    }

    /// Parses flags and environment like [`Config::parse`], then [`validate`](Self::validate)s;
    /// on any problem prints a usage error and exits with status 2.
    pub fn parse_and_validate() -> Self {
        let config = Self::parse();
        if let Err(error) = config.validate() {
            use clap::CommandFactory;
            Self::command()
                .error(clap::error::ErrorKind::ValueValidation, error)
                .exit();
        }
        config
    }
}

/// `--listen`: see [`service_telemetry::listen::parse_listen`].
fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    service_telemetry::listen::parse_listen(value, DEFAULT_LISTEN)
}

/// Accepts `http://host[:port][/path]` or `https://...` without spaces, trimming a trailing `/`.
fn parse_base_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .ok_or_else(|| format!("{value:?} is not a URL like http://127.0.0.1:8001"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!("{value:?} is not a URL like http://127.0.0.1:8001"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// The rule the discovery client applies to service names: 1 to 128 of `[A-Za-z0-9._-]`.
fn parse_service_name(value: &str) -> Result<String, String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if value.is_empty() || value.len() > 128 || !value.chars().all(valid) {
        return Err(format!(
            "service name {value:?} must be 1 to 128 characters of [A-Za-z0-9._-]"
        ));
    }
    Ok(value.to_string())
}

/// A humantime duration (`500ms`, `1s`, `30s`) that is not zero.
fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("market").chain(args.iter().copied()))
    }

    #[test]
    fn no_flags_gives_the_documented_defaults() {
        let config = parse(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.listen, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(config.timeout, Duration::from_secs(1));
        assert_eq!(config.failure_limit, 1);
        assert_eq!(config.retest_delay, Duration::from_secs(30));
        assert_eq!(config.cache_ttl, Duration::ZERO);
        assert_eq!(config.slow_start, None);
        assert_eq!(config.static_ratings, None);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn flags_parse_durations_and_lists() {
        let config = parse(&[
            "--listen",
            "localhost:0",
            "--registry",
            "http://10.0.0.1:8500/",
            "--ratings-service",
            "stars",
            "--timeout",
            "500ms",
            "--failure-limit",
            "3",
            "--retest-delay",
            "2m",
            "--cache-ttl",
            "5s",
            "--slow-start",
            "20s",
            "--static-ratings",
            "http://127.0.0.1:8001,http://127.0.0.1:8002/",
        ])
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.registry, "http://10.0.0.1:8500");
        assert_eq!(config.ratings_service, "stars");
        assert_eq!(config.timeout, Duration::from_millis(500));
        assert_eq!(config.failure_limit, 3);
        assert_eq!(config.retest_delay, Duration::from_secs(120));
        assert_eq!(config.cache_ttl, Duration::from_secs(5));
        assert_eq!(config.slow_start, Some(Duration::from_secs(20)));
        assert_eq!(
            config.static_ratings,
            Some(vec![
                "http://127.0.0.1:8001".to_string(),
                "http://127.0.0.1:8002".to_string()
            ])
        );
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn a_failure_rate_replaces_the_failure_limit() {
        let config = parse(&[
            "--failure-rate",
            "0.25",
            "--failure-rate-min-requests",
            "20",
            "--failure-rate-window",
            "30s",
        ])
        .unwrap();
        assert_eq!(config.failure_rate.map(FailureRatio::get), Some(0.25));
        assert_eq!(config.failure_rate_min_requests, 20);
        assert_eq!(config.failure_rate_window, Duration::from_secs(30));
        assert_eq!(config.validate(), Ok(()));
        let defaults = parse(&["--failure-rate", "1"]).unwrap();
        assert_eq!(defaults.failure_rate_min_requests, 10);
        assert_eq!(defaults.failure_rate_window, Duration::from_secs(10));
    }

    #[test]
    fn malformed_flags_are_usage_errors() {
        for args in [
            &["--listen", "nowhere"][..],
            &["--timeout", "soon"],
            &["--timeout", "0s"],
            &["--timeout", "1"],
            &["--retest-delay", "0ms"],
            &["--slow-start", "0s"],
            &["--slow-start", "later"],
            &["--failure-limit", "0"],
            &["--failure-limit", "-1"],
            &["--cache-ttl", "forever"],
            &["--registry", "127.0.0.1:8500"],
            &["--ratings-service", "rat ings"],
            &["--static-ratings", "http://127.0.0.1:8001,ftp://x"],
            &["--max-carts", "0"],
            &["--failure-rate", "0"],
            &["--failure-rate", "1.5"],
            &["--failure-rate", "NaN"],
            &["--failure-rate", "half"],
            &["--failure-rate-min-requests", "0"],
            &["--failure-rate-window", "0s"],
            &["--failure-rate", "0.5", "--failure-limit", "2"],
        ] {
            let error = parse(args).expect_err(&format!("{args:?} was accepted"));
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn discovery_takes_the_registry_a_dns_name_or_an_srv_name() {
        assert_eq!(parse(&[]).unwrap().discovery, RatingsDiscovery::Registry);
        let config = parse(&["--discovery", "dns:ratings.default.svc.cluster.local:8080"]).unwrap();
        assert_eq!(
            config.discovery,
            RatingsDiscovery::Dns {
                name: "ratings.default.svc.cluster.local".into(),
                port: 8080
            }
        );
        let config = parse(&[
            "--discovery",
            "srv:_http._tcp.ratings.service.consul",
            "--dns-server",
            "127.0.0.1:8600",
        ])
        .unwrap();
        assert_eq!(
            config.discovery,
            RatingsDiscovery::Srv {
                name: "_http._tcp.ratings.service.consul".into()
            }
        );
        assert_eq!(config.dns_server, Some("127.0.0.1:8600".parse().unwrap()));
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(
            config.discovery.to_string(),
            "srv:_http._tcp.ratings.service.consul"
        );
    }

    #[test]
    fn bad_discovery_values_name_the_problem_with_exit_code_2() {
        for (args, says) in [
            (&["--discovery", "dns:ratings.test"][..], "has no port"),
            (
                &["--discovery", "dns:ratings.test:0"],
                "not a number from 1 to 65535",
            ),
            (
                &["--discovery", "dns:ratings.test:http"],
                "not a number from 1 to 65535",
            ),
            (&["--discovery", "dns::8080"], "not a DNS name"),
            (&["--discovery", "srv:"], "not a DNS name"),
            (&["--discovery", "srv:bad name"], "not a DNS name"),
            (
                &["--discovery", "consul:ratings"],
                "registry, dns:NAME:PORT or srv:NAME",
            ),
            (&["--dns-server", "dns.internal:53"], "is not an IP:PORT"),
            (&["--dns-server", "127.0.0.1"], "is not an IP:PORT"),
        ] {
            let error = parse(args).expect_err(&format!("{args:?} was accepted"));
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(error.to_string().contains(says), "{args:?}: {error}");
        }
        // Parsed, but inconsistent: refused by `validate` (a usage error in `main`).
        let config = parse(&["--dns-server", "127.0.0.1:53"]).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("--dns-server 127.0.0.1:53 is for --discovery"),
            "{error}"
        );
        let config = parse(&[
            "--discovery",
            "srv:_http._tcp.r.test",
            "--static-ratings",
            "http://127.0.0.1:8001",
        ])
        .unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("two sources"), "{error}");
    }

    #[test]
    fn tls_needs_both_the_certificate_and_the_key() {
        let config = parse(&["--tls-cert", "server.pem", "--tls-key", "server.key"]).unwrap();
        assert_eq!(config.tls_cert, Some(PathBuf::from("server.pem")));
        assert_eq!(config.validate(), Ok(()));
        for args in [&["--tls-cert", "server.pem"], &["--tls-key", "server.key"]] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(error.to_string().contains("required"), "{error}");
        }
        let half = Config {
            tls_key: Some("server.key".into()),
            ..Config::default()
        };
        assert!(
            half.validate()
                .unwrap_err()
                .to_string()
                .contains("--tls-cert")
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
    fn an_unreadable_ca_file_is_named_by_validate() {
        let config = parse(&["--ca-file", "/nonexistent/ca.pem"]).unwrap();
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.starts_with("--ca-file /nonexistent/ca.pem: cannot read it: "),
            "{message}"
        );
    }

    #[test]
    fn non_loopback_needs_allow_remote() {
        let remote = parse(&["--listen", "0.0.0.0:5000"]).unwrap();
        let err = remote.validate().unwrap_err();
        assert!(err.to_string().contains("--allow-remote"), "{err}");
        let allowed = parse(&["--listen", "0.0.0.0:5000", "--allow-remote"]).unwrap();
        assert_eq!(allowed.validate(), Ok(()));
        assert_eq!(parse(&["--listen", "[::1]:0"]).unwrap().validate(), Ok(()));
    }

    #[test]
    fn configs_built_in_code_are_checked_too() {
        let zero_timeout = Config {
            timeout: Duration::ZERO,
            ..Config::default()
        };
        assert!(zero_timeout.validate().is_err());
        let no_urls = Config {
            static_ratings: Some(Vec::new()),
            ..Config::default()
        };
        assert!(no_urls.validate().is_err());
    }

    #[test]
    fn the_registry_token_is_parsed_and_never_printed() {
        let config = parse(&["--registry-token", "s3cret"]).unwrap();
        assert_eq!(
            config.registry_token.as_ref().map(RegistryToken::as_str),
            Some("s3cret")
        );
        assert!(!format!("{config:?}").contains("s3cret"));
        assert!(parse(&["--registry-token", ""]).is_err());
        assert!(parse(&["--registry-token", "two words"]).is_err());
    }
}
