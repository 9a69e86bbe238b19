//! Test helpers: app state pointing at ratings instances (the fakes come from the
//! `fake-ratings` crate), and request/response plumbing for `oneshot` and real sockets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};

use discovery_client::{ServiceClient, StaticDiscovery};
use http_body_util::BodyExt;
use market_app::AppState;
use market_app::cart::CartStore;
use market_app::catalog::Catalog;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// A ratings client over a static list, with a timeout of 2 s and the given fresh-cache TTL.
pub fn client(urls: &[&str], cache_ttl: Duration) -> ServiceClient {
    ServiceClient::builder("ratings")
        .discovery(StaticDiscovery::new(urls.iter().map(|u| u.to_string())))
        .timeout(Duration::from_secs(2))
        .failure_limit(1)
        .retest_delay(Duration::from_secs(30))
        .cache_ttl(cache_ttl)
        .build()
        .unwrap()
}

/// The market's router for the standard catalog and ratings at `urls` (fresh cache off).
pub fn app_for(urls: &[&str]) -> Router {
    market_app::app(state_for(urls))
}

/// State for the standard catalog and ratings at `urls` (fresh cache off).
pub fn state_for(urls: &[&str]) -> AppState {
    AppState::new(
        Catalog::standard(),
        client(urls, Duration::ZERO),
        CartStore::new(100),
    )
}

/// A whole answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `market_cart=<id>` pair from `Set-Cookie`, if any.
    pub fn cart_cookie(&self) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("market_cart="))
            .map(|v| v.split(';').next().unwrap().to_string())
    }
}

/// Sends `request` through `app` without a socket.
pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

/// `GET path`, with the cart cookie if given.
pub fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::empty()).unwrap()
}

/// `POST path` with a form body, with the cart cookie if given.
pub fn post_form(path: &str, form: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::from(form.to_string())).unwrap()
}

/// `POST path` with a JSON body, with the cart cookie if given.
pub fn post_json(path: &str, json: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::from(json.to_string())).unwrap()
}

/// A plain HTTP/1.1 GET over a real socket: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .expect("no header/body separator");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("no status code");
        (status, body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("HTTP GET took more than 10 s")
}
