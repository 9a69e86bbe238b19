//! The one error type handlers return, rendered as `{"error": "<what was wrong>"}`.
//!
//! Every variant maps to a 4xx status with a message about the request, never about the
//! server's internals. A registration refused because the id is held under a live lease
//! (409) also says when to retry: `"retry_after_secs": N` in the body and `Retry-After: N`. axum's own rejections (bad JSON, missing content type, oversized
//! body, bad path or query) are converted here too, so clients see one error shape.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::{StoreError, whole_seconds_up};
use crate::validate::ValidationError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The input broke a rule (name, address, metadata, TTL, query parameter).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// axum could not extract the request (body, content type, path or query); the status
    /// is the one axum chose, except that JSON of the wrong shape is a plain 400.
    #[error("{message}")]
    Rejected {
        /// Status to answer with.
        status: StatusCode,
        /// What was wrong, from the rejection.
        message: String,
    },
    /// The bearer token was missing or wrong.
    #[error("missing or wrong bearer token (Authorization: Bearer <token>)")]
    Unauthorized,
    /// The store refused the operation.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Too many blocking queries are already waiting.
    #[error("too many blocking queries in progress; retry later or query without index")]
    TooManyBlockingQueries,
    /// This client already has as many blocking queries waiting as it may.
    #[error(
        "this client already has {limit} blocking queries waiting; \
         retry later or query without index"
    )]
    TooManyBlockingQueriesFromClient {
        /// The per-client limit.
        limit: usize,
    },
    /// No route matches the path.
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// The path exists but not for this method.
    #[error("method {0} is not allowed on this endpoint")]
    MethodNotAllowed(String),
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Rejected { status, .. } => *status,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Store(error) => match error {
                StoreError::UnknownInstance { .. } => StatusCode::NOT_FOUND,
                StoreError::LeaseMismatch => StatusCode::FORBIDDEN,
                StoreError::LeaseHeld { .. } => StatusCode::CONFLICT,
                StoreError::TooManyInstances { .. } | StoreError::TooManyServices { .. } => {
                    StatusCode::TOO_MANY_REQUESTS
                }
                StoreError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
            Self::TooManyBlockingQueries | Self::TooManyBlockingQueriesFromClient { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// When the client may retry with a chance of success, if the error says: the time
    /// left on the lease that holds the id, for [`StoreError::LeaseHeld`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Store(StoreError::LeaseHeld { retry_after }) => *retry_after,
            _ => None,
        }
    }

    fn rejected(status: StatusCode, message: String) -> Self {
        // axum answers well-formed JSON of the wrong shape with 422; our contract is 400.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        Self::Rejected { status, message }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
struct ErrorBody {
    /// What was wrong.
    error: String,
    /// Whole seconds (rounded up) after which a retry may succeed; only on a 409 for an id
    /// held under a live lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_secs: Option<u64>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        }
        let retry_after_secs = self.retry_after().map(whole_seconds_up);
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
                retry_after_secs,
            }),
        )
            .into_response();
        if let Some(secs) = retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read, so this connection cannot carry another
            // request: tell the client not to reuse it.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::rejected(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        // Path rejections that are not the client's fault (a route/extractor mismatch)
        // would be 500s; they cannot happen with our routes, and the text is still safe.
        Self::rejected(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::rejected(rejection.status(), rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn render(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn store_errors_map_to_the_documented_statuses() {
        let cases = [
            (
                StoreError::UnknownInstance {
                    service: "s".into(),
                    id: "i".into(),
                },
                404,
            ),
            (StoreError::LeaseMismatch, 403),
            (StoreError::LeaseHeld { retry_after: None }, 409),
            (StoreError::TooManyInstances { limit: 1 }, 429),
            (StoreError::TooManyServices { limit: 1 }, 429),
        ];
        for (error, status) in cases {
            let message = error.to_string();
            let (got, body) = render(ApiError::Store(error)).await;
            assert_eq!(got.as_u16(), status);
            assert_eq!(body, serde_json::json!({ "error": message }));
        }
    }

    #[tokio::test]
    async fn a_held_lease_says_when_to_retry_in_the_body_and_the_header() {
        let error = ApiError::Store(StoreError::LeaseHeld {
            retry_after: Some(Duration::from_millis(7_001)),
        });
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()[header::RETRY_AFTER], "8");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["retry_after_secs"], 8);
        let message = body["error"].as_str().unwrap();
        assert!(message.contains("live lease"), "{message}");
        assert!(message.contains("X-Lease"), "{message}");
        assert!(message.contains("expires in 8 s"), "{message}");
    }

    #[tokio::test]
    async fn unauthorized_asks_for_a_bearer_token() {
        let response = ApiError::Unauthorized.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
