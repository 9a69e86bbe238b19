//! What the etcd store writes: one key per instance and its JSON value.
//!
//! The key is `<prefix><service>/<id>` (default prefix `/discovery/`), attached to an etcd
//! lease whose TTL is the registration's plus the outage grace (see the `reaper` module).
//! The value is
//!
//! ```json
//! {"address": "http://127.0.0.1:8001", "metadata": {"zone": "a"}, "ttl_secs": 60,
//!  "lease_sha256": "<hex SHA-256 of the lease secret>"}
//! ```
//!
//! `address` and `metadata` are what discovery reads (the client's etcd source reads only
//! those two). The lease secret itself is never stored, only its digest, so anyone who can
//! read the keys still cannot heartbeat, deregister or move an instance through a registry.
//!
//! A deregistration also writes a *marker*, `<prefix>~deregistered/<service>/<id>` with an
//! empty value, in the same transaction that deletes the instance key, so that every
//! registry watching the prefix can tell it from an expiry (see the `mirror` module). It is
//! attached to the instance's etcd lease, which the registry revokes right after, so it
//! lives for a moment (at most until the lease would have run out, if the revoke fails).
//! `~` is not allowed in service names, so no service's keys are under the markers'
//! sub-prefix, and a marker has one segment too many to pass for an instance: listings,
//! snapshots and the limits never see one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{InstanceView, Lease, Metadata};
use crate::validate;

/// The JSON value stored for one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Base URL of the instance.
    pub address: String,
    /// Metadata published with it.
    #[serde(default)]
    pub metadata: Metadata,
    /// The TTL the instance asked for, answered on heartbeats. (etcd may grant a longer
    /// lease: it rounds TTLs up to its minimum.)
    #[serde(default)]
    pub ttl_secs: u64,
    /// Hex SHA-256 of the lease secret; empty in a record some other tool wrote, which then
    /// no secret proves ownership of.
    #[serde(default)]
    pub lease_sha256: String,
}

impl Record {
    /// A record for a registration whose secret is `lease`.
    pub fn new(address: String, metadata: Metadata, ttl_secs: u64, lease: &Lease) -> Self {
        Self {
            address,
            metadata,
            ttl_secs,
            lease_sha256: digest(lease.as_str()),
        }
    }

    /// Parses a stored value; `None` if it is not a record.
    pub fn parse(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }

    /// The value to store.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising strings and a string map cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether `presented` is the secret this record was registered with (compared in
    /// constant time, on digests).
    pub fn owned_by(&self, presented: Option<&str>) -> bool {
        match presented {
            Some(secret) if !self.lease_sha256.is_empty() => {
                let presented = digest(secret);
                presented
                    .as_bytes()
                    .ct_eq(self.lease_sha256.as_bytes())
                    .into()
            }
            _ => false,
        }
    }

    /// Whether readers would see a difference between the two records.
    pub fn same_view(&self, other: &Self) -> bool {
        self.address == other.address && self.metadata == other.metadata
    }

    /// The instance as readers see it.
    pub fn view(&self, id: &str) -> InstanceView {
        InstanceView {
            id: id.to_owned(),
            address: self.address.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

/// Hex SHA-256 of a secret.
fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The sub-prefix of deregistration markers, under the prefix.
const MARKERS: &str = "~deregistered/";

/// Maps `(service, id)` to keys under a prefix and back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    /// Ends with `/`.
    prefix: String,
}

impl KeyLayout {
    /// Keys under `prefix`, which is given a trailing `/` if it has none.
    pub fn new(prefix: &str) -> Self {
        let prefix = if prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        Self { prefix }
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of one instance.
    pub fn key(&self, service: &str, id: &str) -> String {
        format!("{}{service}/{id}", self.prefix)
    }

    /// The key of the marker a deregistration of one instance writes.
    pub fn marker(&self, service: &str, id: &str) -> String {
        format!("{}{MARKERS}{service}/{id}", self.prefix)
    }

    /// `(service, id)` of a key under the prefix, if both are valid names; other keys under
    /// the prefix (deeper paths, odd names, markers) are not instances and are ignored.
    pub fn parse<'k>(&self, key: &'k [u8]) -> Option<(&'k str, &'k str)> {
        let rest = key.strip_prefix(self.prefix.as_bytes())?;
        service_and_id(rest)
    }

    /// `(service, id)` of the instance a marker key names, if it is one.
    pub fn parse_marker<'k>(&self, key: &'k [u8]) -> Option<(&'k str, &'k str)> {
        let rest = key
            .strip_prefix(self.prefix.as_bytes())?
            .strip_prefix(MARKERS.as_bytes())?;
        service_and_id(rest)
    }
}

/// `(service, id)` of `<service>/<id>`, if both are valid names.
fn service_and_id(rest: &[u8]) -> Option<(&str, &str)> {
    let rest = std::str::from_utf8(rest).ok()?;
    let (service, id) = rest.split_once('/')?;
    validate::name("service", service).ok()?;
    validate::name("instance id", id).ok()?;
    Some((service, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_prove_ownership_by_digest() {
        let lease = Lease::generate();
        let mut metadata = Metadata::new();
        metadata.insert("zone".into(), "a".into());
        let record = Record::new("http://h:1".into(), metadata, 30, &lease);
        let json = record.to_json();
        assert!(!String::from_utf8_lossy(&json).contains(lease.as_str()));
        let parsed = Record::parse(&json).unwrap();
        assert_eq!(parsed, record);
        assert!(parsed.owned_by(Some(lease.as_str())));
        assert!(!parsed.owned_by(Some(Lease::generate().as_str())));
        assert!(!parsed.owned_by(None));
        assert!(!parsed.owned_by(Some("")));
    }

    #[test]
    fn foreign_records_parse_but_are_owned_by_no_one() {
        let record = Record::parse(br#"{"address":"http://h:1"}"#).unwrap();
        assert_eq!(record.address, "http://h:1");
        assert!(record.metadata.is_empty());
        assert!(!record.owned_by(Some("")));
        assert!(!record.owned_by(Some("anything")));
        assert!(Record::parse(b"not json").is_none());
    }

    #[test]
    fn keys_map_to_service_and_id() {
        let layout = KeyLayout::new("/discovery");
        assert_eq!(layout.prefix(), "/discovery/");
        assert_eq!(layout.key("ratings", "1"), "/discovery/ratings/1");
        assert_eq!(
            layout.parse(b"/discovery/ratings/1"),
            Some(("ratings", "1"))
        );
        assert_eq!(layout.parse(b"/discovery/ratings/1/extra"), None);
        assert_eq!(layout.parse(b"/discovery/ratings"), None);
        assert_eq!(layout.parse(b"/other/ratings/1"), None);
        assert_eq!(layout.parse(b"/discovery/rat ings/1"), None);
    }

    #[test]
    fn markers_name_an_instance_and_never_pass_for_one() {
        let layout = KeyLayout::new("/discovery/");
        let marker = layout.marker("ratings", "1");
        assert_eq!(marker, "/discovery/~deregistered/ratings/1");
        assert_eq!(layout.parse(marker.as_bytes()), None);
        assert_eq!(
            layout.parse_marker(marker.as_bytes()),
            Some(("ratings", "1"))
        );
        assert_eq!(layout.parse_marker(b"/discovery/ratings/1"), None);
        assert_eq!(
            layout.parse_marker(b"/discovery/~deregistered/ratings"),
            None
        );
        // A service may be called `.deregistered` or `deregistered`, but never `~...`.
        assert!(validate::name("service", "~deregistered").is_err());
    }
}
