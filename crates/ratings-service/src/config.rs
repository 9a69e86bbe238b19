//! Command-line and environment configuration, checked before anything is bound.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::ArgAction;
use clap::Parser;
use clap::builder::BoolishValueParser;
use discovery_client::registration::{RegistrationConfig, RegistrationError};
use discovery_client::transport::TlsConfig;
use serving::{Server, ServerTls, TlsError};

use crate::faults::{Faults, FaultsError, MAX_LATENCY};
use crate::state::AdminAccess;

/// The shortest registration TTL accepted.
const MIN_TTL: Duration = Duration::from_secs(1);

/// Configuration of one ratings instance.
#[derive(Clone, Parser)]
#[command(
    name = "ratings-service",
    version,
    about = "The ratings microservice: serves star ratings, registers itself with the registry."
)]
pub struct Config {
    /// Instance number (1..=999); names the instance in the registry and in answers.
    #[arg(
        long,
        env = "RATINGS_INSTANCE",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=999)
    )]
    pub instance: u16,

    /// Address to listen on [default: 127.0.0.1:{8000 + instance}]; port 0 picks a free one.
    #[arg(long, env = "RATINGS_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain, leaf first (needs
    /// --tls-key); the instance then registers an https:// address.
    #[arg(long, env = "RATINGS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (needs --tls-cert).
    #[arg(long, env = "RATINGS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Close a connection whose TLS handshake and request headers have not arrived within
    /// this (slowloris, or a client that connects and sends nothing).
    #[arg(long, env = "RATINGS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = serving::flags::parse_timeout)]
    pub header_read_timeout: Duration,

    /// Close a keep-alive connection with no request begun for this long.
    #[arg(long, env = "RATINGS_IDLE_TIMEOUT", default_value = "75s", value_parser = serving::flags::parse_timeout)]
    pub idle_timeout: Duration,

    /// Most client connections open at once (keep it under the file-descriptor limit,
    /// `ulimit -n`). At the cap a new connection takes the place of the longest-idle one,
    /// or is refused after 250 ms when every connection has a request in flight.
    #[arg(long, env = "RATINGS_MAX_CONNECTIONS", default_value = "768", value_parser = serving::flags::parse_max_connections)]
    pub max_connections: usize,

    /// Base URL of the registry (http:// or https://).
    #[arg(long, env = "REGISTRY_URL", default_value = "http://127.0.0.1:8500")]
    pub registry: String,

    /// Also trust the CA certificates in this PEM file when calling an https:// registry
    /// (besides the system's roots).
    #[arg(long, env = "RATINGS_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Bearer token for registry writes, when the registry requires one.
    #[arg(long, env = "REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,

    /// Do not register with the registry (serve only).
    #[arg(long, env = "RATINGS_NO_REGISTER", action = ArgAction::SetTrue,
          value_parser = BoolishValueParser::new())]
    pub no_register: bool,

    /// Keep the registration's lease in this file (mode 0600), so that after a crash or
    /// `kill -9` a restarted instance takes its registration back at once instead of
    /// waiting for the old lease to expire. One file per instance.
    #[arg(long, env = "RATINGS_LEASE_FILE")]
    pub lease_file: Option<PathBuf>,

    /// Service name to register under.
    #[arg(long, env = "RATINGS_SERVICE", default_value = "ratings")]
    pub service: String,

    /// Registration TTL (heartbeats go every third of it), e.g. `120s`, `2m`.
    #[arg(long, env = "RATINGS_TTL", default_value = "120s", value_parser = humantime::parse_duration)]
    pub ttl: Duration,

    /// URL to advertise in the registry [default: http://{bound address}, or https://{bound
    /// address} with --tls-cert].
    #[arg(long, env = "RATINGS_ADVERTISE")]
    pub advertise: Option<String>,

    /// Allow listening on a non-loopback address.
    #[arg(long, env = "RATINGS_ALLOW_REMOTE", action = ArgAction::SetTrue,
          value_parser = BoolishValueParser::new())]
    pub allow_remote: bool,

    /// Fault: latency added before answering a rating, e.g. `1500ms` (at most 60 s).
    #[arg(long, env = "RATINGS_LATENCY", default_value = "0ms", value_parser = parse_latency)]
    pub latency: Duration,

    /// Fault: probability (0.0..=1.0) of answering a rating with a 500.
    #[arg(long, env = "RATINGS_ERROR_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub error_rate: f64,

    /// Fault: probability (0.0..=1.0) of answering a rating 200 with a body that is not JSON.
    #[arg(long, env = "RATINGS_GARBAGE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub garbage_rate: f64,

    /// Fault: probability (0.0..=1.0) of answering a rating 429 Too Many Requests with
    /// `Retry-After: 2` (back-pressure).
    #[arg(long, env = "RATINGS_THROTTLE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub throttle_rate: f64,

    /// Enable the admin endpoint (`GET`/`PUT /admin/faults`).
    #[arg(long, env = "RATINGS_ADMIN", action = ArgAction::SetTrue,
          value_parser = BoolishValueParser::new())]
    pub admin: bool,

    /// Bearer token the admin endpoint requires (only with `--admin`).
    #[arg(long, env = "RATINGS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--listen` is not a loopback address and `--allow-remote` was not given.
    #[error(
        "refusing to listen on {0}, which is not a loopback address; \
         pass --allow-remote to allow it"
    )]
    NotLoopback(SocketAddr),
    /// The registry URL, service name, TTL or token would not work.
    #[error("{0}")]
    Registration(#[from] RegistrationError),
    /// `--tls-cert` / `--tls-key` cannot be used.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// `--ca-file` cannot be read or holds no certificate.
    #[error("--ca-file {0}")]
    CaFile(String),
    /// `--advertise` is not an `http(s)://` URL.
    #[error("--advertise must be an http:// or https:// URL, got {0:?}")]
    Advertise(String),
    /// `--ttl` is too short.
    #[error("--ttl must be at least {MIN_TTL:?}, got {0:?}")]
    Ttl(Duration),
    /// A fault flag is out of range.
    #[error("{0}")]
    Faults(#[from] FaultsError),
}

impl Config {
    /// Checks everything that can be checked before binding.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_bind_address(self.listen_addr())?;
        self.initial_faults().validate()?;
        if self.ttl < MIN_TTL {
            return Err(ConfigError::Ttl(self.ttl));
        }
        if let Some(advertise) = &self.advertise {
            let is_url = (advertise.starts_with("http://") || advertise.starts_with("https://"))
                && !advertise.chars().any(char::is_whitespace);
            if !is_url {
                return Err(ConfigError::Advertise(advertise.clone()));
            }
        }
        // Read even without registration: a --ca-file given is meant to be used.
        self.client_tls()?;
        if !self.no_register {
            self.registration("http://127.0.0.1".to_owned())?
                .validate()?;
        }
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
    /// [`ConfigError::Tls`] naming the file that cannot be used, or the flag that is missing.
    pub fn server_tls(&self) -> Result<Option<ServerTls>, ConfigError> {
        Ok(ServerTls::from_flags(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
        )?)
    }

    /// What calls to the registry trust: the system's roots, and `--ca-file`'s.
    ///
    /// # Errors
    ///
    /// [`ConfigError::CaFile`] if the file cannot be read or holds no certificate.
    pub fn client_tls(&self) -> Result<TlsConfig, ConfigError> {
        let tls = TlsConfig::new();
        let Some(path) = &self.ca_file else {
            return Ok(tls);
        };
        let fail = |reason: String| ConfigError::CaFile(format!("{}: {reason}", path.display()));
        let pem = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        tls.add_root_certificate(pem).map_err(|error| match error {
            discovery_client::Error::Config(reason) => fail(reason),
            other => fail(other.to_string()),
        })
    }

    /// Refuses a non-loopback `addr` unless `--allow-remote` was given.
    pub fn check_bind_address(&self, addr: SocketAddr) -> Result<(), ConfigError> {
        if addr.ip().is_loopback() || self.allow_remote {
            Ok(())
        } else {
            Err(ConfigError::NotLoopback(addr))
        }
    }

    /// `--listen`, or `127.0.0.1:{8000 + instance}`.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            SocketAddr::from((Ipv4Addr::LOCALHOST, 8000_u16.saturating_add(self.instance)))
        })
    }

    /// `--advertise` (without a trailing `/`), or `listening`: the URL the instance serves
    /// on (`http://{bound}`, or `https://{bound}` over TLS).
    pub fn advertise_url(&self, listening: &str) -> String {
        match &self.advertise {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => listening.to_owned(),
        }
    }

    /// What to register: this instance under `--service`, reachable at `address`, through
    /// the registry at `--registry` trusting [`client_tls`](Self::client_tls).
    ///
    /// # Errors
    ///
    /// [`ConfigError::CaFile`] as [`client_tls`](Self::client_tls).
    pub fn registration(&self, address: String) -> Result<RegistrationConfig, ConfigError> {
        let instance = self.instance.to_string();
        let mut config = RegistrationConfig::new(&self.registry, &self.service, &instance, address)
            .tls(self.client_tls()?);
        config.metadata.insert("instance".to_owned(), instance);
        config.ttl = self.ttl;
        config.token = self.registry_token.clone();
        config.lease_file = self.lease_file.clone();
        Ok(config)
    }

    /// The faults given by flags.
    pub fn initial_faults(&self) -> Faults {
        Faults {
            latency_ms: u64::try_from(self.latency.as_millis()).unwrap_or(u64::MAX),
            error_rate: self.error_rate,
            garbage_rate: self.garbage_rate,
            throttle_rate: self.throttle_rate,
        }
    }

    /// Who may use the admin endpoint.
    pub fn admin_access(&self) -> AdminAccess {
        match (self.admin, &self.admin_token) {
            (false, _) => AdminAccess::Disabled,
            (true, None) => AdminAccess::Open,
            (true, Some(token)) => AdminAccess::Token(token.clone()),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |token: &Option<String>| token.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("instance", &self.instance)
            .field("listen", &self.listen)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("registry", &self.registry)
            .field("ca_file", &self.ca_file)
            .field("registry_token", &redacted(&self.registry_token))
            .field("no_register", &self.no_register)
            .field("lease_file", &self.lease_file)
            .field("service", &self.service)
            .field("ttl", &self.ttl)
            .field("advertise", &self.advertise)
            .field("allow_remote", &self.allow_remote)
            .field("latency", &self.latency)
            .field("error_rate", &self.error_rate)
            .field("garbage_rate", &self.garbage_rate)
            .field("throttle_rate", &self.throttle_rate)
            .field("admin", &self.admin)
            .field("admin_token", &redacted(&self.admin_token))
            .finish()
    }
}

