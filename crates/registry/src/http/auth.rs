//! Optional bearer-token check for the `/v1` API.
//!
//! With `--token` set, every write (`PUT`, `DELETE`, ...) needs
//! `Authorization: Bearer <token>`; with `--protect-reads` too, so do reads. Without a
//! token everything is open. `/health` is never behind this layer. Tokens are compared in
//! constant time.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// Middleware: lets the request through if it needs no token or carries the right one.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = state.token() else {
        return next.run(request).await;
    };
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    if is_read && !state.protect_reads() {
        return next.run(request).await;
    }
    let authorized = bearer(request.headers())
        .is_some_and(|presented| bool::from(token.as_bytes().ct_eq(presented.as_bytes())));
    if authorized {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// The token from `Authorization: Bearer <token>` (scheme matched case-insensitively).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_parses_the_scheme_case_insensitively() {
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&headers("Bearer")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
