//! Handler tests: the router driven with `oneshot`, no sockets, for what the HTTP layer
//! decides: validation and error bodies, auth, body and blocking-query limits, the wait
//! cap, health and shutdown. What the registry does with registrations, heartbeats and
//! watches is tested once per store in `tests/store_suite.rs`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;

#[path = "../../tests/support/router.rs"]
mod router;
use router::{Reply, assert_error, get, instance_uri, put_json, with_lease};

const ADDR: &str = "http://127.0.0.1:8001";

fn state() -> AppState {
    AppState::new(&Config::default())
}

fn state_with(configure: impl FnOnce(&mut Config)) -> AppState {
    let mut config = Config::default();
    configure(&mut config);
    AppState::new(&config)
}

async fn send(state: &AppState, request: Request<Body>) -> Reply {
    router::send(app(state.clone()), request).await
}

/// Registers and returns the lease.
async fn register(state: &AppState, service: &str, id: &str, address: &str) -> String {
    let reply = send(
        state,
        put_json(&instance_uri(service, id), &json!({ "address": address })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["lease"].as_str().unwrap().to_owned()
}

async fn heartbeat(state: &AppState, service: &str, id: &str, lease: Option<&str>) -> Reply {
    let uri = format!("{}/heartbeat", instance_uri(service, id));
    send(state, with_lease(Method::PUT, &uri, lease)).await
}

async fn service(state: &AppState, name: &str) -> Value {
    let reply = send(state, get(&format!("/v1/services/{name}"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body
}

async fn services(state: &AppState) -> Value {
    send(state, get("/v1/services")).await.body["services"].clone()
}

/// Yields until `n` blocking queries are parked (bounded).
async fn until_blocking(state: &AppState, n: usize) {
    for _ in 0..1000 {
        if state.blocking_queries() == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!(
        "expected {n} blocking queries, have {}",
        state.blocking_queries()
    );
}

#[tokio::test]
async fn health_is_ok() {
    let reply = send(&state(), get("/health")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({ "status": "ok" }));
}

#[tokio::test]
async fn invalid_registrations_are_refused_and_change_nothing() {
    let long = "x".repeat(129);
    let too_many: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(String, Value, &str)> = vec![
        (instance_uri("ratings", "1"), json!({}), "address"),
        (
            instance_uri("ratings", "1"),
            json!({ "address": 8001 }),
            "address",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": "127.0.0.1:8001" }),
            "http://",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": "ftp://h:21" }),
            "http://",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": "http://:80" }),
            "host",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": "http://h:99999" }),
            "port",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": "http://h/?x=1" }),
            "query",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": format!("http://h/{}", "p".repeat(256)) }),
            "256",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": ADDR, "metadata": too_many }),
            "metadata",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": ADDR, "metadata": { "k".repeat(65): "v" } }),
            "metadata key",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": ADDR, "metadata": { "k": "v".repeat(257) } }),
            "metadata value",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": ADDR, "metadata": ["a"] }),
            "metadata",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": ADDR, "metadata": { "k": 1 } }),
            "metadata",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": ADDR, "ttl_secs": 0 }),
            "ttl_secs",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": ADDR, "ttl_secs": 3601 }),
            "ttl_secs",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": ADDR, "ttl_secs": -5 }),
            "ttl_secs",
        ),
        (
            instance_uri("ratings", "1"),
            json!({ "address": ADDR, "ttl_secs": "60" }),
            "ttl_secs",
        ),
        (instance_uri("ratings", "1"), json!([ADDR]), "JSON"),
        (
            instance_uri("ratings", "a%20b"),
            json!({ "address": ADDR }),
            "instance id",
        ),
        (
            instance_uri("rat%2Fings", "1"),
            json!({ "address": ADDR }),
            "service",
        ),
        (
            instance_uri("ratings", &long),
            json!({ "address": ADDR }),
            "128",
        ),
        (
            instance_uri(&long, "1"),
            json!({ "address": ADDR }),
            "service",
        ),
    ];
    let state = state();
    for (uri, body, needle) in cases {
        let reply = send(&state, put_json(&uri, &body)).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, needle);
    }
    assert_eq!(services(&state).await, json!([]));
    assert_eq!(
        service(&state, "ratings").await,
        json!({ "index": 0, "instances": [] })
    );
}

#[tokio::test]
async fn malformed_bodies_get_json_errors() {
    let state = state();
    let uri = instance_uri("ratings", "1");
    let syntax = Request::put(&uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"address\": "))
        .unwrap();
    assert_error(&send(&state, syntax).await, StatusCode::BAD_REQUEST, "JSON");

    let empty = Request::put(&uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::empty())
        .unwrap();
    assert_error(&send(&state, empty).await, StatusCode::BAD_REQUEST, "JSON");

    let untyped = Request::put(&uri)
        .body(Body::from(json!({ "address": ADDR }).to_string()))
        .unwrap();
    assert_error(
        &send(&state, untyped).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "Content-Type",
    );
    assert_eq!(services(&state).await, json!([]));
}

#[tokio::test]
async fn oversized_body_is_413() {
    let state = state();
    let body = json!({ "address": ADDR, "metadata": { "k": "v".repeat(17 * 1024) } });
    let reply = send(&state, put_json(&instance_uri("ratings", "1"), &body)).await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "length limit");
    assert_eq!(services(&state).await, json!([]));

    // The same body without a length hint (streamed) is cut off too.
    let request = Request::put(instance_uri("ratings", "1"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(streamed(body.to_string()))
        .unwrap();
    let reply = send(&state, request).await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "length limit");
}

/// A body without a length hint, as a streamed (chunked) upload has.
fn streamed(text: String) -> Body {
    Body::from_stream(Body::from(text).into_data_stream())
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let state = state();
    assert_error(
        &send(&state, get("/v2/nothing")).await,
        StatusCode::NOT_FOUND,
        "/v2/nothing",
    );
    assert_error(
        &send(&state, get("/v1/services/a/instances")).await,
        StatusCode::NOT_FOUND,
        "no such endpoint",
    );
    let post = Request::post("/v1/services").body(Body::empty()).unwrap();
    let reply = send(&state, post).await;
    assert_error(&reply, StatusCode::METHOD_NOT_ALLOWED, "POST");
    assert_eq!(reply.headers[header::ALLOW], "GET,HEAD");
    let get_instance = get(&instance_uri("ratings", "1"));
    assert_error(
        &send(&state, get_instance).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "GET",
    );
}

#[tokio::test]
async fn bad_watch_parameters_are_400() {
    let state = state();
    for (query, needle) in [
        ("index=abc", "index"),
        ("index=-1", "index"),
        ("index=1.5", "index"),
        ("index=1&wait=forever", "wait"),
        ("index=1&wait=10", "wait"),
        ("index=1&index=2", "index"),
    ] {
        let reply = send(&state, get(&format!("/v1/services/ratings?{query}"))).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, needle);
    }
    let reply = send(&state, get("/v1/services/bad%20name")).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "service");
}

#[tokio::test]
async fn token_guards_writes() {
    let state = state_with(|c| c.token = Some("s3cret".parse().unwrap()));
    let uri = instance_uri("ratings", "1");
    let body = json!({ "address": ADDR });

    let reply = send(&state, put_json(&uri, &body)).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "bearer token");
    assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer");
    let mut wrong = put_json(&uri, &body);
    wrong
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
    assert_error(
        &send(&state, wrong).await,
        StatusCode::UNAUTHORIZED,
        "bearer token",
    );
    assert_eq!(services(&state).await, json!([]), "reads stay open");

    let mut right = put_json(&uri, &body);
    right
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
    let reply = send(&state, right).await;
    assert_eq!(reply.status, StatusCode::OK);
    let lease = reply.body["lease"].as_str().unwrap().to_owned();

    // Heartbeat and deregister are writes too: the lease alone is not enough.
    let reply = heartbeat(&state, "ratings", "1", Some(&lease)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = send(&state, with_lease(Method::DELETE, &uri, Some(&lease))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(services(&state).await, json!(["ratings"]));

    assert_eq!(send(&state, get("/health")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn protect_reads_guards_reads_but_not_health() {
    let state = state_with(|c| {
        c.token = Some("s3cret".parse().unwrap());
        c.protect_reads = true;
    });
    for uri in [
        "/v1/services",
        "/v1/services/ratings",
        "/v1/prometheus/targets",
    ] {
        assert_error(
            &send(&state, get(uri)).await,
            StatusCode::UNAUTHORIZED,
            "token",
        );
        let authorized = Request::get(uri)
            .header(header::AUTHORIZATION, "Bearer s3cret")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&state, authorized).await.status, StatusCode::OK);
    }
    assert_eq!(send(&state, get("/health")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn prometheus_targets_follow_registrations_of_every_service() {
    let state = state();
    let targets = || async { send(&state, get("/v1/prometheus/targets")).await };
    assert_eq!(targets().await.body, json!([]), "nothing registered yet");

    let lease = register(&state, "ratings", "2", "http://127.0.0.1:8002").await;
    register(&state, "ratings", "1", ADDR).await;
    register(&state, "search", "a", "https://127.0.0.1:9443").await;
    let reply = targets().await;
    assert_eq!(reply.status, StatusCode::OK);
    let groups: Vec<(String, String, String, String)> = reply
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|group| {
            let label = |name: &str| group["labels"][name].as_str().unwrap().to_owned();
            (
                group["targets"][0].as_str().unwrap().to_owned(),
                label("service"),
                label("instance_id"),
                label("__scheme__"),
            )
        })
        .collect();
    let row = |target: &str, service: &str, id: &str, scheme: &str| {
        (target.into(), service.into(), id.into(), scheme.into())
    };
    assert_eq!(
        groups,
        [
            row("127.0.0.1:8001", "ratings", "1", "http"),
            row("127.0.0.1:8002", "ratings", "2", "http"),
            row("127.0.0.1:9443", "search", "a", "https"),
        ]
    );

    // An instance that leaves is no longer a target.
    let uri = instance_uri("ratings", "2");
    let reply = send(&state, with_lease(Method::DELETE, &uri, Some(&lease))).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = targets().await;
    let ids: Vec<&str> = reply
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|group| group["labels"]["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "a"], "instance 2 left");
}

async fn send_owned(state: AppState, request: Request<Body>) -> Reply {
    send(&state, request).await
}

#[tokio::test(start_paused = true)]
async fn blocking_query_waits_its_wait_capped_and_defaulting_to_the_cap() {
    let state = state_with(|c| c.max_wait = Duration::from_secs(5));
    register(&state, "ratings", "1", ADDR).await;
    let before = service(&state, "ratings").await;
    for (uri, waited) in [
        ("/v1/services/ratings?index=1&wait=2s", 2),
        ("/v1/services/ratings?index=1&wait=1h", 5),
        ("/v1/services/ratings?index=1", 5),
    ] {
        let start = Instant::now();
        let reply = send(&state, get(uri)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(waited), "{uri}");
        // A wait that runs out answers the unchanged set, index header included.
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, before);
        assert_eq!(reply.header_index(), Some(1));
    }
}

#[tokio::test(start_paused = true)]
async fn blocking_query_limit_is_429() {
    let state = state_with(|c| c.max_blocking_queries = 1);
    register(&state, "ratings", "1", ADDR).await;
    let first = tokio::spawn(send_owned(
        state.clone(),
        get("/v1/services/ratings?index=1&wait=10s"),
    ));
    until_blocking(&state, 1).await;
    let reply = send(&state, get("/v1/services/ratings?index=1&wait=10s")).await;
    assert_error(&reply, StatusCode::TOO_MANY_REQUESTS, "blocking queries");
    // Non-blocking reads are not limited.
    assert_eq!(service(&state, "ratings").await["index"], 1);
    register(&state, "ratings", "2", ADDR).await;
    assert_eq!(first.await.unwrap().body["index"], 2);
    assert_eq!(state.blocking_queries(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_releases_blocking_queries() {
    let state = state();
    register(&state, "ratings", "1", ADDR).await;
    let start = Instant::now();
    let watch = tokio::spawn(send_owned(
        state.clone(),
        get("/v1/services/ratings?index=1&wait=60s"),
    ));
    until_blocking(&state, 1).await;
    state.shutdown().trigger();
    let reply = watch.await.unwrap();
    assert_eq!(Instant::now(), start);
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["index"], 1);
}

/// A GET as if it came over a socket from `peer` (what `into_make_service_with_connect_info`
/// attaches).
fn get_from(uri: &str, peer: [u8; 4]) -> Request<Body> {
    let mut request = get(uri);
    let addr = std::net::SocketAddr::from((peer, 40_000));
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    request
}

#[tokio::test(start_paused = true)]
async fn blocking_queries_are_capped_per_client() {
    let state = state_with(|c| c.max_blocking_queries_per_client = 2);
    register(&state, "ratings", "1", ADDR).await;
    let watch = "/v1/services/ratings?index=1&wait=10s";
    let a = [127, 0, 0, 1];
    let parked: Vec<_> = (0..2)
        .map(|_| tokio::spawn(send_owned(state.clone(), get_from(watch, a))))
        .collect();
    until_blocking(&state, 2).await;
    let refused = send(&state, get_from(watch, a)).await;
    assert_error(&refused, StatusCode::TOO_MANY_REQUESTS, "this client");
    // Another client still gets a slot, and plain reads are never capped.
    let other = tokio::spawn(send_owned(state.clone(), get_from(watch, [127, 0, 0, 2])));
    until_blocking(&state, 3).await;
    let plain = send(&state, get_from("/v1/services/ratings", a)).await;
    assert_eq!(plain.status, StatusCode::OK);
    // A change answers everyone and gives the slots back.
    register(&state, "ratings", "2", ADDR).await;
    for watcher in parked.into_iter().chain([other]) {
        assert_eq!(watcher.await.unwrap().body["index"], 2);
    }
    assert_eq!(state.blocking_queries(), 0);
    assert_eq!(state.per_client().parked([127, 0, 0, 1].into()), 0);
    let again = tokio::spawn(send_owned(
        state.clone(),
        get_from("/v1/services/ratings?index=2&wait=1s", a),
    ));
    until_blocking(&state, 1).await;
    assert_eq!(again.await.unwrap().status, StatusCode::OK);
}
