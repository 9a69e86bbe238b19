//! `GET /v1/prometheus/targets`: every registered instance, of every service, in
//! Prometheus' HTTP service-discovery format, so a Prometheus with
//!
//! ```yaml
//! http_sd_configs:
//!   - url: http://127.0.0.1:8500/v1/prometheus/targets
//! ```
//!
//! scrapes each instance that registers and drops each one that leaves (deregistered or
//! expired) at its next refresh. One target group per instance:
//!
//! ```json
//! [{"targets": ["127.0.0.1:8001"],
//!   "labels": {"service": "ratings", "instance_id": "1",
//!              "__scheme__": "http", "__metrics_path__": "/metrics",
//!              "__meta_registry_address": "http://127.0.0.1:8001",
//!              "__meta_registry_metadata_zone": "a"}}]
//! ```
//!
//! `service` and `instance_id` are kept on every scraped series; the `__meta_registry_*`
//! labels (the registered address, and each metadata key with anything but letters, digits
//! and `_` turned into `_`) are there for relabelling and dropped otherwise. An `https://`
//! instance gets `__scheme__: https`; an address with a path (`http://host/base`) is scraped
//! at that path's `/metrics`. The route is a read, so with `--protect-reads` it needs the
//! token like every other read (Prometheus: `authorization: {credentials: ...}` in the
//! `http_sd_configs` entry).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use crate::store::InstanceView;

/// One target group of the HTTP service-discovery answer: one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetGroup {
    /// The instance's `host:port`, as Prometheus' `__address__`.
    targets: Vec<String>,
    /// Labels of every series scraped from it, and `__`-prefixed ones for relabelling.
    labels: BTreeMap<String, String>,
}

/// `GET /v1/prometheus/targets`: every live instance of every service, sorted by service
/// and then by id.
pub async fn targets(State(state): State<AppState>) -> Json<Vec<TargetGroup>> {
    let store = state.store();
    let groups = store
        .services()
        .into_iter()
        .flat_map(|service| {
            let snapshot = store.snapshot(&service);
            snapshot
                .instances
                .iter()
                .map(|instance| target_group(&service, instance))
                .collect::<Vec<_>>()
        })
        .collect();
    Json(groups)
}

/// The target group of one instance of `service`.
fn target_group(service: &str, instance: &InstanceView) -> TargetGroup {
    // Registered addresses are validated as `http://` or `https://` URLs with no query.
    let (scheme, rest) = instance
        .address
        .split_once("://")
        .unwrap_or(("http", instance.address.as_str()));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_end_matches('/');
    let metrics_path = if path.is_empty() {
        "/metrics".to_owned()
    } else {
        format!("/{path}/metrics")
    };
    let mut labels = BTreeMap::from([
        ("service".to_owned(), service.to_owned()),
        ("instance_id".to_owned(), instance.id.clone()),
        ("__scheme__".to_owned(), scheme.to_owned()),
        ("__metrics_path__".to_owned(), metrics_path),
        (
            "__meta_registry_address".to_owned(),
            instance.address.clone(),
        ),
    ]);
    for (key, value) in &instance.metadata {
        labels.insert(
            format!("__meta_registry_metadata_{}", label_name(key)),
            value.clone(),
        );
    }
    TargetGroup {
        targets: vec![authority.to_owned()],
        labels,
    }
}

/// `key` as a Prometheus label name's tail: letters, digits and `_`; anything else is `_`.
fn label_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::Metadata;

    fn view(id: &str, address: &str, metadata: &[(&str, &str)]) -> InstanceView {
        InstanceView {
            id: id.into(),
            address: address.into(),
            metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Metadata>(),
        }
    }

    #[test]
    fn an_http_instance_is_scraped_at_its_host_and_port() {
        let group = target_group("ratings", &view("1", "http://127.0.0.1:8001", &[]));
        assert_eq!(
            serde_json::to_value(group).unwrap(),
            json!({
                "targets": ["127.0.0.1:8001"],
                "labels": {
                    "service": "ratings", "instance_id": "1", "__scheme__": "http",
                    "__metrics_path__": "/metrics",
                    "__meta_registry_address": "http://127.0.0.1:8001",
                }
            })
        );
    }

    #[test]
    fn https_paths_ipv6_and_metadata_become_labels() {
        let group = target_group(
            "ratings",
            &view(
                "b",
                "https://[::1]:8443/base/",
                &[("zone", "a"), ("tls-server-name", "r.example")],
            ),
        );
        assert_eq!(group.targets, ["[::1]:8443"]);
        assert_eq!(group.labels["__scheme__"], "https");
        assert_eq!(group.labels["__metrics_path__"], "/base/metrics");
        assert_eq!(group.labels["__meta_registry_metadata_zone"], "a");
        assert_eq!(
            group.labels["__meta_registry_metadata_tls_server_name"],
            "r.example"
        );
    }
}
