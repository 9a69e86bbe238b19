//! Request handlers, one per endpoint.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::AppState;
use super::error::ApiError;
use super::extract::{self, ApiJson, InstancePath, PeerIp, ServicePath, WatchQuery};
use crate::store::{Metadata, Registration, Snapshot};
use crate::validate;

/// Response header carrying the service index of a read.
pub const INDEX_HEADER: HeaderName = HeaderName::from_static("x-registry-index");

/// Response header carrying the store's epoch (see [`crate::store`]'s docs on epochs) on
/// every read of a service: a client that sees it change knows the registry's
/// registrations may have been lost (a restarted memory registry), whatever the index did.
pub const EPOCH_HEADER: HeaderName = HeaderName::from_static("x-registry-epoch");

/// Body of `PUT /v1/services/{service}/instances/{id}`.
#[derive(Debug, Deserialize)]
pub struct RegisterRequest {
    /// Base URL of the instance.
    address: String,
    /// Optional metadata (absent or `null` means none).
    metadata: Option<Metadata>,
    /// Optional lease TTL in seconds (absent means the default).
    ttl_secs: Option<u64>,
}

/// Answer to a registration.
#[derive(Debug, Serialize)]
pub struct RegisterResponse {
    /// The lease secret to send as `X-Lease`.
    lease: String,
    /// Heartbeat within this many seconds.
    ttl_secs: u64,
}

/// Answer to a heartbeat.
#[derive(Debug, Serialize)]
pub struct HeartbeatResponse {
    /// The lease now lives this many seconds more.
    ttl_secs: u64,
}

/// Answer to `GET /v1/services`.
#[derive(Debug, Serialize)]
pub struct ServicesResponse {
    /// Services with at least one instance, sorted.
    services: Vec<String>,
}

/// `GET /health`.
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /v1/services`.
pub async fn list_services(State(state): State<AppState>) -> Json<ServicesResponse> {
    Json(ServicesResponse {
        services: state.store().services(),
    })
}

/// `GET /v1/services/{service}[?index=N[&wait=D][&epoch=E]]`.
///
/// A query that would block needs a slot of its client (peer IP) and a global one; without
/// either it is refused with 429 at once. One whose `epoch` is not this store's answers at
/// once: its index belongs to another history and says nothing here.
pub async fn get_service(
    State(state): State<AppState>,
    ServicePath(service): ServicePath,
    PeerIp(peer): PeerIp,
    query: WatchQuery,
) -> Result<Response, ApiError> {
    let store = state.store();
    let epoch = store.epoch();
    let current = store.snapshot(&service);
    let Some(index) = query.index else {
        return Ok(snapshot_response(&current, epoch));
    };
    let wait = query.wait.unwrap_or(state.max_wait()).min(state.max_wait());
    let other_epoch = query.epoch.is_some_and(|theirs| theirs != epoch);
    if current.index != index || other_epoch || wait.is_zero() || state.shutdown().is_triggered() {
        return Ok(snapshot_response(&current, epoch));
    }
    let _client_permit = match peer {
        Some(peer) => Some(state.per_client().try_acquire(peer).ok_or(
            ApiError::TooManyBlockingQueriesFromClient {
                limit: state.per_client().max(),
            },
        )?),
        None => None,
    };
    let _permit = state
        .blocking_permits()
        .try_acquire()
        .map_err(|_| ApiError::TooManyBlockingQueries)?;
    let deadline = Instant::now() + wait;
    let snapshot = tokio::select! {
        snapshot = store.wait_for_change(&service, index, deadline) => snapshot,
        () = state.shutdown().triggered() => store.snapshot(&service),
    };
    Ok(snapshot_response(&snapshot, epoch))
}

fn snapshot_response(snapshot: &Snapshot, epoch: u64) -> Response {
    (
        [
            (INDEX_HEADER, HeaderValue::from(snapshot.index)),
            (EPOCH_HEADER, HeaderValue::from(epoch)),
        ],
        Json(snapshot),
    )
        .into_response()
}

/// `PUT /v1/services/{service}/instances/{id}`.
pub async fn register(
    State(state): State<AppState>,
    InstancePath { service, id }: InstancePath,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<Json<RegisterResponse>, ApiError> {
    validate::address(&request.address)?;
    let metadata = request.metadata.unwrap_or_default();
    validate::metadata(&metadata)?;
    let ttl = state.ttl_policy().resolve(request.ttl_secs)?;
    let registered = state
        .store()
        .register(
            Registration {
                service,
                id,
                address: request.address,
                metadata,
                ttl,
            },
            extract::lease(&headers),
        )
        .await?;
    Ok(Json(RegisterResponse {
        lease: registered.lease.as_str().to_owned(),
        ttl_secs: registered.ttl.as_secs(),
    }))
}

/// `PUT /v1/services/{service}/instances/{id}/heartbeat`.
pub async fn heartbeat(
    State(state): State<AppState>,
    InstancePath { service, id }: InstancePath,
    headers: HeaderMap,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let ttl = state
        .store()
        .heartbeat(&service, &id, extract::lease(&headers))
        .await?;
    Ok(Json(HeartbeatResponse {
        ttl_secs: ttl.as_secs(),
    }))
}

/// `DELETE /v1/services/{service}/instances/{id}`: 204 on success.
pub async fn deregister(
    State(state): State<AppState>,
    InstancePath { service, id }: InstancePath,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state
        .store()
        .deregister(&service, &id, extract::lease(&headers))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Fallback for paths no route matches.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}

/// Fallback for a known path with an unsupported method.
pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}
