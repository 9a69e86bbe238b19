//! The registration against a small fake registry on a real socket: the wire format,
//! heartbeats, re-registration, outages and deregistration.

#![allow(clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::heartbeat::Timing;
use super::{Registration, RegistrationConfig, RegistrationError};

/// How long a test waits for a condition before failing.
const PATIENCE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Deserialize)]
struct RegisterBody {
    address: String,
    metadata: BTreeMap<String, String>,
    ttl_secs: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    body: RegisterBody,
    lease: String,
}

/// What the fake registry has seen and holds.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// `service/id` to entry; cleared by a restart.
    instances: HashMap<String, Entry>,
    registrations: usize,
    /// The `X-Lease` each registration presented.
    presented: Vec<Option<String>>,
    heartbeats: usize,
    /// `(service/id, X-Lease)` of each DELETE.
    deletes: Vec<(String, Option<String>)>,
    unauthorized: usize,
    next_lease: usize,
}

#[derive(Clone)]
struct FakeState {
    seen: Arc<watch::Sender<Seen>>,
    token: Option<String>,
}

/// A registry in the test process, speaking just enough of the protocol.
struct FakeRegistry {
    addr: SocketAddr,
    state: FakeState,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl FakeRegistry {
    async fn start(token: Option<&str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = FakeState {
            seen: Arc::new(watch::Sender::new(Seen::default())),
            token: token.map(str::to_owned),
        };
        let mut fake = Self {
            addr,
            state,
            server: None,
        };
        fake.serve(listener);
        fake
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = Router::new()
            .route(
                "/v1/services/{service}/instances/{id}",
                put(register).delete(deregister),
            )
            .route(
                "/v1/services/{service}/instances/{id}/heartbeat",
                put(heartbeat),
            )
            .with_state(self.state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        self.server = Some((stop, task));
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Takes the registry down: no listener, no connections.
    async fn stop(&mut self) {
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }

    /// Brings it back on the same port with an empty store, like a restarted registry.
    async fn restart(&mut self) {
        self.stop().await;
        self.state.seen.send_modify(|seen| seen.instances.clear());
        let listener = TcpListener::bind(self.addr).await.expect("rebind");
        self.serve(listener);
    }

    fn forget(&self, key: &str) {
        self.state.seen.send_modify(|seen| {
            seen.instances.remove(key);
        });
    }

    fn seen(&self) -> Seen {
        self.state.seen.borrow().clone()
    }

    async fn wait_for(&self, what: &str, condition: impl FnMut(&Seen) -> bool) -> Seen {
        let mut seen = self.state.seen.subscribe();
        match tokio::time::timeout(PATIENCE, seen.wait_for(condition)).await {
            Ok(Ok(seen)) => seen.clone(),
            _ => panic!(
                "timed out waiting for {what}; registry saw {:#?}",
                self.seen()
            ),
        }
    }
}

fn json_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

fn authorized(state: &FakeState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    let expected = format!("Bearer {token}");
    let ok = headers
        .get("authorization")
        .is_some_and(|value| value.as_bytes() == expected.as_bytes());
    if !ok {
        state.seen.send_modify(|seen| seen.unauthorized += 1);
    }
    ok
}

fn lease_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-lease")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn register(
    State(state): State<FakeState>,
    Path((service, id)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<RegisterBody>,
) -> Response {
    if !authorized(&state, &headers) {
        return json_error(StatusCode::UNAUTHORIZED, "missing or wrong token");
    }
    let ttl_secs = body.ttl_secs;
    let mut lease = String::new();
    state.seen.send_modify(|seen| {
        seen.next_lease += 1;
        lease = format!("lease-{}", seen.next_lease);
        seen.registrations += 1;
        seen.presented.push(lease_header(&headers));
        seen.instances.insert(
            format!("{service}/{id}"),
            Entry {
                body,
                lease: lease.clone(),
            },
        );
    });
    Json(json!({ "lease": lease, "ttl_secs": ttl_secs })).into_response()
}

/// Compares the `X-Lease` with the stored one: `Err` is the status and message to answer.
fn check_lease(
    state: &FakeState,
    key: &str,
    headers: &HeaderMap,
) -> Result<u64, (StatusCode, &'static str)> {
    let seen = state.seen.borrow();
    let Some(entry) = seen.instances.get(key) else {
        return Err((StatusCode::NOT_FOUND, "unknown instance"));
    };
    if lease_header(headers).as_deref() != Some(entry.lease.as_str()) {
        return Err((StatusCode::FORBIDDEN, "wrong lease"));
    }
    Ok(entry.body.ttl_secs)
}

async fn heartbeat(
    State(state): State<FakeState>,
    Path((service, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return json_error(StatusCode::UNAUTHORIZED, "missing or wrong token");
    }
    let answer = check_lease(&state, &format!("{service}/{id}"), &headers);
    state.seen.send_modify(|seen| seen.heartbeats += 1);
    match answer {
        Ok(ttl_secs) => Json(json!({ "ttl_secs": ttl_secs })).into_response(),
        Err((status, error)) => json_error(status, error),
    }
}

async fn deregister(
    State(state): State<FakeState>,
    Path((service, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return json_error(StatusCode::UNAUTHORIZED, "missing or wrong token");
    }
    let key = format!("{service}/{id}");
    let answer = check_lease(&state, &key, &headers);
    state.seen.send_modify(|seen| {
        seen.deletes.push((key.clone(), lease_header(&headers)));
        if answer.is_ok() {
            seen.instances.remove(&key);
        }
    });
    match answer {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err((status, error)) => json_error(status, error),
    }
}

/// Heartbeats every 100 ms, retries every 10..50 ms.
fn fast() -> Timing {
    Timing {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        jitter: 0.0,
        request_timeout: Duration::from_secs(1),
        ..Timing::for_ttl(Duration::from_millis(300))
    }
}

fn config(registry: &FakeRegistry) -> RegistrationConfig {
    let mut config =
        RegistrationConfig::new(registry.url(), "ratings", "1", "http://127.0.0.1:8001");
    config.metadata.insert("instance".into(), "1".into());
    config.ttl = Duration::from_millis(300);
    config
}

async fn registered(registration: &Registration) {
    tokio::time::timeout(PATIENCE, registration.registered())
        .await
        .expect("registered in time");
}

#[tokio::test]
async fn registers_then_heartbeats_with_the_lease() {
    let registry = FakeRegistry::start(None).await;
    let registration = Registration::start_with(config(&registry), fast());
    registered(&registration).await;

    let seen = registry.seen();
    let entry = &seen.instances["ratings/1"];
    assert_eq!(entry.body.address, "http://127.0.0.1:8001");
    assert_eq!(
        entry.body.metadata.get("instance").map(String::as_str),
        Some("1")
    );
    assert_eq!(entry.body.ttl_secs, 1, "300 ms rounds up to 1 s");

    // Heartbeats carry the right lease (a wrong one would make the fake answer 403 and the
    // registration count go up).
    let seen = registry
        .wait_for("3 heartbeats", |s| s.heartbeats >= 3)
        .await;
    assert_eq!(seen.registrations, 1);
}

#[tokio::test]
async fn registers_again_after_a_404() {
    let registry = FakeRegistry::start(None).await;
    let registration = Registration::start_with(config(&registry), fast());
    registered(&registration).await;

    registry.forget("ratings/1");
    let seen = registry
        .wait_for("a second registration", |s| {
            s.registrations == 2 && s.instances.contains_key("ratings/1")
        })
        .await;
    assert_eq!(seen.instances["ratings/1"].lease, "lease-2");
    assert_eq!(
        seen.presented,
        [None, Some("lease-1".to_owned())],
        "the re-registration presents the lease it held"
    );
    registry
        .wait_for("heartbeats on the new lease", |s| {
            s.heartbeats >= seen.heartbeats + 2
        })
        .await;
    assert_eq!(registry.seen().registrations, 2);
}

#[tokio::test]
async fn survives_the_registry_going_down_and_coming_back_empty() {
    let mut registry = FakeRegistry::start(None).await;
    let registration = Registration::start_with(config(&registry), fast());
    registered(&registration).await;

    registry.stop().await;
    // The outage itself: several heartbeat intervals with nobody listening.
    tokio::time::sleep(Duration::from_millis(400)).await;
    registry.restart().await;

    let seen = registry
        .wait_for("registration after the restart", |s| {
            s.instances.contains_key("ratings/1")
        })
        .await;
    assert_eq!(seen.registrations, 2);
    assert_eq!(
        seen.instances["ratings/1"].body.address,
        "http://127.0.0.1:8001"
    );

    // And the new lease is the one deregistration uses.
    assert!(registration.deregister().await.is_ok());
    let seen = registry.seen();
    assert_eq!(
        seen.deletes,
        [("ratings/1".to_owned(), Some("lease-2".to_owned()))]
    );
}

#[tokio::test]
async fn registers_while_the_registry_starts_late() {
    let mut registry = FakeRegistry::start(None).await;
    registry.stop().await;
    let registration = Registration::start_with(config(&registry), fast());
    tokio::time::sleep(Duration::from_millis(200)).await;
    registry.restart().await;
    registered(&registration).await;
    assert!(registry.seen().instances.contains_key("ratings/1"));
}

#[tokio::test]
async fn deregister_sends_delete_with_the_lease_and_stops_heartbeats() {
    let registry = FakeRegistry::start(None).await;
    let registration = Registration::start_with(config(&registry), fast());
    registered(&registration).await;
    let lease = registry.seen().instances["ratings/1"].lease.clone();

    assert!(registration.deregister().await.is_ok());
    let seen = registry.seen();
    assert_eq!(seen.deletes, [("ratings/1".to_owned(), Some(lease))]);
    assert!(seen.instances.is_empty());

    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = registry.seen();
    assert_eq!(later.heartbeats, seen.heartbeats, "heartbeats went on");
    assert_eq!(later.registrations, 1);
}

#[tokio::test]
async fn sends_the_bearer_token_on_every_write() {
    let registry = FakeRegistry::start(Some("s3cret")).await;
    let mut config = config(&registry);
    config.token = Some("s3cret".into());
    let registration = Registration::start_with(config, fast());
    registered(&registration).await;
    registry
        .wait_for("2 heartbeats", |s| s.heartbeats >= 2)
        .await;
    assert!(registration.deregister().await.is_ok());
    let seen = registry.seen();
    assert_eq!(seen.unauthorized, 0);
    assert!(seen.instances.is_empty());
}

#[tokio::test]
async fn a_wrong_token_never_registers_and_deregister_has_nothing_to_do() {
    let registry = FakeRegistry::start(Some("s3cret")).await;
    let mut config = config(&registry);
    config.token = Some("wrong".into());
    let registration = Registration::start_with(config, fast());
    registry
        .wait_for("several refused attempts", |s| s.unauthorized >= 3)
        .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(50), registration.registered())
            .await
            .is_err()
    );
    assert!(registration.deregister().await.is_ok());
    assert!(registry.seen().deletes.is_empty());
}

#[tokio::test]
async fn deregister_reports_an_unreachable_registry_within_its_bound() {
    let mut registry = FakeRegistry::start(None).await;
    let registration = Registration::start_with(config(&registry), fast());
    registered(&registration).await;
    registry.stop().await;

    let started = tokio::time::Instant::now();
    let result = registration.deregister().await;
    assert!(
        matches!(
            result,
            Err(RegistrationError::Unreachable { .. } | RegistrationError::Timeout { .. })
        ),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_invalid_config_is_reported_not_panicked() {
    let config = RegistrationConfig::new("not a url", "ratings", "1", "http://127.0.0.1:1");
    assert!(matches!(
        config.validate(),
        Err(RegistrationError::InvalidConfig(_))
    ));
    let registration = Registration::start(config);
    assert!(
        tokio::time::timeout(Duration::from_millis(20), registration.registered())
            .await
            .is_err()
    );
    assert!(matches!(
        registration.deregister().await,
        Err(RegistrationError::InvalidConfig(_))
    ));
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    let config =
        RegistrationConfig::new("http://127.0.0.1:1", "ratings", "1", "http://127.0.0.1:2");
    let registration = Registration::start(config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(registration.deregister());
    assert!(
        matches!(result, Err(RegistrationError::InvalidConfig(_))),
        "{result:?}"
    );
}

#[test]
fn debug_output_hides_the_token() {
    let mut config =
        RegistrationConfig::new("http://127.0.0.1:1", "ratings", "1", "http://127.0.0.1:2");
    config.token = Some("s3cret".into());
    assert!(!format!("{config:?}").contains("s3cret"));
}
