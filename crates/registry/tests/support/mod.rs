//! What the integration tests share: a registry served on a port-0 listener ([`server`]),
//! the `registry` binary started as a user would ([`binary`]), the router driven in process
//! ([`router`]), reading `/metrics` ([`metrics`]), and reading answers.

// Each test file uses only part of this.
#![allow(dead_code)]

pub mod binary;
pub mod metrics;
pub mod router;
pub mod server;

use serde_json::Value;

/// GETs `url` and reads the answer as JSON, whatever its status.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// The instance ids in a `GET /v1/services/{service}` body, in order.
pub fn ids(body: &Value) -> Vec<String> {
    body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}
