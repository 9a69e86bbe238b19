//! Property tests: arbitrary requests thrown at the registry's router through `oneshot`.
//!
//! Whatever the method, path, query, headers and body: never a 5xx, never a panic; every
//! refusal is a 4xx with a JSON `{"error": "..."}` body; and a refused request changes
//! nothing: the listing is the same and the registered instance's lease still works.
//!
//! Each case runs on a fresh registry (one instance registered) on paused time, so a hostile
//! blocking query waits out its `wait` in virtual time instead of real seconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use proptest::prelude::*;
use registry::{AppState, Config, app};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "s3cret-token";
const INSTANCE: &str = "/v1/services/ratings/instances/1";

/// A registry with `ratings/1` registered; returns its state and the lease.
async fn seeded(config: &Config) -> (AppState, String) {
    let state = AppState::new(config);
    let mut request = Request::put(INSTANCE)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"address": "http://127.0.0.1:8001"}"#))
        .unwrap();
    if config.token.is_some() {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
        );
    }
    let (status, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let lease = body.unwrap()["lease"].as_str().unwrap().to_owned();
    (state, lease)
}

async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, Option<Value>) {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).ok())
}

/// What a reader sees: the service list and the `ratings` listing.
async fn visible(state: &AppState) -> (Option<Value>, Option<Value>) {
    let list = send(
        state,
        Request::get("/v1/services").body(Body::empty()).unwrap(),
    )
    .await;
    let ratings = send(
        state,
        Request::get("/v1/services/ratings")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    (list.1, ratings.1)
}

/// Whether `lease` still renews `ratings/1`.
async fn lease_works(state: &AppState, lease: &str, token: bool) -> bool {
    let mut request = Request::put(format!("{INSTANCE}/heartbeat"))
        .header("x-lease", lease)
        .body(Body::empty())
        .unwrap();
    if token {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
        );
    }
    send(state, request).await.0 == StatusCode::OK
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Percent-encodes every byte outside the unreserved set, so any bytes make a valid path.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A path segment: raw printable text when it makes a valid URI, else percent-encoded bytes.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._-]{0,20}",
        "[ -~]{0,12}",
        Just("x".repeat(200)),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(|b| encode(&b)),
    ]
}

fn paths() -> impl Strategy<Value = String> {
    (segment(), segment(), 0..7_u8).prop_map(|(a, b, shape)| match shape {
        0 => format!("/v1/services/{a}"),
        1 => format!("/v1/services/{a}/instances/{b}"),
        2 => format!("/v1/services/{a}/instances/{b}/heartbeat"),
        3 => format!("/v1/services/ratings/instances/{b}"),
        4 => INSTANCE.to_owned(),
        5 => "/v1/services".to_owned(),
        _ => format!("/{a}/{b}"),
    })
}

fn queries() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (any::<u64>(), "[0-9a-z]{0,6}").prop_map(|(i, w)| format!("?index={i}&wait={w}")),
        ("[ -~]{0,8}", "[ -~]{0,8}").prop_map(|(i, w)| format!(
            "?index={}&wait={}",
            encode(i.as_bytes()),
            encode(w.as_bytes())
        )),
        Just("?index=1&wait=1h".to_owned()),
        Just("?index=1".to_owned()),
    ]
}

fn methods() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::PUT),
        Just(Method::DELETE),
        Just(Method::POST),
        Just(Method::PATCH),
        Just(Method::OPTIONS),
        "[A-Z]{1,8}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

/// Arbitrary JSON, nested a little.
fn json_values() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("address".to_owned()),
                    Just("metadata".to_owned()),
                    Just("ttl_secs".to_owned()),
                    "[a-z]{1,8}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Registration bodies: arbitrary bytes, arbitrary JSON, and near-valid registrations.
fn bodies() -> impl Strategy<Value = Vec<u8>> {
    let near_valid = (
        prop_oneof![
            Just("http://127.0.0.1:8001".to_owned()),
            Just("http://127.0.0.1:9999".to_owned()),
            "[ -~]{0,40}",
            "https?://[a-z0-9.:@/?#%]{0,30}",
        ],
        prop::collection::btree_map(".{0,70}", ".{0,300}", 0..40),
        prop_oneof![Just(None), any::<u64>().prop_map(Some)],
    )
        .prop_map(|(address, metadata, ttl): (String, BTreeMap<String, String>, Option<u64>)| {
            json!({"address": address, "metadata": metadata, "ttl_secs": ttl})
        });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        json_values().prop_map(|v| v.to_string().into_bytes()),
        near_valid.prop_map(|v| v.to_string().into_bytes()),
        Just(vec![b'{'; 20_000]),
    ]
}

/// Arbitrary header values (those `HeaderValue` accepts), for the headers that matter.
fn headers() -> impl Strategy<Value = Vec<(HeaderName, Vec<u8>)>> {
    let name = prop_oneof![
        Just(header::AUTHORIZATION),
        Just(HeaderName::from_static("x-lease")),
        Just(header::CONTENT_TYPE),
        Just(header::CONTENT_LENGTH),
    ];
    let value = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        Just(b"application/json".to_vec()),
        Just(b"Bearer wrong".to_vec()),
        "Bearer [ -~]{0,20}".prop_map(String::into_bytes),
    ];
    prop::collection::vec((name, value), 0..4)
}

