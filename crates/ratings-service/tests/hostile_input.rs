//! Property tests: arbitrary item ids, requests and admin bodies thrown at the ratings
//! service's router through `oneshot`.
//!
//! Never a 5xx (no fault is injected here), never a panic, every refusal a JSON
//! `{"error": "..."}`; an item id gets exactly the answer the rules and the catalog call for;
//! and an admin update is applied exactly as given or changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use clap::Parser;
use http_body_util::BodyExt;
use proptest::prelude::*;
use ratings_service::catalog::{Catalog, validate_item_id};
use ratings_service::{AppState, Config, app};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "adm1n";

fn router() -> Router {
    let config = Config::try_parse_from([
        "ratings-service",
        "--no-register",
        "--instance",
        "3",
        "--admin",
        "--admin-token",
        TOKEN,
    ])
    .unwrap();
    config.validate().unwrap();
    app(AppState::from_config(&config).unwrap())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Option<Value>) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).ok())
}

async fn faults(app: &Router) -> Value {
    let request = Request::get("/admin/faults")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(app, request).await;
    assert_eq!(status, StatusCode::OK);
    body.unwrap()
}

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

/// A JSON error body with one non-empty `error` field.
fn is_json_error(body: &Option<Value>) -> bool {
    body.as_ref().is_some_and(|b| {
        b.as_object().is_some_and(|o| o.len() == 1)
            && b["error"].as_str().is_some_and(|m| !m.is_empty())
    })
}

/// Item ids: catalog ids, valid-looking ids, any text, any bytes.
fn item_ids() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec!["widget", "gadget", "gizmo", "doohickey", "whatsit"])
            .prop_map(|s| s.as_bytes().to_vec()),
        "[A-Za-z0-9._-]{0,70}".prop_map(String::into_bytes),
        ".{0,20}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

/// Admin bodies: any bytes, any JSON, and near-valid fault updates.
fn admin_bodies() -> impl Strategy<Value = Vec<u8>> {
    let number = prop_oneof![
        any::<f64>().prop_map(Value::from),
        (0.0..=1.0_f64).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0_u64..70_000).prop_map(Value::from),
        ".{0,5}".prop_map(Value::from),
        Just(Value::Null),
    ];
    let field = prop_oneof![
        Just("latency_ms"),
        Just("error_rate"),
        Just("garbage_rate"),
        Just("throttle_rate"),
        Just("surprise"),
    ];
    let update = prop::collection::btree_map(field, number, 0..5)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        update.prop_map(|v| v.to_string().into_bytes()),
        Just(b"[]".to_vec()),
        Just(vec![b' '; 20_000]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `GET /ratings/{id}`: 200 with the catalog's rating, 404 for a valid unknown id, 400
    /// for an id that breaks the rules (including bytes that are not UTF-8).
    #[test]
    fn any_item_id_gets_exactly_the_answer_the_rules_call_for(id in item_ids()) {
        let catalog = Catalog::embedded().unwrap();
        let (status, body) = runtime().block_on(async {
            let request = Request::get(format!("/ratings/{}", encode(&id)))
                .body(Body::empty())
                .unwrap();
            send(&router(), request).await
        });
        match String::from_utf8(id) {
            Ok(id) if validate_item_id(&id).is_ok() => match catalog.rating(&id) {
                Some(rating) => {
                    prop_assert_eq!(status, StatusCode::OK);
                    let body = body.unwrap();
                    prop_assert_eq!(&body["item_id"], &json!(id));
                    prop_assert_eq!(&body["rating"], &json!(rating));
                    prop_assert_eq!(&body["instance"], &json!(3));
                }
                None => {
                    prop_assert_eq!(status, StatusCode::NOT_FOUND);
                    prop_assert!(is_json_error(&body), "{:?}", body);
                }
            },
            _ => {
                prop_assert_eq!(status, StatusCode::BAD_REQUEST, "{:?}", body);
                prop_assert!(is_json_error(&body), "{:?}", body);
            }
        }
    }

    /// Any method, path and body: no 5xx, and every refusal is a JSON error.
    #[test]
    fn any_request_is_answered_or_refused_with_json(
        method in prop_oneof![
            Just(Method::GET), Just(Method::PUT), Just(Method::POST), Just(Method::DELETE),
            "[A-Z]{1,7}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
        ],
        segments in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..4),
        prefix in prop::sample::select(vec!["", "/ratings", "/admin", "/admin/faults", "/health"]),
        body in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let tail: Vec<String> = segments.iter().map(|s| encode(s)).collect();
        let uri = format!("{prefix}/{}", tail.join("/"));
        let (status, answer) = runtime().block_on(async {
            let request = Request::builder()
                .method(method)
                .uri(&uri)
                .body(Body::from(body))
                .unwrap();
            send(&router(), request).await
        });
        prop_assert!(!status.is_server_error(), "{} {}: {:?}", uri, status, answer);
        if status.is_client_error() {
            prop_assert!(is_json_error(&answer), "{} {}: {:?}", uri, status, answer);
        }
    }

    /// `PUT /admin/faults` with the token: applied exactly (absent fields kept, every value in
    /// range) or refused with a JSON error and nothing changed. Without it: 401, unchanged.
    #[test]
    fn any_admin_body_is_applied_exactly_or_changes_nothing(
        body in admin_bodies(),
        authorized in any::<bool>(),
        json_type in any::<bool>(),
    ) {
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        let outcome: Result<(), String> = runtime().block_on(async {
            let app = router();
            let before = faults(&app).await;
            let mut request = Request::put("/admin/faults").body(Body::from(body)).unwrap();
            if json_type {
                request.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            if authorized {
                let bearer = HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap();
                request.headers_mut().insert(header::AUTHORIZATION, bearer);
            }
            let (status, answer) = send(&app, request).await;
            let after = faults(&app).await;
            if status.is_server_error() {
                return Err(format!("{status}: {answer:?}"));
            }
            if !status.is_success() {
                if !is_json_error(&answer) {
                    return Err(format!("{status} without a JSON error: {answer:?}"));
                }
                if after != before {
                    return Err(format!("{status} but faults changed to {after}"));
                }
                if !authorized && status != StatusCode::UNAUTHORIZED {
                    return Err(format!("no token but {status}"));
                }
                return Ok(());
            }
            if !authorized {
                return Err("applied without the token".to_owned());
            }
            let update = parsed.ok_or("applied a body that is not JSON")?;
            for field in ["latency_ms", "error_rate", "garbage_rate", "throttle_rate"] {
                // An absent or null field leaves the fault as it was.
                let want = update.get(field).filter(|v| !v.is_null()).unwrap_or(&before[field]);
                let have = &after[field];
                let same = want.as_f64().zip(have.as_f64()).is_some_and(|(w, h)| w == h);
                if !same {
                    return Err(format!("{field}: asked {want}, shows {have}"));
                }
            }
            let rate_ok = |f: &str| after[f].as_f64().is_some_and(|r| (0.0..=1.0).contains(&r));
            let latency_ok = after["latency_ms"].as_u64().is_some_and(|l| l <= 60_000);
            let rates_ok = ["error_rate", "garbage_rate", "throttle_rate"]
                .into_iter()
                .all(rate_ok);
            if !(rates_ok && latency_ok) {
                return Err(format!("out-of-range faults applied: {after}"));
            }
            Ok(())
        });
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }
}
