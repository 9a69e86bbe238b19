//! Where a request's [`TraceContext`] comes from, and the context of a call it makes.
//!
//! In the default build the ids are made here: a server span continues its caller's trace
//! with a new span id (or starts a trace), and each outgoing call gets a new span id.
//!
//! With the `otlp` feature and an OTLP endpoint configured, the `tracing` spans are exported
//! as OpenTelemetry spans, so the ids must be theirs: the `request` span is given the
//! caller's context as its remote parent, and the ids sent on are read back from the
//! exported spans, so the trace in the collector is one connected tree across processes.
//! When no exporter is installed the default ids are used.

use tracing::Span;

use crate::trace_context::TraceContext;

/// The context of the server span `span`, which continues `incoming` (the caller's
/// context) or, without one, starts a trace.
pub(crate) fn server(span: &Span, incoming: Option<TraceContext>) -> TraceContext {
    #[cfg(feature = "otlp")]
    if let Some(context) = otel::join(span, incoming) {
        return context;
    }
    let _ = span;
    incoming.map_or_else(TraceContext::new_root, |parent| parent.child())
}

/// The context to send on a call made from `parent`, and the span to run the call in (a
/// disabled span unless spans are exported). The caller instruments the call with it:
///
/// ```
/// use service_telemetry::{TraceContext, span_link};
/// use tracing::Instrument;
///
/// # async fn call(_headers: http::HeaderMap) {}
/// # async fn example(page: TraceContext) {
/// let (context, span) = span_link::outgoing(&page);
/// call(context.headers()).instrument(span).await;
/// # }
/// ```
pub fn outgoing(parent: &TraceContext) -> (TraceContext, Span) {
    #[cfg(feature = "otlp")]
    if let Some(linked) = otel::outgoing() {
        return linked;
    }
    (parent.child(), Span::none())
}

#[cfg(feature = "otlp")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use crate::trace_context::TraceContext;

    /// Gives `span` the caller's context as its remote parent and returns the span's own
    /// context; `None` when spans are not exported.
    pub(super) fn join(span: &Span, incoming: Option<TraceContext>) -> Option<TraceContext> {
        if let Some(parent) = incoming {
            let flags = if parent.sampled() {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            let remote = SpanContext::new(
                TraceId::from_bytes(parent.trace_id().to_bytes()),
                SpanId::from_bytes(parent.span_id().to_bytes()),
                flags,
                true,
                TraceState::default(),
            );
            // Fails only without the OpenTelemetry layer, and then `own` says None.
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
        }
        own(span)
    }

    /// A client span for one outgoing call, child of the current span, and its context.
    pub(super) fn outgoing() -> Option<(TraceContext, Span)> {
        let span = tracing::info_span!("outgoing request");
        own(&span).map(|context| (context, span))
    }

    fn own(span: &Span) -> Option<TraceContext> {
        let context = span.context();
        let span_context = context.span().span_context().clone();
        if !span_context.is_valid() {
            return None;
        }
        TraceContext::from_parts(
            span_context.trace_id().to_bytes(),
            span_context.span_id().to_bytes(),
            span_context.is_sampled(),
        )
    }
}