/// Builds the request; `None` when the parts do not make one (hyper would refuse it first).
fn request(
    method: Method,
    uri: &str,
    headers: &[(HeaderName, Vec<u8>)],
    body: Vec<u8>,
) -> Option<Request<Body>> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .ok()?;
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            request.headers_mut().append(name.clone(), value);
        }
    }
    Some(request)
}

/// The checks every answer must pass.
fn check_answer(status: StatusCode, body: &Option<Value>, head: bool) -> Result<(), String> {
    if status.is_server_error() {
        return Err(format!("server error {status}: {body:?}"));
    }
    if status.is_client_error() && !head {
        let message = body
            .as_ref()
            .and_then(|b| b.get("error"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{status} without a JSON error: {body:?}"))?;
        let keys = body
            .as_ref()
            .and_then(Value::as_object)
            .map_or(0, |o| o.len());
        // A 409 for an id held under a live lease also says when to retry.
        let retry_hint = body
            .as_ref()
            .and_then(|b| b.get("retry_after_secs"))
            .is_some_and(|secs| status == StatusCode::CONFLICT && secs.as_u64() > Some(0));
        if message.is_empty() || keys != 1 + usize::from(retry_hint) {
            return Err(format!("{status}: error body {body:?}"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any request: no 5xx, JSON errors, and a refusal changes nothing.
    #[test]
    fn any_request_is_answered_or_refused_cleanly(
        method in methods(),
        path in paths(),
        query in queries(),
        headers in headers(),
        body in bodies(),
    ) {
        let uri = format!("{path}{query}");
        let head = method == Method::HEAD;
        let outcome: Result<(), String> = paused_runtime().block_on(async {
            let (state, lease) = seeded(&Config::default()).await;
            let before = visible(&state).await;
            let Some(request) = request(method, &uri, &headers, body) else {
                return Ok(());
            };
            let (status, answer) = send(&state, request).await;
            check_answer(status, &answer, head)?;
            if status.is_client_error() {
                if visible(&state).await != before {
                    return Err(format!("{status} but the listing changed"));
                }
                if !lease_works(&state, &lease, false).await {
                    return Err(format!("{status} but the lease stopped working"));
                }
            }
            Ok(())
        });
        prop_assert!(outcome.is_ok(), "{} {}: {:?}", uri, headers.len(), outcome);
    }

    /// Any registration body for a live instance: accepted as given, or refused with nothing
    /// changed.
    #[test]
    fn any_registration_body_is_applied_exactly_or_changes_nothing(body in bodies()) {
        let outcome: Result<(), String> = paused_runtime().block_on(async {
            let (state, lease) = seeded(&Config::default()).await;
            let before = visible(&state).await;
            let parsed: Option<Value> = serde_json::from_slice(&body).ok();
            let request = Request::put("/v1/services/ratings/instances/2")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap();
            let (status, answer) = send(&state, request).await;
            check_answer(status, &answer, false)?;
            let after = visible(&state).await;
            if status == StatusCode::OK {
                let address = parsed.as_ref().and_then(|b| b["address"].as_str());
                let listed = after.1.as_ref().and_then(|l| {
                    l["instances"].as_array()?.iter().find(|i| i["id"] == "2").cloned()
                });
                let listed_address = listed.as_ref().and_then(|i| i["address"].as_str());
                if listed_address != address || address.is_none() {
                    return Err(format!("accepted {parsed:?} but lists {listed:?}"));
                }
            } else if after != before {
                return Err(format!("{status} but the listing changed"));
            }
            if !lease_works(&state, &lease, false).await {
                return Err("instance 1's lease stopped working".to_owned());
            }
            Ok(())
        });
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }

    /// With a token configured, no write without the exact token gets through, whatever the
    /// `Authorization` header says, and the answer is a JSON 401.
    #[test]
    fn writes_without_the_token_are_401_and_change_nothing(
        method in prop_oneof![Just(Method::PUT), Just(Method::DELETE), Just(Method::POST)],
        path in paths(),
        authorization in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40),
            "(Bearer|bearer|Basic|Token)? ?[ -~]{0,20}".prop_map(String::into_bytes),
            Just(format!("Bearer {TOKEN}x").into_bytes()),
            Just(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]).into_bytes()),
        ],
        body in bodies(),
    ) {
        prop_assume!(!String::from_utf8_lossy(&authorization).trim().ends_with(&format!(" {TOKEN}")));
        let outcome: Result<(), String> = paused_runtime().block_on(async {
            let config = Config {
                token: Some(TOKEN.parse().unwrap()),
                ..Config::default()
            };
            let (state, lease) = seeded(&config).await;
            let before = visible(&state).await;
            let headers = [(header::AUTHORIZATION, authorization.clone())];
            let Some(request) = request(method, &path, &headers, body) else {
                return Ok(());
            };
            let (status, answer) = send(&state, request).await;
            check_answer(status, &answer, false)?;
            // Unknown routes are 404/405 before auth; every write route must say 401.
            if status.is_success() {
                return Err(format!("{status}: a write without the token got through"));
            }
            if visible(&state).await != before || !lease_works(&state, &lease, true).await {
                return Err(format!("{status} but something changed"));
            }
            Ok(())
        });
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }
}
