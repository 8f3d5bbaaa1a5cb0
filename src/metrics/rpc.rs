//! A tower layer on the gRPC server that counts every call by service, method and final status
//! code, and times it from arrival to that status.
//!
//! A handler's error goes out as a "trailers-only" response (grpc-status in the headers); an
//! OK answer, or an error while streaming, carries grpc-status in the trailers after the body.
//! So the layer looks at the headers first and otherwise watches the body for its trailers. A
//! call whose response is dropped before its status went out (the client went away) counts as
//! CANCELLED.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use prost::Message as _;
use tonic::Code;
use tower_layer::Layer;
use tower_service::Service;

/// Labels of calls to a path no served method has: scanners and typos must not create series.
const OTHER: (&str, &str) = ("other", "other");

/// `/package.Service/Method` → (`package.Service`, `Method`) for every method in the descriptor
/// sets the server serves, so labels only ever take these values.
static KNOWN_METHODS: LazyLock<HashMap<String, (String, String)>> = LazyLock::new(|| {
    let sets = [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = HashMap::new();
    for set in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in set.file {
            let package = file.package();
            for service in &file.service {
                let service_name = if package.is_empty() {
                    service.name().to_owned()
                } else {
                    format!("{package}.{}", service.name())
                };
                for method in &service.method {
                    methods.insert(
                        format!("/{service_name}/{}", method.name()),
                        (service_name.clone(), method.name().to_owned()),
                    );
                }
            }
        }
    }
    methods
});

/// The (service, method) labels of a request path.
fn labels_of(path: &str) -> (&'static str, &'static str) {
    let known: &'static HashMap<String, (String, String)> = &KNOWN_METHODS;
    known.get(path).map_or(OTHER, |(service, method)| {
        (service.as_str(), method.as_str())
    })
}

/// Adds RPC metrics to a tonic server: `Server::builder().layer(RpcMetricsLayer)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcMetricsLayer;

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcMetrics<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Body,
{
    type Response = http::Response<RpcBody<ResBody>>;
    type Error = S::Error;
    type Future = RpcFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = labels_of(request.uri().path());
        RpcFuture {
            inner: self.inner.call(request),
            call: Some(Call {
                service,
                method,
                started: Instant::now(),
                code: None,
            }),
        }
    }
}

/// One call in flight; recorded once, when dropped, with the code it learned (CANCELLED if
/// none: the response or its body was dropped before the status went out).
struct Call {
    service: &'static str,
    method: &'static str,
    started: Instant,
    code: Option<Code>,
}

impl Call {
    fn finish(mut self, code: Code) {
        self.code = Some(code);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        super::rpc_finished(
            self.service,
            self.method,
            self.code.unwrap_or(Code::Cancelled),
            self.started.elapsed(),
        );
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

pin_project! {
    pub struct RpcFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, ResBody, E> Future for RpcFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = Result<http::Response<RpcBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let call = this.call.take();
        Poll::Ready(match result {
            Ok(response) => {
                let call = match (call, grpc_status(response.headers())) {
                    (Some(call), Some(code)) => {
                        call.finish(code);
                        None
                    }
                    (call, _) => call,
                };
                Ok(response.map(|inner| RpcBody { inner, call }))
            }
            Err(error) => {
                if let Some(call) = call {
                    call.finish(Code::Unknown);
                }
                Err(error)
            }
        })
    }
}

pin_project! {
    /// A response body that records its call when the trailers (or the end) go by.
    pub struct RpcBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for RpcBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = ready!(this.inner.poll_frame(cx));
        let code = match &polled {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| grpc_status(trailers).unwrap_or(Code::Unknown)),
            Some(Err(_)) => Some(Code::Internal),
            // A body that ended without trailers carries no gRPC status.
            None => Some(Code::Unknown),
        };
        if let Some(code) = code
            && let Some(call) = this.call.take()
        {
            call.finish(code);
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_methods_get_their_names_and_anything_else_does_not() {
        assert_eq!(
            labels_of("/courier.v1.Producer/Prepare"),
            ("courier.v1.Producer", "Prepare")
        );
        assert_eq!(
            labels_of("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            labels_of("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            (
                "grpc.reflection.v1alpha.ServerReflection",
                "ServerReflectionInfo"
            )
        );
        assert_eq!(labels_of("/courier.v1.Producer/Nope"), OTHER);
        assert_eq!(labels_of("/wp-login.php"), OTHER);
    }
}
