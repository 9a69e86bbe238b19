//! The Prometheus recorder behind the `metrics` facade, and the `/metrics` answer.
//!
//! A `metrics` recorder is process-global: whatever records through the facade (our
//! services, the discovery-client library) lands in the one installed recorder. So
//! [`install`] installs it once per process and hands every caller a clone of the same
//! [`PrometheusHandle`]; tests that build several apps in one process share it (assert on
//! counts that move, not on absolute values). If another recorder was installed first, the
//! handle renders an empty page and a warning says why.
//!
//! Durations (every metric whose name ends in `_seconds`) are histograms with buckets from
//! 1 ms to 60 s, so `histogram_quantile` works on them; counters and gauges render as is.
//! A background thread runs the exporter's upkeep every few seconds so histogram samples
//! never pile up between scrapes.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket bounds, in seconds, of every `_seconds` histogram: request latencies from 1 ms
/// up to the registry's 60 s blocking queries.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often the upkeep thread drains histogram samples.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder on first call and returns its handle;
/// later calls return the same handle. Never fails: with another recorder already
/// installed it logs a warning and returns a handle that renders nothing.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Only fails for an empty bucket list, which DURATION_BUCKETS is not; then
            // durations would render as summaries, which is still correct.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    crate::observe::describe();
                    spawn_upkeep(handle.clone());
                }
                Err(error) => tracing::warn!(
                    %error,
                    "another metrics recorder is installed; /metrics will be empty"
                ),
            }
            handle
        })
        .clone()
}

/// The `/metrics` answer: the current metrics in the Prometheus text format.
pub fn render(handle: &PrometheusHandle) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], handle.render()).into_response()
}

/// Drains histogram samples every few seconds, for the life of the process (like the
/// recorder it serves).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the metrics upkeep thread; /metrics still works");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_renders_what_is_recorded() {
        let first = install();
        let second = install();
        metrics::counter!("telemetry_test_events_total", "kind" => "a").increment(2);
        metrics::histogram!("telemetry_test_wait_seconds").record(0.003);
        let text = second.render();
        assert!(
            text.contains("telemetry_test_events_total{kind=\"a\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("telemetry_test_wait_seconds_bucket{le=\"0.005\"} 1"),
            "durations are histograms: {text}"
        );
        assert!(first.render().contains("telemetry_test_events_total"));
    }

    #[tokio::test]
    async fn the_metrics_answer_is_prometheus_text() {
        let response = render(&install());
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    }
}
