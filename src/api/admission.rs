//! Admission: a bound on the calls of each kind in flight at once. A call over its kind's
//! bound is refused at once with RESOURCE_EXHAUSTED, before it decodes its body or touches the
//! store: an overloaded server answers in microseconds instead of queueing work it cannot
//! finish in time, and the calls it took keep their latency. Kinds are bounded apart so a
//! flood of one (thousands of long polls, say) never starves another (the Acks that drain
//! them, or an operator's Admin call).
//!
//! A count alone lets an overloaded server accept calls that then wait their turn for as long
//! as the count allows. So producer and settle calls are also held to Little's law: calls in
//! flight = throughput x time each spends. The server measures, every 25 ms, how many calls
//! of the kind it finished, and keeps the fastest call of the last 10 s (a call's time without
//! a queue); it admits at most throughput x (that time + `limits.in_flight.latency_target`):
//! an accepted call waits about the target at most, and the rest are refused at once.
//! (Receive waits by design; Admin calls may be slow scans.)

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
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

    /// Whether calls of this kind are held to their measured throughput (Little's law).
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

/// Calls of a kind always admitted (up to its bound) whatever was measured: they keep
/// measuring, so the bound grows back when the server speeds up, and a slow database still
/// serves.
const LITTLE_FLOOR: usize = 64;
/// How often the throughput and the fastest call are measured. Short, so a flood is judged
/// within tens of milliseconds: the calls admitted before the first judgement wait their turn
/// (at 100 ms they set PostgreSQL's accepted p99 at 3x: 526 ms).
const MEASURE_INTERVAL: Duration = Duration::from_millis(25);
/// The bound is the largest of the last this many busy intervals' measures: a stall of a few
/// intervals (a checkpoint, a slow fsync, CPU taken by refusing a flood) does not shrink it,
/// so a server that sheds work keeps its throughput; a lasting slowdown does, after 2 s.
const MEASURES_KEPT: usize = 80;
/// A call's time without a queue is the fastest call of the last this many intervals (10 s),
/// busy or not. The current interval's fastest call will not do: behind a queue that stands
/// (every call waits its turn in a batch queue, say) even the fastest call includes the wait,
/// and a bound made from it would keep the queue it should drain.
const FASTEST_KEPT: usize = 400;
/// Throughput is counted over the last this many intervals (100 ms): 25 ms holds too few calls
/// for a steady figure, and the largest of 80 unsteady figures overshoots (an accepted call's
/// median wait was about twice the target at PostgreSQL's 3x).
const RATES_KEPT: usize = 4;

#[derive(Debug)]
struct Bounds {
    produce: Arc<Semaphore>,
    receive: Arc<Semaphore>,
    settle: Arc<Semaphore>,
    admin: Arc<Semaphore>,
    produce_little: Arc<LittleBound>,
    settle_little: Arc<LittleBound>,
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

    fn little(&self, kind: Kind) -> Option<&Arc<LittleBound>> {
        if !kind.watches_latency() || self.limits.latency_target.is_zero() {
            return None;
        }
        match kind {
            Kind::Produce => Some(&self.produce_little),
            _ => Some(&self.settle_little),
        }
    }
}

/// The calls of a kind the server may hold in flight so that none waits much longer than the
/// target: a busy interval's throughput times (a call's time without a queue + the target),
/// the largest of the last `MEASURES_KEPT`.
///
/// An interval is busy when its calls came near the bound, or when even its fastest call
/// waited longer than the target (a queue stands: judged at once, not only after the queue
/// has grown to the bound). Any other interval's throughput was what clients offered, not what
/// the server can carry, and it leaves the bound alone (as BBR ignores application-limited
/// samples): otherwise a quiet hour would shrink the bound and the next burst would be refused
/// although the server could carry it.
#[derive(Debug)]
struct LittleBound {
    epoch: Instant,
    target: Duration,
    /// Microseconds since `epoch` at which the current interval began.
    interval_start: AtomicU64,
    /// Calls finished in the current interval.
    finished: AtomicU64,
    /// The fastest call of the current interval, in microseconds.
    fastest: AtomicU64,
    /// The most calls in flight at once in the current interval.
    peak: AtomicUsize,
    /// Only the caller that ends an interval touches it.
    history: Mutex<History>,
    bound: AtomicUsize,
}

impl LittleBound {
    fn new(target: Duration, ceiling: usize) -> Self {
        Self {
            epoch: Instant::now(),
            target,
            interval_start: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            fastest: AtomicU64::new(u64::MAX),
            peak: AtomicUsize::new(0),
            history: Mutex::new(History::default()),
            bound: AtomicUsize::new(ceiling),
        }
    }

