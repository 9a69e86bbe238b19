//! The middleware every service puts on its router: metrics, trace context, log span.
//!
//! For each request, [`observe`]:
//!
//! 1. reads the incoming `traceparent` (a malformed one is ignored, as the specification
//!    asks) and decides the request's [`TraceContext`]: a child of the caller's, a new
//!    trace ([`TraceMode::Start`], the market's choice: every page load is traced), or none
//!    ([`TraceMode::Continue`] without a caller's trace);
//! 2. puts that context in the request's extensions, so handlers can pass it on
//!    (`Extension<TraceContext>`), and runs the handler inside a `request{trace_id=...}`
//!    span, so each log line the request causes, in the service or in a library it calls,
//!    names the trace;
//! 3. counts the answer in `http_requests_total{method,route,status}` and times it in
//!    `http_request_duration_seconds{method,route}`, where `route` is the route pattern
//!    (`/ratings/{item_id}`), never the raw path, so label values stay few; requests that
//!    match no route count as `unmatched`;
//! 4. logs one `debug` line per request (`RUST_LOG=debug` shows every request with its
//!    trace id; at `info` each service's own lines are enough).
//!
//! Put it on a router with `Router::layer` so the matched route is known:
//!
//! ```
//! use axum::{Router, middleware, routing::get};
//! use service_telemetry::{Observer, observe};
//!
//! let app: Router = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .layer(middleware::from_fn_with_state(Observer::continuing(), observe));
//! ```

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;
use tracing::{Instrument, Span};

use crate::span_link;
use crate::trace_context::TraceContext;

/// Name of the per-route request counter.
pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
/// Name of the per-route duration histogram.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
/// The `route` label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// What to do about requests that arrive without a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMode {
    /// Trace only requests whose caller sent a valid `traceparent` (ratings, registry).
    Continue,
    /// Continue the caller's trace, or start a new one (the market: each page load is
    /// the start of a trace).
    Start,
}

/// The middleware's configuration: its state in `from_fn_with_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observer {
    /// Whether untraced requests start a trace.
    mode: TraceMode,
}

impl Observer {
    /// Traces only requests that arrive with a trace.
    pub fn continuing() -> Self {
        Self {
            mode: TraceMode::Continue,
        }
    }

    /// Traces every request, starting a trace where the caller sent none.
    pub fn starting() -> Self {
        Self {
            mode: TraceMode::Start,
        }
    }

    /// The caller's trace context, if it sent a valid one.
    fn incoming(&self, headers: &axum::http::HeaderMap) -> Option<TraceContext> {
        TraceContext::from_headers(headers).unwrap_or_else(|error| {
            tracing::debug!(%error, "ignoring a malformed traceparent");
            None
        })
    }
}

/// The middleware; see the [module docs](self).
pub async fn observe(
    State(observer): State<Observer>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |m| m.as_str().to_owned());
    let path = request.uri().path().to_owned();

    let incoming = observer.incoming(request.headers());
    let span = if incoming.is_some() || observer.mode == TraceMode::Start {
        let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
        let context = span_link::server(&span, incoming);
        span.record("trace_id", tracing::field::display(context.trace_id()));
        request.extensions_mut().insert(context);
        span
    } else {
        Span::none()
    };
    let response = next.run(request).instrument(span.clone()).await;

    let status = response.status();
    let elapsed = started.elapsed();
    metrics::counter!(
        HTTP_REQUESTS_TOTAL,
        "method" => method,
        "route" => route.clone(),
        "status" => status.as_str().to_owned(),
    )
    .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
    let elapsed_ms = elapsed.as_millis();
    span.in_scope(|| {
        tracing::debug!(
            method,
            path,
            status = status.as_u16(),
            elapsed_ms,
            "{method} {path} -> {} in {elapsed_ms} ms",
            status.as_u16()
        );
    });
    response
}

/// The method as a label value: the standard methods by name, anything else as `other`,
/// so a client cannot invent label values.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Registers the help text of this module's metrics with the installed recorder.
pub(crate) fn describe() {
    metrics::describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests answered, by method, route pattern and status code"
    );
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method and route pattern"
    );
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::Extension;
    use axum::http::{HeaderValue, StatusCode};
    use axum::routing::get;
    use axum::{Router, middleware};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::trace_context::TRACEPARENT;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// An app whose one route answers the trace context it was given (or `none`).
    fn app(observer: Observer) -> Router {
        Router::new()
            .route(
                "/echo/{word}",
                get(|context: Option<Extension<TraceContext>>| async move {
                    context.map_or_else(|| "none".to_owned(), |Extension(c)| c.to_string())
                }),
            )
            .layer(middleware::from_fn_with_state(observer, observe))
    }

    async fn call(
        app: Router,
        path: &str,
        traceparent: Option<&'static str>,
    ) -> (StatusCode, String) {
        let mut request = Request::get(path).body(Body::empty()).unwrap();
        if let Some(value) = traceparent {
            request
                .headers_mut()
                .insert(TRACEPARENT, HeaderValue::from_static(value));
        }
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_callers_trace_is_continued_with_a_new_span() {
        for observer in [Observer::continuing(), Observer::starting()] {
            let (_, body) = call(app(observer), "/echo/a", Some(PARENT)).await;
            let context = TraceContext::parse(&body).unwrap();
            assert_eq!(
                context.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert_ne!(context.span_id().to_string(), "00f067aa0ba902b7");
        }
    }

    #[tokio::test]
    async fn untraced_or_malformed_requests_start_a_trace_only_when_asked() {
        let (_, body) = call(app(Observer::continuing()), "/echo/a", None).await;
        assert_eq!(body, "none");
        let (_, body) = call(app(Observer::continuing()), "/echo/a", Some("00-nonsense")).await;
        assert_eq!(body, "none");
        let (status, body) = call(app(Observer::starting()), "/echo/a", Some("00-nonsense")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a malformed header never fails the request"
        );
        let started = TraceContext::parse(&body).unwrap();
        assert_ne!(
            started.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_pattern_and_status() {
        let handle = crate::prometheus::install();
        let count = |text: &str, labels: &str| -> u64 {
            let prefix = format!("{HTTP_REQUESTS_TOTAL}{{{labels}}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .map_or(0, |n| n.parse().unwrap())
        };
        let found = r#"method="GET",route="/echo/{word}",status="200""#;
        let missing = r#"method="GET",route="unmatched",status="404""#;
        let before = handle.render();
        call(app(Observer::continuing()), "/echo/one", None).await;
        call(app(Observer::continuing()), "/echo/two", None).await;
        call(app(Observer::continuing()), "/nowhere", None).await;
        let after = handle.render();
        assert!(count(&after, found) >= count(&before, found) + 2, "{after}");
        assert!(count(&after, missing) > count(&before, missing), "{after}");
        assert!(
            after.contains(
                r#"http_request_duration_seconds_bucket{method="GET",route="/echo/{word}",le="#
            ),
            "{after}"
        );
        assert!(!after.contains("/echo/one"), "raw paths are not labels");
    }

    #[test]
    fn odd_methods_are_one_label() {
        assert_eq!(method_label(&Method::PUT), "PUT");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
