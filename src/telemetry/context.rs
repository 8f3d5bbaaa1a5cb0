//! Trace context across Courier: read from a call's `traceparent` / `tracestate` metadata,
//! made the parent of Courier's spans, and sent on to checkers and receivers. With span
//! export on, what Courier sends on names Courier's own span as the parent, so a trace runs
//! producer → Courier → checker or consumer; without it, the producer's context goes on
//! unchanged.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState as SpanTraceState,
};
use tonic::metadata::{MetadataMap, MetadataValue};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::domain::{TraceContext, TraceParent, TraceState};

/// The W3C Trace Context header names, as gRPC metadata keys.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The trace context of a call. An invalid `traceparent` is ignored (the W3C rule: a new
/// trace starts) and an invalid `tracestate` dropped; both only logged at debug, since the
/// caller's business goes on.
pub fn from_headers(headers: &http::HeaderMap) -> Option<TraceContext> {
    // A value that is not visible ASCII cannot be a valid one: read as empty, refused.
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap_or(""))
    };
    let (context, problem) = TraceContext::from_headers(values(TRACEPARENT), values(TRACESTATE));
    if let Some(problem) = problem {
        tracing::debug!(%problem, "ignoring the call's trace context");
    }
    context
}

/// Makes `trace` the parent of `span`. Call it before the span is first entered; without span
/// export there is nothing to join and it does nothing.
pub fn set_parent(span: &Span, trace: Option<&TraceContext>) {
    if let Some(trace) = trace {
        let _no_export = span.set_parent(remote(trace));
    }
}

/// The trace context to send on from inside the current span: the span's own when spans are
/// exported (the same trace, Courier's span as the parent), else `stored` unchanged.
pub fn outgoing(stored: Option<&TraceContext>) -> Option<TraceContext> {
    let current = current_span_context();
    let Some(span) = current.filter(SpanContext::is_valid) else {
        return stored.cloned();
    };
    let parent = TraceParent::new(
        span.trace_id().to_bytes(),
        span.span_id().to_bytes(),
        span.trace_flags().to_u8(),
    );
    let Some(parent) = parent else {
        return stored.cloned();
    };
    let state = match stored {
        Some(stored) => stored.state.clone(),
        None => TraceState::parse(&span.trace_state().header())
            .ok()
            .flatten(),
    };
    Some(TraceContext { parent, state })
}

/// Adds `trace` to an outgoing call's metadata.
pub fn inject(metadata: &mut MetadataMap, trace: &TraceContext) {
    // Both are validated visible ASCII, so they always make metadata values.
    if let Ok(value) = MetadataValue::try_from(trace.parent.to_string()) {
        metadata.insert(TRACEPARENT, value);
    }
    if let Some(state) = &trace.state
        && let Ok(value) = MetadataValue::try_from(state.as_str())
    {
        metadata.insert(TRACESTATE, value);
    }
}

/// The OpenTelemetry context of the current span, if spans are exported.
fn current_span_context() -> Option<SpanContext> {
    let context = Span::current().context();
    context
        .has_active_span()
        .then(|| context.span().span_context().clone())
}

/// `trace` as the remote parent OpenTelemetry continues from.
fn remote(trace: &TraceContext) -> opentelemetry::Context {
    let state = trace
        .state
        .as_ref()
        .and_then(|state| state.as_str().parse::<SpanTraceState>().ok())
        .unwrap_or_default();
    let span = SpanContext::new(
        TraceId::from_bytes(trace.parent.trace_id()),
        SpanId::from_bytes(trace.parent.parent_id()),
        TraceFlags::new(trace.parent.flags()),
        true,
        state,
    );
    opentelemetry::Context::new().with_remote_span_context(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn a_call_context_is_read_and_an_invalid_one_ignored() {
        let read = from_headers(&headers(&[(TRACEPARENT, PRODUCER), (TRACESTATE, "a=1")]));
        let read = read.unwrap();
        assert_eq!(read.parent.to_string(), PRODUCER);
        assert_eq!(read.tracestate(), "a=1");
        assert_eq!(from_headers(&headers(&[(TRACEPARENT, "00-zz")])), None);
        assert_eq!(from_headers(&headers(&[])), None);
    }

    #[test]
    fn without_span_export_the_stored_context_goes_on_unchanged() {
        let stored = from_headers(&headers(&[(TRACEPARENT, PRODUCER), (TRACESTATE, "a=1")]));
        assert_eq!(outgoing(stored.as_ref()), stored);
        assert_eq!(outgoing(None), None);
        let mut metadata = MetadataMap::new();
        inject(&mut metadata, stored.as_ref().unwrap());
        assert_eq!(metadata.get(TRACEPARENT).unwrap(), PRODUCER);
        assert_eq!(metadata.get(TRACESTATE).unwrap(), "a=1");
    }
}