    /// Whether one more call may start while `in_flight` are.
    fn admits(&self, in_flight: usize) -> bool {
        self.peak.fetch_max(in_flight + 1, Relaxed);
        in_flight < LITTLE_FLOOR || in_flight < self.bound.load(Relaxed)
    }

    /// A call of this kind finished after `took`.
    fn finished(&self, took: Duration) {
        self.finished_at(took, micros(self.epoch.elapsed()));
    }

    /// `finished`, `now` microseconds after `epoch`.
    fn finished_at(&self, took: Duration, now: u64) {
        let took = micros(took);
        let start = self.interval_start.load(Relaxed);
        let elapsed = now.saturating_sub(start);
        if elapsed < micros(MEASURE_INTERVAL) {
            self.finished.fetch_add(1, Relaxed);
            self.fastest.fetch_min(took, Relaxed);
            return;
        }
        // The interval is over: the one caller that moves it on judges it.
        if self
            .interval_start
            .compare_exchange(start, now, Relaxed, Relaxed)
            .is_ok()
        {
            let finished = self.finished.swap(1, Relaxed);
            let fastest = self.fastest.swap(took, Relaxed);
            let peak = self.peak.swap(0, Relaxed);
            let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            let unqueued = history.unqueued(fastest);
            if elapsed > 2 * micros(MEASURE_INTERVAL) {
                // Calls were sparse (or none came): a pause, not a measure of capacity.
                history.rates.clear();
                return;
            }
            keep_last(&mut history.rates, (finished, elapsed), RATES_KEPT);
            let bound = self.bound.load(Relaxed);
            let near_the_bound = peak >= bound.max(LITTLE_FLOOR) / 4 * 3;
            let queue_stands = fastest > unqueued.saturating_add(micros(self.target));
            if !near_the_bound && !queue_stands {
                return; // not busy: the clients set the pace, not the server
            }
            let (finished, elapsed) = history
                .rates
                .iter()
                .fold((0, 0), |(f, e), (fi, ei)| (f + fi, e + ei));
            let measured = little_bound(finished, elapsed, unqueued, micros(self.target));
            let largest = history.largest_bound(measured);
            self.bound.store(largest, Relaxed);
        }
    }
}

/// What the last intervals measured, newest last.
#[derive(Debug, Default)]
struct History {
    fastest: VecDeque<u64>,
    /// Calls finished and microseconds taken, of the last `RATES_KEPT` intervals since a pause.
    rates: VecDeque<(u64, u64)>,
    bounds: VecDeque<usize>,
}

impl History {
    /// Keeps an interval's fastest call; answers the fastest of the last `FASTEST_KEPT`.
    fn unqueued(&mut self, fastest: u64) -> u64 {
        keep_last(&mut self.fastest, fastest, FASTEST_KEPT);
        self.fastest.iter().copied().min().unwrap_or(fastest)
    }

    /// Keeps a busy interval's measured bound; answers the largest of the last `MEASURES_KEPT`.
    fn largest_bound(&mut self, measured: usize) -> usize {
        keep_last(&mut self.bounds, measured, MEASURES_KEPT);
        self.bounds.iter().copied().max().unwrap_or(measured)
    }
}

fn keep_last<T>(values: &mut VecDeque<T>, value: T, kept: usize) {
    if values.len() == kept {
        values.pop_front();
    }
    values.push_back(value);
}

