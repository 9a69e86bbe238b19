//! Trace ids in the log: a request with a W3C `traceparent` logs its trace id on its line;
//! one without (or with a malformed one) logs none.
//!
//! A test binary of its own with a single test: it captures the log with a thread-local
//! subscriber, and `tracing` caches per call site whether anyone listens, which other tests
//! running on other threads without a subscriber would race with.

#![allow(clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use clap::Parser;
use ratings_service::{AppState, Config, app};
use tower::ServiceExt;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn app_for_instance(instance: &str) -> Router {
    let config =
        Config::try_parse_from(["ratings-service", "--no-register", "--instance", instance])
            .expect("flags parse");
    app(AppState::from_config(&config).expect("embedded ratings load"))
}

async fn get(app: &Router, uri: &str, traceparent: Option<&str>) -> StatusCode {
    let mut request = Request::get(uri);
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible")
        .status()
}

/// Everything logged (as the binary formats it, without colour) while `f` runs on this
/// thread.
async fn logged<F: Future<Output = ()>>(f: F) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    f.await;
    drop(guard);
    let bytes = buffer.0.lock().expect("lock").clone();
    String::from_utf8(bytes).expect("utf-8")
}

// A current-thread runtime: the handlers run on this thread, under the default subscriber.
#[tokio::test(flavor = "current_thread")]
async fn traced_requests_log_their_trace_id_and_others_none() {
    let app = app_for_instance("2");
    let log = logged(async {
        assert_eq!(
            get(&app, "/ratings/widget", Some(TRACEPARENT)).await,
            StatusCode::OK
        );
        assert_eq!(get(&app, "/ratings/gadget", None).await, StatusCode::OK);
        let malformed = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        let status = get(&app, "/ratings/gizmo", Some(malformed)).await;
        assert_eq!(status, StatusCode::OK, "a malformed traceparent is ignored");
    })
    .await;
    let line = |item: &str| {
        log.lines()
            .find(|l| l.contains(&format!("instance 2 served rating for {item}")))
            .unwrap_or_else(|| panic!("no served line for {item} in {log}"))
    };
    assert!(
        line("widget").contains(&format!("trace_id={TRACE_ID}")),
        "{log}"
    );
    assert!(!line("gadget").contains("trace_id"), "{log}");
    assert!(!line("gizmo").contains("trace_id"), "{log}");
}
