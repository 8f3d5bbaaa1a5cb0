//! The span of every call to Courier's services, a child of the caller's trace: the tower
//! layer reads `traceparent` / `tracestate` once, makes them the span's parent, and hands the
//! context to the handlers in the request ([`IncomingTrace`]), where Prepare and Publish keep
//! it with the message. Health and reflection pass untouched.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tonic::Request;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing::field::Empty;
use tracing::instrument::{Instrument, Instrumented};

use super::auth::rules::PROTECTED_PREFIX;
use crate::domain::TraceContext;
use crate::telemetry::{EXPORT_ONLY, context};

/// The trace context the call came with, valid or none.
#[derive(Debug, Clone)]
pub struct IncomingTrace(pub Option<TraceContext>);

/// The trace a new message joins: the producer's, or, when it sent none and spans are
/// exported, the trace Courier's span of this call started.
pub fn message_trace<T>(request: &Request<T>) -> Option<TraceContext> {
    let incoming = request.extensions().get::<IncomingTrace>();
    match incoming.and_then(|incoming| incoming.0.clone()) {
        Some(trace) => Some(trace),
        None => context::outgoing(None),
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RpcTraceLayer;

impl<S> Layer<S> for RpcTraceLayer {
    type Service = RpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTrace { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RpcTrace<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcTrace<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<RecordStatus<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        if !path.starts_with(PROTECTED_PREFIX) {
            let inner = self.inner.call(request);
            return RecordStatus { inner }.instrument(Span::none());
        }
        // Export only: in the log, the handler's own span already names the call.
        let span = tracing::info_span!(
            target: EXPORT_ONLY,
            "rpc",
            otel.name = path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.grpc.status_code = Empty,
            otel.status_code = Empty,
        );
        let incoming = context::from_headers(request.headers());
        context::set_parent(&span, incoming.as_ref());
        request.extensions_mut().insert(IncomingTrace(incoming));
        let inner = span.in_scope(|| self.inner.call(request));
        RecordStatus { inner }.instrument(span)
    }
}

pin_project! {
    /// Records the call's gRPC status on its span once the response headers are out. A handler's
    /// error is a trailers-only answer with `grpc-status` in the headers; without one the call
    /// was answered OK (a stream failing later is not told apart here).
    pub struct RecordStatus<F> {
        #[pin]
        inner: F,
    }
}

impl<F, ResBody, E> Future for RecordStatus<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = ready!(self.project().inner.poll(cx));
        if let Ok(response) = &result {
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<i32>().ok())
                .unwrap_or(0);
            let span = Span::current();
            span.record("rpc.grpc.status_code", code);
            if code != 0 {
                span.record("otel.status_code", "ERROR");
            }
        }
        Poll::Ready(result)
    }
}