/// Little's law: `finished` calls in `elapsed` microseconds, each spending `unqueued` plus at
/// most `target` microseconds, fill this many places.
fn little_bound(finished: u64, elapsed: u64, unqueued: u64, target: u64) -> usize {
    let spent = u128::from(unqueued.saturating_add(target));
    let places = u128::from(finished) * spent / u128::from(elapsed.max(1));
    usize::try_from(places).unwrap_or(usize::MAX)
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
                produce_little: Arc::new(LittleBound::new(limits.latency_target, limits.produce)),
                settle_little: Arc::new(LittleBound::new(limits.latency_target, limits.settle)),
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
        let little = self.bounds.little(kind);
        if let Some(little) = little
            && !little.admits(bound - semaphore.available_permits())
        {
            let status = Status::resource_exhausted(format!(
                "server busy: more calls of this kind would wait longer than {} \
                 (limits.in_flight.latency_target); retry with backoff",
                humantime::format_duration(self.bounds.limits.latency_target)
            ));
            return Either::Left(ready(Ok(status.into_http())));
        }
        match semaphore.clone().try_acquire_owned() {
            Ok(permit) => Either::Right(Admitted {
                inner: Box::pin(self.inner.call(request)),
                _permit: Some(permit),
                timed: little.map(|little| (little.clone(), Instant::now())),
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
    timed: Option<(Arc<LittleBound>, Instant)>,
}

impl<F: Future> Future for Admitted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let answer = self.inner.as_mut().poll(cx);
        if answer.is_ready()
            && let Some((little, began)) = self.timed.take()
        {
            little.finished(began.elapsed());
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
    fn the_bound_is_throughput_times_the_fastest_call_plus_the_target() {
        // 2,000 calls in 100 ms, the fastest 5 ms, target 20 ms: 20,000/s x 25 ms.
        assert_eq!(little_bound(2_000, 100_000, 5_000, 20_000), 500);
        // Nothing finished: nothing measured (the floor and the kept measures keep calls coming).
        assert_eq!(little_bound(0, 100_000, u64::MAX, 20_000), 0);
        // A far database: every call 150 ms, target 20 ms; all 1,000 in flight stay admitted.
        assert_eq!(little_bound(666, 100_000, 150_000, 20_000), 1_132);
    }

    /// A test's clock, in microseconds after a bound's epoch.
    struct Clock(u64);

    /// Calls `little` as `in_flight` calls in flight would, for one interval in which
    /// `finished` calls finish after `took`.
    fn interval(
        little: &LittleBound,
        clock: &mut Clock,
        in_flight: usize,
        finished: usize,
        took: Duration,
    ) {
        little.admits(in_flight);
        for _ in 0..finished {
            little.finished_at(took, clock.0);
        }
        clock.0 += micros(MEASURE_INTERVAL);
        little.finished_at(took, clock.0); // the first call of the next interval judges this one
    }

    #[test]
    fn a_busy_interval_sets_the_bound_and_a_quiet_one_leaves_it() {
        let little = LittleBound::new(Duration::from_millis(20), 2_048);
        let mut clock = Clock(0);
        // Quiet: 10 calls an interval, 3 in flight. The bound stays where it was.
        interval(&little, &mut clock, 3, 10, Duration::from_millis(1));
        interval(&little, &mut clock, 3, 10, Duration::from_millis(1));
        assert!(
            little.bound.load(Relaxed) == 2_048,
            "a quiet interval says nothing of capacity"
        );
        // Busy: 2,000 calls in flight, about 20,000 finished per second, the fastest in 5 ms:
        // 20,000/s x 25 ms = 500 places, once the busy intervals fill the throughput's window.
        for _ in 0..RATES_KEPT {
            interval(&little, &mut clock, 2_000, 500, Duration::from_millis(5));
        }
        assert!(little.admits(300), "the measured bound admits");
        assert!(
            !little.admits(1_000),
            "past the measured bound calls are refused"
        );
        // A stall: an interval in which little finished. The best recent measure holds.
        interval(&little, &mut clock, 2_000, 10, Duration::from_millis(5));
        assert!(
            little.admits(300),
            "one slow interval does not shrink the bound"
        );
        // A lasting slowdown does shrink it.
        for _ in 0..MEASURES_KEPT {
            interval(&little, &mut clock, 2_000, 10, Duration::from_millis(5));
        }
        assert!(!little.admits(300), "a lasting slowdown shrinks the bound");
        assert!(little.admits(LITTLE_FLOOR - 1), "the floor always admits");
    }

    #[test]
    fn a_pause_measures_nothing() {
        let little = LittleBound::new(Duration::from_millis(20), 2_048);
        // 2,000 calls start at once, and the first finishes a minute later (a database that
        // was away, say): one call a minute is not the server's capacity.
        little.admits(2_000);
        little.finished_at(Duration::from_secs(60), 60_000_000);
        assert_eq!(little.bound.load(Relaxed), 2_048);
    }

    #[test]
    fn a_queue_that_stands_does_not_set_its_own_bound() {
        let little = LittleBound::new(Duration::from_millis(20), 2_048);
        let mut clock = Clock(0);
        interval(&little, &mut clock, 3, 10, Duration::from_millis(5));
        // Every call now waits 500 ms in a queue: about 4,000 calls/s finish (100 in 25 ms).
        // The bound is 4,000/s x (5 ms without the queue + 20 ms), about 100, not 4,000/s x
        // 520 ms. The intervals are busy although only 500 calls are in flight: the queue
        // stands.
        for _ in 0..=RATES_KEPT {
            interval(&little, &mut clock, 500, 100, Duration::from_millis(500));
        }
        assert!(little.admits(80), "the measured bound admits");
        assert!(!little.admits(500), "the queue is not kept");
    }
}
