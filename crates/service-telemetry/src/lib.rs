//! What the three services (registry, ratings, market) share for observability, so each
//! of them gets it from one place instead of three copies:
//!
//! - [`prometheus`]: the process-wide Prometheus recorder behind the `metrics` facade
//!   ([`prometheus::install`], idempotent) and the `/metrics` answer
//!   ([`prometheus::render`]). The discovery-client library records through the same
//!   facade, so its metrics appear on the market's `/metrics` with no extra wiring.
//! - [`trace_context`]: W3C Trace Context: parsing, validating and formatting the
//!   `traceparent` header ([`TraceContext`]).
//! - [`observe`]: the axum middleware every service puts on its router: per-route request
//!   counts and durations, the request's trace context, and a `request{trace_id=...}`
//!   span around the handler so every log line of a traced request names its trace.
//! - [`span_link`]: where a request's trace context comes from and what a call it makes
//!   sends on; with the `otlp` feature, the ids of the exported OpenTelemetry spans.
//! - [`listen`]: the `--listen` flag's parser (`localhost:PORT` accepted).
//! - [`shutdown`]: the binaries' shutdown signal (Ctrl-C or SIGTERM), logged once.
//! - [`logging`]: the binaries' `tracing` set-up: `RUST_LOG` honoured (default `info`),
//!   colour only when stdout is a terminal; with the `otlp` feature and
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported over OTLP/HTTP.
//!
//! Libraries never call [`logging::init`] or [`prometheus::install`]; binaries and the
//! services' state constructors do.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod listen;
pub mod logging;
pub mod observe;
pub mod prometheus;
pub mod shutdown;
pub mod span_link;
pub mod trace_context;

pub use metrics_exporter_prometheus::PrometheusHandle;
pub use observe::{Observer, TraceMode, observe};
pub use trace_context::{TRACEPARENT, TraceContext, TraceParentError};
