//! Knowing a visitor by their cart cookie.
//!
//! The [`Visitor`] extractor reads `market_cart=<id>` from the `Cookie` header. A visitor
//! without one (or with a malformed one) gets a fresh random id, and [`Visitor::respond`]
//! adds the `Set-Cookie` header to whatever the handler answers, so the id sticks from the
//! first page load on. The cookie is `HttpOnly` and `SameSite=Lax`, so scripts cannot read it
//! and other sites' forms cannot post to the cart with it.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::cart::CartId;

/// The cookie that carries the cart id.
pub const CART_COOKIE: &str = "market_cart";

/// How long the browser keeps the cookie: 30 days.
const COOKIE_MAX_AGE_SECS: u64 = 30 * 24 * 60 * 60;

/// The visitor behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visitor {
    /// Their cart's id, from the cookie or freshly made.
    pub cart: CartId,
    /// Whether the id is fresh, so the answer must set the cookie.
    pub is_new: bool,
}

impl Visitor {
    /// The visitor named by these request headers' cart cookie, or a new one.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let from_cookie = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == CART_COOKIE)
            .and_then(|(_, value)| CartId::parse(value.trim_matches('"')));
        match from_cookie {
            Some(cart) => Self {
                cart,
                is_new: false,
            },
            None => Self {
                cart: CartId::random(),
                is_new: true,
            },
        }
    }

    /// The `Set-Cookie` value for a new visitor; `None` when they already have the cookie.
    pub fn set_cookie(&self) -> Option<HeaderValue> {
        if !self.is_new {
            return None;
        }
        let cookie = format!(
            "{CART_COOKIE}={}; Path=/; Max-Age={COOKIE_MAX_AGE_SECS}; HttpOnly; SameSite=Lax",
            self.cart
        );
        // The id is hex digits, so the value is always a valid header; if it somehow were
        // not, the visitor just gets a new cart on the next request.
        HeaderValue::from_str(&cookie).ok()
    }

    /// `response`, with the cart cookie set if the visitor is new.
    pub fn respond(&self, response: impl IntoResponse) -> Response {
        let mut response = response.into_response();
        if let Some(cookie) = self.set_cookie() {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_headers(&parts.headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for cookie in cookies {
            headers.append(COOKIE, HeaderValue::from_str(cookie).unwrap());
        }
        headers
    }

    #[test]
    fn a_known_cookie_names_the_cart() {
        let id = CartId::random();
        let visitor =
            Visitor::from_headers(&headers(&[&format!("theme=dark; {CART_COOKIE}={id}; x=y")]));
        assert_eq!(
            visitor,
            Visitor {
                cart: id.clone(),
                is_new: false
            }
        );
        assert_eq!(visitor.set_cookie(), None);
        // Also in a second Cookie header.
        let visitor = Visitor::from_headers(&headers(&["a=b", &format!("{CART_COOKIE}={id}")]));
        assert_eq!(visitor.cart, id);
    }

    #[test]
    fn missing_or_malformed_cookies_make_a_new_visitor() {
        for cookies in [&[][..], &["market_cart=nonsense"], &["other=1"]] {
            let visitor = Visitor::from_headers(&headers(cookies));
            assert!(visitor.is_new, "{cookies:?}");
            let cookie = visitor.set_cookie().unwrap();
            let cookie = cookie.to_str().unwrap();
            assert!(
                cookie.starts_with(&format!("{CART_COOKIE}={}; Path=/", visitor.cart)),
                "{cookie}"
            );
            assert!(
                cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
                "{cookie}"
            );
        }
    }
}
