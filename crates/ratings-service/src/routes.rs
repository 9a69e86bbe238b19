//! The public routes: `GET /ratings/{item_id}`, `GET /health`, `GET /metrics`, the gRPC
//! API under `/ratings.v1.Ratings/` (see [`crate::grpc`]), and JSON 404/405 answers for
//! everything else.
//!
//! Every route runs under [`service_telemetry::observe`]: requests are counted per route in
//! `/metrics`, and a request that arrives with a valid W3C `traceparent` (the market sends
//! one on each call) runs in a `request{trace_id=...}` span, so its log line names the
//! trace. A malformed `traceparent` is ignored.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use service_telemetry::Observer;

use crate::admin;
use crate::catalog::validate_item_id;
use crate::error::ApiError;
use crate::faults::Injected;
use crate::state::{AdminAccess, AppState};

/// The answer to `GET /ratings/{item_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatingAnswer {
    /// The item asked about.
    pub item_id: String,
    /// Its star rating, 1..=5.
    pub rating: u8,
    /// The instance that answered.
    pub instance: u16,
}

/// The answer to `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthAnswer {
    /// Always `ok` when the instance answers at all.
    pub status: String,
    /// The instance that answered.
    pub instance: u16,
}

/// The service's router. Admin routes exist only when the state enables them.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/ratings/{item_id}", get(rating))
        .route("/ratings/", get(empty_item_id))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route_service(
            &format!("/{}/{{*method}}", ratings_api::SERVICE_NAME),
            crate::grpc::service(state.clone()),
        );
    if *state.admin() != AdminAccess::Disabled {
        router = router.merge(admin::routes());
    }
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Observer::continuing(),
            service_telemetry::observe,
        ))
        .with_state(state)
}

/// `GET /metrics`: this process's metrics in the Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    service_telemetry::prometheus::render(state.metrics())
}

/// `GET /ratings/{item_id}`: validates the id, suffers the injected faults, answers.
async fn rating(
    State(state): State<AppState>,
    item: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(item) = item.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    validate_item_id(&item).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let instance = state.instance();

    match state.suffer_faults(&item).await {
        Injected::Nothing => {}
        Injected::Error => return Err(ApiError::InjectedFault(instance)),
        Injected::Throttled => return Err(ApiError::Throttled(instance)),
        Injected::Garbage => return Ok(garbage(instance)),
    }

    let Some(rating) = state.catalog().rating(&item) else {
        return Err(ApiError::UnknownItem(item));
    };
    tracing::info!(
        instance,
        item,
        "instance {instance} served rating for {item}"
    );
    Ok(Json(RatingAnswer {
        item_id: item,
        rating,
        instance,
    })
    .into_response())
}

/// A 200 that claims to be JSON and is not, to exercise clients' decoding failures.
fn garbage(instance: u16) -> Response {
    let body = format!("}}{{ garbage from ratings instance {instance} <<<");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}

/// `GET /ratings/`: an empty item id.
async fn empty_item_id() -> ApiError {
    ApiError::BadRequest(crate::catalog::ItemIdError::Empty.to_string())
}

/// `GET /health`.
async fn health(State(state): State<AppState>) -> Json<HealthAnswer> {
    Json(HealthAnswer {
        status: "ok".to_owned(),
        instance: state.instance(),
    })
}

/// Any unknown route.
async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// A known route with the wrong method.
async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}
