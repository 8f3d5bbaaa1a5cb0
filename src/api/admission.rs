//! Admission: a bound on the calls of each kind in flight at once. A call over its kind's
//! bound is refused at once with RESOURCE_EXHAUSTED, before it decodes its body or touches the
//! store: an overloaded server answers in microseconds instead of queueing work it cannot
//! finish in time, and the calls it took keep their latency. Kinds are bounded apart so a
//! flood of one (thousands of long polls, say) never starves another (the Acks that drain
//! them, or an operator's Admin call).
//!
//! A count alone lets an overloaded server accept calls that then wait their turn for as long
//! as the count allows. So producer and settle calls also watch for a standing queue, the way
//! CoDel does: when even the fastest call of the last interval took longer than
//! `limits.in_flight.latency_target`, the queue is not draining, and calls past a small floor
//! are refused until it does. (Receive waits by design; Admin calls may be slow scans.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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

    /// Whether a standing queue refuses calls of this kind.
    fn watches_latency(self) -> bool {
        matches!(self, Self::Produce | Self::Settle)
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

/// Calls of a kind always admitted (up to its bound) even while its queue stands: they keep
/// measuring, so the server notices when the queue drains, and a slow database still serves.
const STANDING_QUEUE_FLOOR: usize = 64;
/// How long the fastest call must stay over the target before calls are refused.
const STANDING_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Bounds {
    produce: Arc<Semaphore>,
    receive: Arc<Semaphore>,
    settle: Arc<Semaphore>,
    admin: Arc<Semaphore>,
    produce_queue: Arc<StandingQueue>,
    settle_queue: Arc<StandingQueue>,
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

    fn queue(&self, kind: Kind) -> Option<&Arc<StandingQueue>> {
        if !kind.watches_latency() || self.limits.latency_target.is_zero() {
            return None;
        }
        match kind {
            Kind::Produce => Some(&self.produce_queue),
            _ => Some(&self.settle_queue),
        }
    }
}

/// The fastest call of the current interval, and whether the last interval's fastest call
/// took longer than the target (the queue stands).
#[derive(Debug)]
struct StandingQueue {
    epoch: Instant,
    target: Duration,
    /// Microseconds since `epoch` at which the current interval began.
    interval_start: AtomicU64,
    /// The fastest call of the current interval, in microseconds.
    fastest: AtomicU64,
    standing: AtomicBool,
}

impl StandingQueue {
    fn new(target: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            target,
            interval_start: AtomicU64::new(0),
            fastest: AtomicU64::new(u64::MAX),
            standing: AtomicBool::new(false),
        }
    }

    fn standing(&self) -> bool {
        self.standing.load(Relaxed)
    }

    /// A call of this kind finished after `took`.
    fn finished(&self, took: Duration) {
        let took = micros(took);
        let now = micros(self.epoch.elapsed());
        let start = self.interval_start.load(Relaxed);
        if now.saturating_sub(start) < micros(STANDING_INTERVAL) {
            self.fastest.fetch_min(took, Relaxed);
            return;
        }
        // The interval is over: the one caller that moves it on judges it.
        if self
            .interval_start
            .compare_exchange(start, now, Relaxed, Relaxed)
            .is_ok()
        {
            let fastest = self.fastest.swap(took, Relaxed).min(took);
            self.standing.store(fastest > micros(self.target), Relaxed);
        }
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
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
                produce_queue: Arc::new(StandingQueue::new(limits.latency_target)),
                settle_queue: Arc::new(StandingQueue::new(limits.latency_target)),
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
                timed: None,
            });
        };
        let (semaphore, bound) = self.bounds.of(kind);
        let queue = self.bounds.queue(kind);
        if let Some(queue) = queue
            && queue.standing()
            && bound - semaphore.available_permits() >= STANDING_QUEUE_FLOOR
        {
            let status = Status::resource_exhausted(format!(
                "server busy: calls of this kind wait longer than {} \
                 (limits.in_flight.latency_target); retry with backoff",
                humantime::format_duration(self.bounds.limits.latency_target)
            ));
            return Either::Left(ready(Ok(status.into_http())));
        }
        match semaphore.clone().try_acquire_owned() {
            Ok(permit) => Either::Right(Admitted {
                inner: Box::pin(self.inner.call(request)),
                _permit: Some(permit),
                timed: queue.map(|queue| (queue.clone(), Instant::now())),
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
    /// Where to report how long the call took, and when it began.
    timed: Option<(Arc<StandingQueue>, Instant)>,
}

impl<F: Future> Future for Admitted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let answer = self.inner.as_mut().poll(cx);
        if answer.is_ready()
            && let Some((queue, began)) = self.timed.take()
        {
            queue.finished(began.elapsed());
        }
        answer
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

    #[test]
    fn a_queue_stands_when_even_the_fastest_call_of_an_interval_is_slow() {
        let queue = StandingQueue::new(Duration::from_millis(100));
        queue.finished(Duration::from_millis(150));
        assert!(!queue.standing(), "judged only once an interval has passed");
        std::thread::sleep(STANDING_INTERVAL);
        queue.finished(Duration::from_millis(300));
        assert!(queue.standing(), "every call of the interval was slow");
        queue.finished(Duration::from_millis(5));
        std::thread::sleep(STANDING_INTERVAL);
        queue.finished(Duration::from_millis(200));
        assert!(!queue.standing(), "one fast call shows the queue drains");
    }
}
