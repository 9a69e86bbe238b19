//! Test helpers: fake ratings instances on port 0, app state pointing at them, and
//! request/response plumbing for `oneshot` and real sockets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};

use discovery_client::{ServiceClient, StaticDiscovery};
use http_body_util::BodyExt;
use market_app::AppState;
use market_app::cart::CartStore;
use market_app::catalog::Catalog;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tower::ServiceExt;

/// The rating each fake gives each item.
pub fn rating_of(item: &str) -> Option<u8> {
    match item {
        "widget" => Some(4),
        "gadget" => Some(3),
        "gizmo" => Some(5),
        "doohickey" => Some(2),
        _ => None,
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    failing: AtomicBool,
    traceparents: Mutex<Vec<String>>,
}

#[derive(Clone)]
struct FakeState {
    instance: u32,
    delay: Duration,
    known: Arc<Vec<String>>,
    counters: Arc<Counters>,
}

/// A fake ratings instance serving `GET /ratings/{item_id}` on `127.0.0.1:0`.
pub struct FakeRatings {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    counters: Arc<Counters>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRatings {
    /// Instance `instance`, knowing the four standard items, answering at once.
    pub async fn start(instance: u32) -> Self {
        Self::start_with(
            instance,
            Duration::ZERO,
            &["widget", "gadget", "gizmo", "doohickey"],
        )
        .await
    }

    /// Instance `instance`, waiting `delay` before each answer, knowing only `known`
    /// (others get 404).
    pub async fn start_with(instance: u32, delay: Duration, known: &[&str]) -> Self {
        let counters = Arc::new(Counters::default());
        let state = FakeState {
            instance,
            delay,
            known: Arc::new(known.iter().map(|s| s.to_string()).collect()),
            counters: Arc::clone(&counters),
        };
        let router = Router::new()
            .route("/ratings/{item_id}", axum::routing::get(fake_rating))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            url: format!("http://{addr}"),
            counters,
            stop: Some(stop),
            task,
        }
    }

    /// From now on, answer 503 (`true`) or normally (`false`).
    pub fn fail(&self, failing: bool) {
        self.counters.failing.store(failing, Ordering::SeqCst);
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.counters.requests.load(Ordering::SeqCst)
    }

    /// The `traceparent` header of every request received so far (`""` when absent).
    pub fn traceparents(&self) -> Vec<String> {
        self.counters.traceparents.lock().unwrap().clone()
    }

    /// The most requests that were being handled at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.counters.max_in_flight.load(Ordering::SeqCst)
    }

    /// Stops serving and waits until the server is gone.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("fake ratings did not stop within 5 s")
            .unwrap();
    }
}

async fn fake_rating(
    State(state): State<FakeState>,
    Path(item_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let counters = &state.counters;
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    counters
        .traceparents
        .lock()
        .unwrap()
        .push(traceparent.to_string());
    counters.requests.fetch_add(1, Ordering::SeqCst);
    let now = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    counters.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(state.delay).await;
    counters.in_flight.fetch_sub(1, Ordering::SeqCst);
    if counters.failing.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "failing on purpose").into_response();
    }
    match rating_of(&item_id).filter(|_| state.known.contains(&item_id)) {
        Some(rating) => axum::Json(serde_json::json!({
            "item_id": item_id,
            "rating": rating,
            "instance": state.instance,
        }))
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": "unknown item"})),
        )
            .into_response(),
    }
}

/// A loopback port where nothing listens: bound but never listening (connections are
/// refused at once), and held while this lives so no other test's server can get it.
pub struct ClosedPort {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _socket: tokio::net::TcpSocket,
}

pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let url = format!("http://{}", socket.local_addr().unwrap());
    ClosedPort {
        url,
        _socket: socket,
    }
}

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
