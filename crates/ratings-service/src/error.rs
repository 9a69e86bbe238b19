//! Every error answer, as `{"error": "..."}` with the right status.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::faults::THROTTLE_RETRY_AFTER_SECS;

/// An error answer. Messages name the caller's mistake and never leak internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad item id, bad admin body, ...).
    #[error("{0}")]
    BadRequest(String),
    /// 401: the admin endpoint needs a valid bearer token.
    #[error("missing or wrong admin token")]
    Unauthorized,
    /// 404: the item has no rating.
    #[error("no rating for item {0}")]
    UnknownItem(String),
    /// 404: no route matches.
    #[error("no route for {method} {path}")]
    NoRoute {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// 405: the route exists but not for this method.
    #[error("method {0} not allowed here")]
    MethodNotAllowed(String),
    /// 500: a fault injected on purpose (see `--error-rate`).
    #[error("injected fault: instance {0} failed on purpose")]
    InjectedFault(u16),
    /// 429 with `Retry-After`: back-pressure injected on purpose (see `--throttle-rate`).
    #[error("instance {0} is throttling: retry after {THROTTLE_RETRY_AFTER_SECS} s")]
    Throttled(u16),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::UnknownItem(_) | Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::InjectedFault(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.to_string() }));
        if self == Self::Unauthorized {
            (self.status(), [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else if let Self::Throttled(_) = self {
            let retry_after = THROTTLE_RETRY_AFTER_SECS.to_string();
            (self.status(), [(header::RETRY_AFTER, retry_after)], body).into_response()
        } else {
            (self.status(), body).into_response()
        }
    }
}
