//! `run` on a real socket (port 0) against a small fake registry: it registers the bound
//! address, serves, and deregisters on shutdown.

#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::put;
use axum::{Json, Router};
use clap::Parser;
use ratings_service::{Config, run};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Deserialize)]
struct RegisterBody {
    address: String,
    metadata: BTreeMap<String, String>,
    ttl_secs: u64,
}

/// What the fake registry has been told.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// `(service, id, body)` of each registration.
    registrations: Vec<(String, String, RegisterBody)>,
    /// `(service, id, X-Lease)` of each deregistration.
    deletes: Vec<(String, String, Option<String>)>,
}

type Shared = Arc<watch::Sender<Seen>>;

async fn fake_registry() -> (String, Shared) {
    let seen: Shared = Arc::new(watch::Sender::new(Seen::default()));
    let app = Router::new()
        .route(
            "/v1/services/{service}/instances/{id}",
            put(
                |State(seen): State<Shared>,
                 Path((service, id)): Path<(String, String)>,
                 Json(body): Json<RegisterBody>| async move {
                    let ttl = body.ttl_secs;
                    seen.send_modify(|s| s.registrations.push((service, id, body)));
                    Json(json!({ "lease": "the-lease", "ttl_secs": ttl }))
                },
            )
            .delete(
                |State(seen): State<Shared>,
                 Path((service, id)): Path<(String, String)>,
                 headers: HeaderMap| async move {
                    let lease = headers
                        .get("x-lease")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    seen.send_modify(|s| s.deletes.push((service, id, lease)));
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/v1/services/{service}/instances/{id}/heartbeat",
            put(|| async { Json(json!({ "ttl_secs": 60 })) }),
        )
        .with_state(Arc::clone(&seen));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind registry");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

async fn wait_for(seen: &Shared, what: &str, condition: impl FnMut(&Seen) -> bool) -> Seen {
    let mut rx = seen.subscribe();
    match tokio::time::timeout(PATIENCE, rx.wait_for(condition)).await {
        Ok(Ok(seen)) => seen.clone(),
        _ => panic!("timed out waiting for {what}; saw {:#?}", seen.borrow()),
    }
}

/// A running instance: its address, how to stop it, and its `run` task.
struct Instance {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start_instance(args: &[&str]) -> Instance {
    let config = Config::try_parse_from(
        ["ratings-service", "--listen", "127.0.0.1:0"]
            .into_iter()
            .chain(args.iter().copied()),
    )
    .expect("flags parse");
    let listener = TcpListener::bind(config.listen_addr()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, config, async {
        let _ = stopped.await;
    }));
    Instance { addr, stop, task }
}

impl Instance {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = reqwest::get(format!("http://{}{path}", self.addr))
            .await
            .expect("instance answers");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    async fn shut_down(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("run returns after shutdown")
            .expect("run did not panic")
    }
}

#[tokio::test]
async fn registers_the_bound_address_serves_and_deregisters_on_shutdown() {
    let (registry, seen) = fake_registry().await;
    let instance = start_instance(&["--instance", "4", "--registry", &registry]).await;

    let registered = wait_for(&seen, "a registration", |s| !s.registrations.is_empty()).await;
    let (service, id, body) = &registered.registrations[0];
    assert_eq!((service.as_str(), id.as_str()), ("ratings", "4"));
    assert_eq!(body.address, format!("http://{}", instance.addr));
    assert_ne!(instance.addr.port(), 0);
    assert_eq!(body.metadata.get("instance").map(String::as_str), Some("4"));
    assert_eq!(body.ttl_secs, 120);

    let (status, rating) = instance.get("/ratings/gizmo").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        rating,
        json!({ "item_id": "gizmo", "rating": 5, "instance": 4 })
    );

    let addr = instance.addr;
    instance.shut_down().await.expect("clean shutdown");
    let seen = seen.borrow().clone();
    assert_eq!(
        seen.deletes,
        [(
            "ratings".to_owned(),
            "4".to_owned(),
            Some("the-lease".to_owned())
        )]
    );
    assert!(
        reqwest::get(format!("http://{addr}/health")).await.is_err(),
        "still listening after shutdown"
    );
}

#[tokio::test]
async fn serves_while_the_registry_is_down_and_still_shuts_down_promptly() {
    // A port that nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let registry = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);

    let instance = start_instance(&["--registry", &registry]).await;
    let (status, health) = instance.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health, json!({ "status": "ok", "instance": 1 }));

    let started = tokio::time::Instant::now();
    instance.shut_down().await.expect("clean shutdown");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn advertises_the_override_and_skips_the_registry_when_told() {
    let (registry, seen) = fake_registry().await;
    let instance = start_instance(&[
        "--registry",
        &registry,
        "--service",
        "ratings-canary",
        "--advertise",
        "http://ratings.example:9000/",
    ])
    .await;
    let registered = wait_for(&seen, "a registration", |s| !s.registrations.is_empty()).await;
    assert_eq!(registered.registrations[0].0, "ratings-canary");
    assert_eq!(
        registered.registrations[0].2.address,
        "http://ratings.example:9000"
    );
    instance.shut_down().await.expect("clean shutdown");

    let (registry, seen) = fake_registry().await;
    let instance = start_instance(&["--registry", &registry, "--no-register"]).await;
    assert_eq!(instance.get("/health").await.0, StatusCode::OK);
    instance.shut_down().await.expect("clean shutdown");
    let seen = seen.borrow().clone();
    assert!(
        seen.registrations.is_empty() && seen.deletes.is_empty(),
        "{seen:?}"
    );
}

#[tokio::test]
async fn refuses_a_remote_listener_without_allow_remote() {
    let listener = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let config = Config::try_parse_from([
        "ratings-service",
        "--no-register",
        "--listen",
        "127.0.0.1:0",
    ])
    .expect("flags parse");
    let error = run(listener, config, std::future::pending())
        .await
        .expect_err("0.0.0.0 must be refused");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("--allow-remote"), "{error}");
}
