//! Faults injected into running ratings instances through their admin endpoint
//! (`PUT /admin/faults`; the instances are started with `--admin`, on loopback only).

use std::time::Duration;

use serde_json::{Value, json};

/// Applies `faults` (any of `latency_ms`, `error_rate`, `garbage_rate`, `throttle_rate`) to
/// the instance at `base`; the fields left out stay as they are.
pub async fn set(base: &str, faults: Value) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let url = format!("{base}/admin/faults");
    let answer = http
        .put(&url)
        .json(&faults)
        .send()
        .await
        .map_err(|e| format!("PUT {url}: {e}"))?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        let body = answer.text().await.unwrap_or_default();
        Err(format!("PUT {url} {faults}: {status}: {body}"))
    }
}

/// Sets the instance's added latency.
pub async fn set_latency(base: &str, latency: Duration) -> Result<(), String> {
    let millis = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    set(base, json!({ "latency_ms": millis })).await
}

/// Clears every fault of the instance.
pub async fn heal(base: &str) -> Result<(), String> {
    set(
        base,
        json!({"latency_ms": 0, "error_rate": 0.0, "garbage_rate": 0.0, "throttle_rate": 0.0}),
    )
    .await
}
