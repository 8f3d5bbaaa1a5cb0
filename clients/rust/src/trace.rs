//! W3C trace context (`traceparent`, `tracestate`) on the OpenTelemetry API: injected into the
//! metadata of every call to Courier, and read back from deliveries so a handler's work joins
//! the producer's trace. Written against the API crate alone, so the application picks (or
//! skips) the SDK and exporter; with no SDK installed the context still travels.

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry::{Context, global};
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::proto::Delivery;

/// The metadata key of the W3C `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// The metadata key of the W3C `tracestate`.
pub const TRACESTATE: &str = "tracestate";

/// The `traceparent` and `tracestate` of `context`'s span, if it has a valid one.
pub fn headers(context: &Context) -> Option<(String, String)> {
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return None;
    }
    let traceparent = format!(
        "00-{}-{}-{:02x}",
        span_context.trace_id(),
        span_context.span_id(),
        span_context.trace_flags().to_u8()
    );
    Some((traceparent, span_context.trace_state().header()))
}

/// Adds the current context's `traceparent` and `tracestate` (when not empty) to `metadata`.
pub fn inject_current(metadata: &mut MetadataMap) {
    let Some((traceparent, tracestate)) = Context::map_current(headers) else {
        return;
    };
    if let Ok(value) = MetadataValue::try_from(traceparent) {
        metadata.insert(TRACEPARENT, value);
    }
    if !tracestate.is_empty()
        && let Ok(value) = MetadataValue::try_from(tracestate)
    {
        metadata.insert(TRACESTATE, value);
    }
}

/// The remote span a `traceparent` (and `tracestate`) names, or None when the text is not a
/// valid W3C trace context (a malformed one is ignored, as the specification asks).
pub fn parse(traceparent: &str, tracestate: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let flags = parts.next()?;
    let known_version = version == "00";
    if version.len() != 2 || !is_lower_hex(version) || version == "ff" {
        return None;
    }
    // Version 00 has exactly four parts; later versions may append more.
    if known_version && parts.next().is_some() {
        return None;
    }
    if trace_id.len() != 32 || span_id.len() != 16 || flags.len() != 2 {
        return None;
    }
    if ![trace_id, span_id, flags]
        .iter()
        .all(|part| is_lower_hex(part))
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    // Only the sampled bit is defined; others are not passed on.
    let flags = TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8());
    let state = tracestate.parse::<TraceState>().unwrap_or_default();
    let span_context = SpanContext::new(trace_id, span_id, flags, true, state);
    span_context.is_valid().then_some(span_context)
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The context a delivery's handler runs in: a consumer span (from the global tracer
/// provider; a no-op one unless the application installed an SDK) whose parent is the trace
/// context the message was produced under, when it carried one.
pub fn handler_context(delivery: &Delivery) -> Context {
    let parent = match parse(&delivery.traceparent, &delivery.tracestate) {
        Some(remote) => Context::new().with_remote_span_context(remote),
        None => Context::new(),
    };
    let tracer = global::tracer("courier-client");
    let span = tracer
        .span_builder(format!("{} process", delivery.subscription))
        .with_kind(SpanKind::Consumer)
        .start_with_context(&tracer, &parent);
    parent.with_span(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_context_goes_out_and_comes_back_the_same() {
        let remote = parse(PARENT, "congo=t61rcWkgMzE").expect("a valid traceparent");
        let context = Context::new().with_remote_span_context(remote.clone());
        let (traceparent, tracestate) = headers(&context).expect("a valid span");
        assert_eq!(traceparent, PARENT);
        assert_eq!(tracestate, "congo=t61rcWkgMzE");
        assert!(remote.is_sampled());
        assert!(remote.is_remote());
    }

    #[test]
    fn malformed_trace_contexts_are_ignored() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
        ] {
            assert!(parse(bad, "").is_none(), "{bad:?} was accepted");
        }
        // A later version may carry more fields; the first four are read.
        assert!(parse(&format!("cc{}-more", &PARENT[2..]), "").is_some());
    }

    #[test]
    fn the_current_context_is_injected_into_metadata() {
        let mut metadata = MetadataMap::new();
        inject_current(&mut metadata);
        assert!(metadata.get(TRACEPARENT).is_none(), "no span, no header");

        let remote = parse(PARENT, "").unwrap();
        let _attached = Context::new().with_remote_span_context(remote).attach();
        inject_current(&mut metadata);
        assert_eq!(metadata.get(TRACEPARENT).unwrap(), PARENT);
        assert!(
            metadata.get(TRACESTATE).is_none(),
            "an empty tracestate is left out"
        );
    }

    #[test]
    fn a_handler_runs_in_the_producers_trace() {
        let delivery = Delivery {
            subscription: "billing".into(),
            traceparent: PARENT.into(),
            ..Delivery::default()
        };
        let context = handler_context(&delivery);
        assert_eq!(
            context.span().span_context().trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        let untraced = handler_context(&Delivery::default());
        assert!(!untraced.span().span_context().is_valid());
    }
}
