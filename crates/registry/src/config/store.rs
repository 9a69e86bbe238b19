//! The store flags: `--store memory|etcd`, `--etcd-endpoints`, `--etcd-prefix`,
//! `--etcd-outage-grace`.

use super::{Config, ConfigError};

/// Which store keeps the registrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// In this process's memory: fast, and gone when the process stops.
    Memory,
    /// In etcd: shared by every registry using the same etcd, kept across restarts and
    /// across the loss of an etcd member. Needs the `etcd` cargo feature.
    Etcd,
}

impl StoreKind {
    /// The flag value naming this store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Etcd => "etcd",
        }
    }
}

impl Config {
    /// The etcd key prefix, ending with `/`.
    pub fn etcd_key_prefix(&self) -> String {
        let prefix = self.etcd_prefix.trim();
        if prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        }
    }

    /// The etcd endpoints, trimmed, empty entries dropped.
    pub fn etcd_endpoint_list(&self) -> Vec<String> {
        self.etcd_endpoints
            .iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect()
    }

    /// Checks the store flags: `etcd` must be compiled in, and its endpoints and prefix
    /// must make sense. The memory store needs nothing.
    pub(super) fn validate_store(&self) -> Result<(), ConfigError> {
        if self.store == StoreKind::Memory {
            return Ok(());
        }
        if !cfg!(feature = "etcd") {
            return Err(ConfigError(
                "--store etcd needs a registry built with the `etcd` feature \
                 (cargo build -p registry --features etcd; building it needs protoc, \
                 Debian package protobuf-compiler)"
                    .into(),
            ));
        }
        let endpoints = self.etcd_endpoint_list();
        if endpoints.is_empty() {
            return Err(ConfigError(
                "--etcd-endpoints must name at least one etcd client URL".into(),
            ));
        }
        for endpoint in &endpoints {
            let Some(authority) = endpoint.strip_prefix("http://") else {
                return Err(ConfigError(format!(
                    "--etcd-endpoints: {endpoint:?} must be an http:// URL such as \
                     http://127.0.0.1:2379 (TLS to etcd is not built in)"
                )));
            };
            let host = authority.split('/').next().unwrap_or_default();
            if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
                return Err(ConfigError(format!(
                    "--etcd-endpoints: {endpoint:?} has no usable host"
                )));
            }
        }
        let prefix = self.etcd_prefix.trim();
        if prefix.is_empty() || prefix.contains(|c: char| !c.is_ascii_graphic()) {
            return Err(ConfigError(
                "--etcd-prefix must be non-empty printable ASCII without spaces, like /discovery/"
                    .into(),
            ));
        }
        if self.etcd_outage_grace.subsec_nanos() != 0 {
            return Err(ConfigError(format!(
                "--etcd-outage-grace must be a whole number of seconds, as etcd leases are \
                 (got {})",
                humantime::format_duration(self.etcd_outage_grace)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("registry").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn memory_is_the_default_and_needs_no_etcd() {
        let config = parse(&[]);
        assert_eq!(config.store, StoreKind::Memory);
        assert_eq!(config.etcd_endpoint_list(), ["http://127.0.0.1:2379"]);
        assert_eq!(config.etcd_key_prefix(), "/discovery/");
        assert_eq!(config.validate_store(), Ok(()));
        // Odd etcd flags do not matter while the memory store is chosen.
        assert_eq!(parse(&["--etcd-endpoints", "nonsense"]).validate(), Ok(()));
    }

    #[test]
    fn etcd_flags_parse_lists_and_normalise_the_prefix() {
        let config = parse(&[
            "--store",
            "etcd",
            "--etcd-endpoints",
            "http://127.0.0.1:2379, http://127.0.0.1:22379",
            "--etcd-prefix",
            "/team-a/registry",
        ]);
        assert_eq!(config.store, StoreKind::Etcd);
        assert_eq!(
            config.etcd_endpoint_list(),
            ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]
        );
        assert_eq!(config.etcd_key_prefix(), "/team-a/registry/");
        assert!(Config::try_parse_from(["registry", "--store", "consul"]).is_err());
    }

    #[cfg(not(feature = "etcd"))]
    #[test]
    fn etcd_without_the_feature_is_a_clear_error() {
        let err = parse(&["--store", "etcd"]).validate().unwrap_err();
        assert!(err.to_string().contains("`etcd` feature"), "{err}");
    }

    #[cfg(feature = "etcd")]
    #[test]
    fn etcd_endpoints_and_prefix_are_checked() {
        assert_eq!(parse(&["--store", "etcd"]).validate(), Ok(()));
        let no_grace = parse(&["--store", "etcd", "--etcd-outage-grace", "0s"]);
        assert_eq!(no_grace.validate(), Ok(()));
        assert!(no_grace.etcd_outage_grace.is_zero());
        for (args, needle) in [
            (&["--etcd-endpoints", ""][..], "at least one"),
            (&["--etcd-endpoints", "127.0.0.1:2379"], "http://"),
            (&["--etcd-endpoints", "https://etcd:2379"], "TLS"),
            (&["--etcd-endpoints", "http://"], "host"),
            (&["--etcd-prefix", " "], "--etcd-prefix"),
            (&["--etcd-outage-grace", "1500ms"], "--etcd-outage-grace"),
        ] {
            let mut all = vec!["--store", "etcd"];
            all.extend_from_slice(args);
            let err = parse(&all).validate().unwrap_err();
            assert!(err.to_string().contains(needle), "{args:?}: {err}");
        }
    }
}
