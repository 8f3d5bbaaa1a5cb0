//! Admission: a bound on the calls of each kind in flight at once. A call over its kind's
//! bound is refused at once with RESOURCE_EXHAUSTED, before it decodes its body or touches the
//! store: an overloaded server answers in microseconds instead of queueing work it cannot
//! finish in time, and the calls it took keep their latency. Kinds are bounded apart so a
//! flood of one (thousands of long polls, say) never starves another (the Acks that drain
//! them, or an operator's Admin call).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::InFlightLimits;

/// The kinds of call bounded apart, by the service and method they name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Producer: Prepare, Confirm, Cancel, Publish, CheckStatus, RegisterChecker.
    Produce,
    /// Consumer.Receive, which may wait (long poll).
    Receive,
    /// Consumer: Ack, Nack, ExtendLease, Reject.
    Settle,
    Admin,
}

impl Kind {
    fn of(path: &str) -> Option<Self> {
        if path.starts_with("/courier.v1.Producer/") {
            Some(Self::Produce)
        } else if path == "/courier.v1.Consumer/Receive" {
            Some(Self::Receive)
        } else if path.starts_with("/courier.v1.Consumer/") {
            Some(Self::Settle)
        } else if path.starts_with("/courier.v1.Admin/") {
            Some(Self::Admin)
        } else {
            None // health and reflection are never refused
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Produce => "limits.in_flight.produce",
            Self::Receive => "limits.in_flight.receive",
            Self::Settle => "limits.in_flight.settle",
            Self::Admin => "limits.in_flight.admin",
        }
    }
}

#[derive(Debug)]
struct Bounds {
    produce: Arc<Semaphore>,
    receive: Arc<Semaphore>,
    settle: Arc<Semaphore>,
    admin: Arc<Semaphore>,
    limits: InFlightLimits,
}

impl Bounds {
    fn of(&self, kind: Kind) -> (&Arc<Semaphore>, usize) {
        match kind {
            Kind::Produce => (&self.produce, self.limits.produce),
            Kind::Receive => (&self.receive, self.limits.receive),
            Kind::Settle => (&self.settle, self.limits.settle),
            Kind::Admin => (&self.admin, self.limits.admin),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    bounds: Arc<Bounds>,
}

impl AdmissionLayer {
    pub fn new(limits: &InFlightLimits) -> Self {
        Self {
            bounds: Arc::new(Bounds {
                produce: Arc::new(Semaphore::new(limits.produce)),
                receive: Arc::new(Semaphore::new(limits.receive)),
                settle: Arc::new(Semaphore::new(limits.settle)),
                admin: Arc::new(Semaphore::new(limits.admin)),
                limits: limits.clone(),
            }),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admit {
            inner,
            bounds: self.bounds.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Admit<S> {
    inner: S,
    bounds: Arc<Bounds>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Admit<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Self::Response, Self::Error>>, Admitted<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let Some(kind) = Kind::of(request.uri().path()) else {
            return Either::Right(Admitted {
                inner: Box::pin(self.inner.call(request)),
                _permit: None,
            });
        };
        let (semaphore, bound) = self.bounds.of(kind);
        match semaphore.clone().try_acquire_owned() {
            Ok(permit) => Either::Right(Admitted {
                inner: Box::pin(self.inner.call(request)),
                _permit: Some(permit),
            }),
            Err(_) => {
                let status = Status::resource_exhausted(format!(
                    "server busy: {bound} calls of this kind are in flight ({}); retry with \
                     backoff",
                    kind.key()
                ));
                Either::Left(ready(Ok(status.into_http())))
            }
        }
    }
}

/// An admitted call: holds its place until its answer is ready.
pub struct Admitted<F> {
    inner: Pin<Box<F>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<F: Future> Future for Admitted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_bounded_by_kind() {
        assert_eq!(
            Kind::of("/courier.v1.Producer/Publish"),
            Some(Kind::Produce)
        );
        assert_eq!(
            Kind::of("/courier.v1.Consumer/Receive"),
            Some(Kind::Receive)
        );
        assert_eq!(Kind::of("/courier.v1.Consumer/Ack"), Some(Kind::Settle));
        assert_eq!(Kind::of("/courier.v1.Admin/GetStats"), Some(Kind::Admin));
        assert_eq!(Kind::of("/grpc.health.v1.Health/Check"), None);
    }
}
