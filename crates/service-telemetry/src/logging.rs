//! The binaries' log set-up.
//!
//! Logs go to stdout, one line per event, filtered by `RUST_LOG` (default `info`; an
//! unparsable value falls back to `info` with a warning). Colour is used only when stdout
//! is a terminal, so `make run`'s prefixed output, a pipe or a file stay plain text.
//! Spans show their fields before the message, so a traced request's lines read
//! `request{trace_id=4bf92f...}: ratings_service::routes: instance 1 served rating ...`.
//!
//! With the `otlp` feature, and `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, the same spans are also exported over
//! OTLP/HTTP (protobuf) to that collector, batched in the background; the returned
//! [`LoggingGuard`] flushes them when dropped at the end of `main`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter used when `RUST_LOG` is unset or unparsable.
pub const DEFAULT_FILTER: &str = "info";

/// Keeps the span exporter (if any) alive; dropping it flushes the spans not yet sent.
#[must_use = "dropping the guard stops exporting spans"]
#[derive(Debug, Default)]
pub struct LoggingGuard {
    /// The OTLP span pipeline, when exporting.
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for LoggingGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("could not flush the last spans: {error}");
            }
        }
    }
}

/// Installs the global `tracing` subscriber for the program `service` (its name in exported
/// spans). Call once, early in `main`, and keep the guard until `main` returns. A second
/// call (or another subscriber installed first) leaves the first one in place.
pub fn init(service: &str) -> LoggingGuard {
    let (filter, bad_filter) = filter_from_env();
    let ansi = std::io::stdout().is_terminal();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stdout);
    let registry = tracing_subscriber::registry().with(filter).with(fmt);

    #[cfg(feature = "otlp")]
    let guard = {
        use opentelemetry::trace::TracerProvider as _;
        let provider = otlp::provider_from_env(service);
        let layer = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned()))
        });
        // Fails only if a subscriber is already installed; the first one stays.
        let _ = registry.with(layer).try_init();
        LoggingGuard { provider }
    };
    #[cfg(not(feature = "otlp"))]
    let guard = {
        let _ = service;
        // Fails only if a subscriber is already installed; the first one stays.
        let _ = registry.try_init();
        LoggingGuard::default()
    };

    if let Some(error) = bad_filter {
        tracing::warn!("RUST_LOG is not a valid filter ({error}); using {DEFAULT_FILTER}");
    }
    guard
}

/// `RUST_LOG`'s filter, or the default and why `RUST_LOG` was not usable.
fn filter_from_env() -> (EnvFilter, Option<String>) {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Err(_) => (EnvFilter::new(DEFAULT_FILTER), None),
        Ok(value) if value.trim().is_empty() => (EnvFilter::new(DEFAULT_FILTER), None),
        Ok(value) => match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, None),
            Err(error) => (EnvFilter::new(DEFAULT_FILTER), Some(error.to_string())),
        },
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// The variables that name a collector; without one, nothing is exported.
    const ENDPOINT_VARIABLES: [&str; 2] = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ];

    /// A span pipeline to the collector the environment names (OTLP/HTTP, protobuf, batched
    /// on a background thread), or `None` when it names none or the exporter cannot be made.
    pub(super) fn provider_from_env(service: &str) -> Option<SdkTracerProvider> {
        if !ENDPOINT_VARIABLES
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
        {
            return None;
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => exporter,
            Err(error) => {
                // The subscriber is not installed yet, so say it plainly.
                eprintln!("{service}: not exporting spans: {error}");
                return None;
            }
        };
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder()
                        .with_service_name(service.to_owned())
                        .build(),
                )
                .build(),
        )
    }
}