/// A humantime duration of at most [`MAX_LATENCY`].
fn parse_latency(text: &str) -> Result<Duration, String> {
    let latency = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if latency > MAX_LATENCY {
        return Err(format!(
            "at most {} is allowed",
            humantime::format_duration(MAX_LATENCY)
        ));
    }
    Ok(latency)
}

/// A probability in 0.0..=1.0.
fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("must be between 0.0 and 1.0, got {rate}"))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("ratings-service").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let config = parse(&[]).expect("defaults parse");
        assert_eq!(config.instance, 1);
        assert_eq!(
            config.listen_addr(),
            "127.0.0.1:8001".parse().expect("addr")
        );
        assert_eq!(config.registry, "http://127.0.0.1:8500");
        assert_eq!(config.service, "ratings");
        assert_eq!(config.ttl, Duration::from_secs(120));
        assert!(!config.no_register && !config.admin && !config.allow_remote);
        assert_eq!(config.initial_faults(), Faults::NONE);
        assert_eq!(config.admin_access(), AdminAccess::Disabled);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_instance_picks_the_default_port() {
        let config = parse(&["--instance", "3"]).expect("parse");
        assert_eq!(
            config.listen_addr(),
            "127.0.0.1:8003".parse().expect("addr")
        );
        let config = parse(&["--instance", "999"]).expect("parse");
        assert_eq!(config.listen_addr().port(), 8999);
    }

    #[test]
    fn out_of_range_flags_are_rejected_by_the_parser() {
        for args in [
            &["--instance", "0"][..],
            &["--instance", "1000"],
            &["--error-rate", "1.5"],
            &["--garbage-rate", "-0.1"],
            &["--throttle-rate", "2"],
            &["--throttle-rate", "often"],
            &["--error-rate", "lots"],
            &["--latency", "61s"],
            &["--latency", "soon"],
            &["--ttl", "forever"],
        ] {
            assert!(parse(args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn remote_addresses_need_allow_remote() {
        let config = parse(&["--listen", "0.0.0.0:8001"]).expect("parse");
        let error = config.validate().expect_err("0.0.0.0 must be refused");
        assert!(error.to_string().contains("--allow-remote"), "{error}");
        let config = parse(&["--listen", "0.0.0.0:8001", "--allow-remote"]).expect("parse");
        assert!(config.validate().is_ok());
        let config = parse(&["--listen", "[::1]:0"]).expect("parse");
        assert!(config.validate().is_ok());
    }

    #[test]
    fn unusable_values_are_rejected_by_validate() {
        for args in [
            &["--registry", "127.0.0.1:8500"][..],
            &["--advertise", "127.0.0.1:8001"],
            &["--ttl", "500ms"],
            &["--service", ""],
        ] {
            let config = parse(args).expect("parse");
            assert!(config.validate().is_err(), "{args:?} accepted");
        }
        // Without registration, the registry URL does not matter.
        let config = parse(&["--no-register", "--registry", "nope"]).expect("parse");
        assert!(config.validate().is_ok());
    }

    #[test]
    fn registration_names_the_instance_and_its_address() {
        let config =
            parse(&["--instance", "2", "--registry-token", "t", "--ttl", "30s"]).expect("parse");
        let listening = "http://127.0.0.1:40000";
        let registration = config
            .registration(config.advertise_url(listening))
            .expect("registration");
        assert_eq!(registration.instance_id, "2");
        assert_eq!(registration.address, "http://127.0.0.1:40000");
        assert_eq!(
            registration.metadata.get("instance").map(String::as_str),
            Some("2")
        );
        assert_eq!(registration.ttl, Duration::from_secs(30));
        assert_eq!(registration.token.as_deref(), Some("t"));
        assert_eq!(registration.lease_file, None);

        let config = parse(&["--lease-file", ".run/ratings-2.lease"]).expect("parse");
        let registration = config
            .registration(config.advertise_url(listening))
            .expect("registration");
        assert_eq!(
            registration.lease_file,
            Some(PathBuf::from(".run/ratings-2.lease"))
        );

        let config = parse(&["--advertise", "http://ratings.local:9000/"]).expect("parse");
        assert_eq!(config.advertise_url(listening), "http://ratings.local:9000");
    }

    #[test]
    fn serving_tls_advertises_the_https_url_it_listens_on() {
        let config =
            parse(&["--tls-cert", "server.pem", "--tls-key", "server.key"]).expect("parse");
        assert_eq!(
            config.advertise_url("https://127.0.0.1:40000"),
            "https://127.0.0.1:40000"
        );
    }

    #[test]
    fn tls_needs_both_the_certificate_and_the_key() {
        for args in [&["--tls-cert", "server.pem"], &["--tls-key", "server.key"]] {
            let error = parse(args).expect_err("one without the other is refused");
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(error.to_string().contains("required"), "{error}");
        }
        let config =
            parse(&["--tls-cert", "/nonexistent/server.pem", "--tls-key", "k"]).expect("parse");
        let error = config.server_tls().expect_err("no such file");
        assert!(
            error
                .to_string()
                .starts_with("cannot read /nonexistent/server.pem: "),
            "{error}"
        );
        assert!(
            parse(&[])
                .expect("parse")
                .server_tls()
                .expect("none")
                .is_none()
        );
    }

    #[test]
    fn an_unreadable_ca_file_is_named_by_validate() {
        let config = parse(&["--ca-file", "/nonexistent/ca.pem"]).expect("parse");
        let error = config.validate().expect_err("no such file");
        let message = error.to_string();
        assert!(
            message.starts_with("--ca-file /nonexistent/ca.pem: cannot read it: "),
            "{message}"
        );
        let config = parse(&["--ca-file", "/nonexistent/ca.pem", "--no-register"]).expect("parse");
        assert!(config.validate().is_err());
    }

    #[test]
    fn tokens_do_not_show_in_debug_output() {
        let config = parse(&[
            "--registry-token",
            "reg-s3cret",
            "--admin-token",
            "adm-s3cret",
        ])
        .expect("parse");
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
