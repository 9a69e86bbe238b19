//! What can go wrong in a request, and how it is shown.
//!
//! [`AppError`] is the one error enum of the handlers. As JSON (the API) it answers
//! `{"error": "<message>"}`; wrapped in [`PageError`] (the HTML pages) it answers a small
//! error page. Messages name the visitor's mistake and never include internals. A ratings
//! outage is not an error at all: it becomes "no rating yet" (see [`crate::ratings`]).

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::cart::{CartError, MAX_QUANTITY};
use crate::html;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The item id is not in the catalog.
    #[error("unknown item")]
    UnknownItem,
    /// The cart already holds the most of this item it may.
    #[error("a cart holds at most {MAX_QUANTITY} of one item")]
    QuantityLimit,
    /// The request body could not be read as the form or JSON the route expects.
    #[error("{message}")]
    BadBody {
        /// 400, 413, 415 or 422, as the extractor decided.
        status: StatusCode,
        /// What was wrong, from the extractor (it describes the input, not the server).
        message: String,
    },
    /// No route has this path.
    #[error("no such page")]
    NotFound,
}

impl AppError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::UnknownItem => StatusCode::BAD_REQUEST,
            AppError::QuantityLimit => StatusCode::CONFLICT,
            AppError::BadBody { status, .. } => *status,
            AppError::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

impl From<CartError> for AppError {
    fn from(error: CartError) -> Self {
        match error {
            CartError::QuantityLimit => AppError::QuantityLimit,
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        AppError::BadBody {
            status: rejection.status(),
            message: rejection.body_text(),
        }
    }
}

impl From<FormRejection> for AppError {
    fn from(rejection: FormRejection) -> Self {
        AppError::BadBody {
            status: rejection.status(),
            message: rejection.body_text(),
        }
    }
}

impl IntoResponse for AppError {
    /// `{"error": "<message>"}` with the error's status.
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}

/// An [`AppError`] shown as an HTML page, for the routes a browser uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError {
    /// What went wrong.
    pub error: AppError,
    /// Items in the visitor's cart, for the page header.
    pub cart_count: u32,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let page = html::error(status, &self.error.to_string(), self.cart_count);
        (status, Html(page)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_the_mistake() {
        assert_eq!(AppError::UnknownItem.status(), StatusCode::BAD_REQUEST);
        assert_eq!(AppError::QuantityLimit.status(), StatusCode::CONFLICT);
        assert_eq!(AppError::NotFound.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            AppError::from(CartError::QuantityLimit),
            AppError::QuantityLimit
        );
    }

    #[test]
    fn page_errors_keep_the_status_and_escape_the_message() {
        let response = PageError {
            error: AppError::BadBody {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: "<script>".into(),
            },
            cart_count: 0,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let page = html::error(StatusCode::BAD_REQUEST, "<script>", 0);
        assert!(
            page.contains("&lt;script&gt;") && !page.contains("<script>"),
            "{page}"
        );
    }
}
