//! The registry's router driven in process with `oneshot` (no sockets): requests to send it
//! and what to check of its answers. Used by the integration tests (through `support`) and
//! by the handler unit tests in `src/http/tests.rs` (included there by path), so it names
//! no crate item: callers pass the router.

// Each test file uses only part of this.
#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// An answer: its status, headers and body as JSON (`null` when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The `X-Registry-Index` header, if present and a number.
    pub fn header_index(&self) -> Option<u64> {
        self.headers
            .get("x-registry-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

/// Sends `request` through `router` and reads the whole answer.
pub async fn send(router: Router, request: Request<Body>) -> Reply {
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {bytes:?}"))
    };
    Reply {
        status,
        headers,
        body,
    }
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub fn put_json(uri: &str, body: &Value) -> Request<Body> {
    Request::put(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// `put_json`, presenting `lease` in `X-Lease`.
pub fn put_json_with_lease(uri: &str, body: &Value, lease: &str) -> Request<Body> {
    let mut request = put_json(uri, body);
    request
        .headers_mut()
        .insert("x-lease", lease.parse().unwrap());
    request
}

/// A bodiless request, with `X-Lease` when a lease is given.
pub fn with_lease(method: Method, uri: &str, lease: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(lease) = lease {
        builder = builder.header("X-Lease", lease);
    }
    builder.body(Body::empty()).unwrap()
}

pub fn instance_uri(service: &str, id: &str) -> String {
    format!("/v1/services/{service}/instances/{id}")
}

/// `status` with a JSON body `{"error": ...}` (nothing else) that mentions `needle`.
pub fn assert_error(reply: &Reply, status: StatusCode, needle: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.body);
    let message = reply.body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON error in {}", reply.body));
    assert!(
        message.contains(needle),
        "error {message:?} does not mention {needle:?}"
    );
    assert_eq!(
        reply.body.as_object().map(|o| o.len()),
        Some(1),
        "error body has only `error`: {}",
        reply.body
    );
}

/// A 409 for an id held under a live lease, saying (in the message, in `retry_after_secs`
/// and in `Retry-After`, all alike) when to retry; returns that number of seconds.
pub fn assert_held(reply: &Reply) -> u64 {
    assert_eq!(reply.status, StatusCode::CONFLICT, "body: {}", reply.body);
    let message = reply.body["error"].as_str().unwrap_or_default();
    let secs = reply.body["retry_after_secs"]
        .as_u64()
        .unwrap_or_else(|| panic!("no retry_after_secs in {}", reply.body));
    for needle in ["live lease", "X-Lease", &format!("expires in {secs} s")] {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
    assert_eq!(reply.body.as_object().map(|o| o.len()), Some(2));
    assert_eq!(reply.headers[header::RETRY_AFTER], secs.to_string());
    secs
}
