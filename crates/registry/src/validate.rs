//! Input rules for names, addresses, metadata and TTLs.
//!
//! Every rule lives here so the HTTP layer (and any future front end) rejects bad input
//! the same way, before the store is touched. Each failure is a [`ValidationError`] whose
//! message names the field and what was wrong with it.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::Duration;

/// Longest service name or instance id, in characters.
pub const MAX_NAME_LEN: usize = 128;
/// Longest instance address, in characters.
pub const MAX_ADDRESS_LEN: usize = 256;
/// Most metadata entries one instance may carry.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Longest metadata key, in characters.
pub const MAX_METADATA_KEY_LEN: usize = 64;
/// Longest metadata value, in characters.
pub const MAX_METADATA_VALUE_LEN: usize = 256;

/// A rejected input, with a message naming the problem (shown to the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(String);

impl ValidationError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Checks a service name or instance id: 1..=128 characters from `[A-Za-z0-9._-]`.
///
/// `what` names the field in the error message (`"service"`, `"instance id"`).
pub fn name(what: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(format!("{what} must not be empty")));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(ValidationError::new(format!(
            "{what} must be at most {MAX_NAME_LEN} characters"
        )));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ValidationError::new(format!(
            "{what} contains {bad:?}; only letters, digits, '.', '_' and '-' are allowed"
        )));
    }
    Ok(())
}

/// Checks an instance address: an absolute `http://` or `https://` URL with a host, an
/// optional port (1..=65535), an optional path, no user info, query or fragment, at most
/// 256 characters.
pub fn address(value: &str) -> Result<(), ValidationError> {
    let invalid = |why: &str| ValidationError::new(format!("address {why}"));
    if value.len() > MAX_ADDRESS_LEN {
        return Err(invalid(&format!(
            "must be at most {MAX_ADDRESS_LEN} characters"
        )));
    }
    if value.chars().any(|c| !c.is_ascii_graphic()) {
        return Err(invalid(
            "must not contain spaces, control or non-ASCII characters",
        ));
    }
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .ok_or_else(|| invalid("must be an absolute http:// or https:// URL"))?;
    if value.contains('?') || value.contains('#') {
        return Err(invalid("must not have a query or fragment"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(invalid("must not contain user info"));
    }
    let port = if let Some(bracketed) = authority.strip_prefix('[') {
        let (ip, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("has an unterminated IPv6 literal"))?;
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err(invalid("has an invalid IPv6 literal"));
        }
        match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| invalid("has junk after the IPv6 literal"))?,
            ),
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(invalid("must have a host"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(invalid("has an invalid host"));
        }
        port
    };
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.chars().all(|c| c.is_ascii_digit())
            && matches!(port.parse::<u16>(), Ok(p) if p != 0);
        if !valid {
            return Err(invalid("has an invalid port (expected 1-65535)"));
        }
    }
    Ok(())
}

/// Checks instance metadata: at most 32 entries, keys 1..=64 and values at most 256
/// characters.
pub fn metadata(value: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    if value.len() > MAX_METADATA_ENTRIES {
        return Err(ValidationError::new(format!(
            "metadata must have at most {MAX_METADATA_ENTRIES} entries"
        )));
    }
    for (key, val) in value {
        if key.is_empty() {
            return Err(ValidationError::new("metadata keys must not be empty"));
        }
        if key.chars().count() > MAX_METADATA_KEY_LEN {
            return Err(ValidationError::new(format!(
                "metadata keys must be at most {MAX_METADATA_KEY_LEN} characters"
            )));
        }
        if val.chars().count() > MAX_METADATA_VALUE_LEN {
            return Err(ValidationError::new(format!(
                "metadata value for {key:?} must be at most {MAX_METADATA_VALUE_LEN} characters"
            )));
        }
    }
    Ok(())
}

/// The range of lease TTLs the registry accepts, and the TTL given when none is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    /// TTL of a registration that does not ask for one.
    pub default: Duration,
    /// Shortest TTL accepted.
    pub min: Duration,
    /// Longest TTL accepted.
    pub max: Duration,
}

