//! With the `otlp` feature: the `request` span is exported as an OpenTelemetry span that
//! continues the caller's W3C trace, and the context handed to the handler (and so sent on)
//! is that span's; an outgoing call's context is a child span's.
//!
//! One test in a binary of its own: it installs a thread-local subscriber, and `tracing`
//! caches per call site whether anyone listens.
#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Extension;
use axum::http::Request;
use axum::routing::get;
use axum::{Router, middleware};
use http_body_util::BodyExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use service_telemetry::{Observer, TraceContext, observe, span_link};
use tower::ServiceExt;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// Keeps every exported span.
#[derive(Debug, Clone, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collect {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "current_thread")]
async fn request_spans_continue_the_callers_trace_and_calls_are_their_children() {
    let spans = Collect::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    // The handler answers its own context and the one it would send on a call.
    let app = Router::new()
        .route(
            "/call",
            get(|Extension(context): Extension<TraceContext>| async move {
                let (sent, span) = span_link::outgoing(&context);
                async {}.instrument(span).await;
                format!("{context} {sent}")
            }),
        )
        .layer(middleware::from_fn_with_state(
            Observer::continuing(),
            observe,
        ));
    let request = Request::get("/call")
        .header("traceparent", PARENT)
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let (server, sent) = body.split_once(' ').unwrap();
    let server: TraceContext = server.parse().unwrap();
    let sent: TraceContext = sent.parse().unwrap();

    let spans = spans.0.lock().unwrap();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {spans:?}"))
    };
    let request = find("request");
    assert_eq!(
        request.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(request.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert!(request.parent_span_is_remote);
    assert_eq!(
        request.span_context.span_id().to_bytes(),
        server.span_id().to_bytes(),
        "the handler's context is the exported span's"
    );
    let call = find("outgoing request");
    assert_eq!(call.parent_span_id, request.span_context.span_id());
    assert_eq!(
        call.span_context.span_id().to_bytes(),
        sent.span_id().to_bytes()
    );
    assert_eq!(sent.trace_id(), server.trace_id());
}
