//! The admin endpoint, mounted only with `--admin`: read and change the injected faults.
//!
//! - `GET /admin/faults` answers the current faults,
//!   `{"latency_ms": 0, "error_rate": 0.0, "garbage_rate": 0.0, "throttle_rate": 0.0}`.
//! - `PUT /admin/faults` with any of those fields validates them (rates in 0..=1, latency
//!   at most 60 s) and applies them at once; a bad body is a 400 and changes nothing.
//!
//! With `--admin-token`, both need `Authorization: Bearer <token>` (compared in constant
//! time), else 401.

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::routing::get;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::faults::{Faults, FaultsUpdate};
use crate::state::{AdminAccess, AppState};

/// The largest admin request body accepted.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The admin routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/faults", get(get_faults).put(put_faults))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Proof that the request may use the admin endpoint.
struct AdminAuthorized;

impl FromRequestParts<AppState> for AdminAuthorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match state.admin() {
            AdminAccess::Open => Ok(Self),
            AdminAccess::Token(expected) => {
                let given = parts
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim());
                match given {
                    Some(token) if bool::from(token.as_bytes().ct_eq(expected.as_bytes())) => {
                        Ok(Self)
                    }
                    _ => Err(ApiError::Unauthorized),
                }
            }
            // The routes are not mounted then; refuse all the same if that ever changes.
            AdminAccess::Disabled => Err(ApiError::NoRoute {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
            }),
        }
    }
}

/// `GET /admin/faults`.
async fn get_faults(_: AdminAuthorized, State(state): State<AppState>) -> Json<Faults> {
    Json(state.faults().get())
}

/// `PUT /admin/faults`.
async fn put_faults(
    _: AdminAuthorized,
    State(state): State<AppState>,
    update: Result<Json<FaultsUpdate>, JsonRejection>,
) -> Result<Json<Faults>, ApiError> {
    let Json(update) = update.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let faults = state
        .faults()
        .update(update)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let instance = state.instance();
    tracing::info!(
        instance,
        latency_ms = faults.latency_ms,
        error_rate = faults.error_rate,
        garbage_rate = faults.garbage_rate,
        throttle_rate = faults.throttle_rate,
        "instance {instance} faults changed"
    );
    Ok(Json(faults))
}