impl TtlPolicy {
    /// Resolves a requested TTL in whole seconds (or the default when `None`), rejecting
    /// values outside `min..=max`.
    pub fn resolve(&self, requested_secs: Option<u64>) -> Result<Duration, ValidationError> {
        let Some(secs) = requested_secs else {
            return Ok(self.default);
        };
        let ttl = Duration::from_secs(secs);
        if ttl < self.min || ttl > self.max {
            return Err(ValidationError::new(format!(
                "ttl_secs must be between {} and {} (got {secs})",
                self.min.as_secs(),
                self.max.as_secs()
            )));
        }
        Ok(ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_allowed_alphabet() {
        assert_eq!(name("service", "ratings-v2.eu_west"), Ok(()));
        assert_eq!(name("service", &"a".repeat(MAX_NAME_LEN)), Ok(()));
    }

    #[test]
    fn names_reject_empty_long_and_odd_characters() {
        for bad in ["", "a b", "a/b", "é", "a:b", "a%2Fb"] {
            assert!(name("service", bad).is_err(), "{bad:?} was accepted");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        let err = name("instance id", &long).unwrap_err();
        assert!(err.to_string().contains("instance id"), "{err}");
    }

    #[test]
    fn addresses_accept_http_and_https_with_or_without_port() {
        for good in [
            "http://127.0.0.1:8001",
            "https://ratings.internal",
            "http://localhost:1/",
            "http://host_name:65535/base/path",
            "http://[::1]:8080",
            "https://[2001:db8::1]",
        ] {
            assert_eq!(address(good), Ok(()), "{good:?} was rejected");
        }
    }

    #[test]
    fn addresses_reject_everything_else() {
        for bad in [
            "",
            "127.0.0.1:8001",
            "ftp://host",
            "http://",
            "http:///path",
            "http://:80",
            "http://host:0",
            "http://host:65536",
            "http://host:",
            "http://host:8a",
            "http://user:pw@host",
            "http://host/?q=1",
            "http://host#frag",
            "http://ho st",
            "http://[::1",
            "http://[zz]:80",
            "http://[::1]x",
            "HTTP//host",
        ] {
            assert!(address(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("http://h/{}", "p".repeat(MAX_ADDRESS_LEN));
        assert!(address(&long).is_err());
    }

    #[test]
    fn metadata_limits() {
        let ok: BTreeMap<_, _> = (0..MAX_METADATA_ENTRIES)
            .map(|i| (format!("k{i}"), "v".repeat(MAX_METADATA_VALUE_LEN)))
            .collect();
        assert_eq!(metadata(&ok), Ok(()));

        let mut too_many = ok.clone();
        too_many.insert("extra".into(), "v".into());
        assert!(metadata(&too_many).is_err());

        let long_key = BTreeMap::from([("k".repeat(MAX_METADATA_KEY_LEN + 1), String::new())]);
        assert!(metadata(&long_key).is_err());

        let long_value =
            BTreeMap::from([("k".to_string(), "v".repeat(MAX_METADATA_VALUE_LEN + 1))]);
        assert!(metadata(&long_value).is_err());

        let empty_key = BTreeMap::from([(String::new(), "v".to_string())]);
        assert!(metadata(&empty_key).is_err());
    }

    #[test]
    fn ttl_policy_resolves_default_and_bounds() {
        let policy = TtlPolicy {
            default: Duration::from_secs(120),
            min: Duration::from_secs(1),
            max: Duration::from_secs(3600),
        };
        assert_eq!(policy.resolve(None), Ok(Duration::from_secs(120)));
        assert_eq!(policy.resolve(Some(1)), Ok(Duration::from_secs(1)));
        assert_eq!(policy.resolve(Some(3600)), Ok(Duration::from_secs(3600)));
        assert!(policy.resolve(Some(0)).is_err());
        assert!(policy.resolve(Some(3601)).is_err());
    }
}
