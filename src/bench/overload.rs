//! `courier bench --overload FACTOR`: what a server does when offered more than it can carry.
//!
//! Three phases on one server and one database:
//! 1. **Calibration**: the ordinary closed-loop Publish flow (`--messages`, `--producers`)
//!    measures the throughput the server carries and the latency of a Publish at that load.
//! 2. **Overload**: Publish calls offered open-loop at FACTOR times that throughput for
//!    `--overload-seconds`, each call its own task, so the client never holds the load back.
//!    Every call is timed and sorted by its answer: accepted (OK), refused (RESOURCE_EXHAUSTED
//!    or UNAVAILABLE: the server said no), or anything else. The server's RSS is sampled.
//!    Consumers receive and ack all the while, as they would in production.
//! 3. **Drain**: consumers go on until every accepted message has been delivered; then the
//!    bench checks that no accepted message was lost and no refused one was delivered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::database::BenchDatabase;
use super::report::Report;
use super::server::Server;
use super::stats::{Latencies, Summary};
use super::target::{Consumer, GrpcTarget, Producer, Target};
use super::{BenchError, BenchOptions, Mode, workload};
use crate::config::DEFAULT_MAX_STREAMS_PER_CONNECTION;

/// HTTP/2 streams a connection may carry at once: the server's
/// `limits.max_streams_per_connection` as the bench's configuration layers set it for the
/// server it starts, the default for a server at `--addr`. The bench keeps at most this many
/// calls outstanding per connection and sheds the rest itself: past it calls would wait in the
/// client's own queue, and their latency would be the bench's, not the server's.
fn streams_per_connection(
    options: &BenchOptions,
    database: &BenchDatabase,
) -> Result<u64, BenchError> {
    if options.addr.is_some() {
        return Ok(u64::from(DEFAULT_MAX_STREAMS_PER_CONNECTION));
    }
    let config = super::server_config(options, database.url())?;
    Ok(u64::from(config.limits.max_streams_per_connection))
}
/// How often the offering loop starts the calls that have come due.
const OFFER_TICK: Duration = Duration::from_millis(1);
/// A call started later than this after its due time means the bench is short of CPU.
const LATE: Duration = Duration::from_millis(10);
/// A call's deadline: longer than any answer a healthy server gives, even overloaded.
const CALL_DEADLINE: Duration = Duration::from_secs(30);
/// How long the drain waits for accepted messages before it calls them lost.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// Receive's long poll while draining; one empty poll after the last accepted message ends it.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// What happened to one offered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Answer {
    Unsent = 0,
    InFlight,
    Accepted,
    Refused,
    /// Any other answer, a deadline included: the message may or may not exist.
    Other,
}

impl Answer {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::InFlight,
            2 => Self::Accepted,
            3 => Self::Refused,
            4 => Self::Other,
            _ => Self::Unsent,
        }
    }
}

/// Bits of `Ledger::delivered`.
const DELIVERED: u8 = 1;
const COUNTED: u8 = 2;

/// Shared by the offering loop, its calls and the consumers.
struct Ledger {
    answers: Vec<AtomicU8>,
    delivered: Vec<AtomicU8>,
    outstanding: AtomicU64,
    accepted: AtomicU64,
    delivered_accepted: AtomicU64,
    offering_done: CancellationToken,
}

impl Ledger {
    fn new(calls: usize) -> Self {
        Self {
            answers: (0..calls)
                .map(|_| AtomicU8::new(Answer::Unsent as u8))
                .collect(),
            delivered: (0..calls).map(|_| AtomicU8::new(0)).collect(),
            outstanding: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            delivered_accepted: AtomicU64::new(0),
            offering_done: CancellationToken::new(),
        }
    }

    fn answer(&self, index: usize) -> Answer {
        Answer::from_u8(self.answers[index].load(SeqCst))
    }

    fn was_delivered(&self, index: usize) -> bool {
        self.delivered[index].load(SeqCst) & DELIVERED != 0
    }

    /// Counts call `index` in `delivered_accepted` once it is both accepted and delivered. The
    /// call's answer and the delivery race; each side calls this after its own write (SeqCst,
    /// so at least one sees both), and the COUNTED bit lets only one of them count it.
    fn count_if_accepted_and_delivered(&self, index: usize) {
        if self.answer(index) == Answer::Accepted
            && self.was_delivered(index)
            && self.delivered[index].fetch_or(COUNTED, SeqCst) & COUNTED == 0
        {
            self.delivered_accepted.fetch_add(1, Relaxed);
        }
    }

    /// Every call answered and every accepted message delivered.
    fn drained(&self) -> bool {
        self.offering_done.is_cancelled()
            && self.outstanding.load(Relaxed) == 0
            && self.delivered_accepted.load(Relaxed) >= self.accepted.load(Relaxed)
    }
}

/// The timings of the overload phase.
#[derive(Default)]
struct CallTimes {
    accepted: Latencies,
    refused: Latencies,
    other: Latencies,
    codes: BTreeMap<&'static str, u64>,
    /// How long starting every call took: at the rate asked for, `calls / rate`.
    sending_seconds: f64,
    /// How late each call started against its due time: a bench short of CPU falls behind,
    /// and then what it measures is partly its own queue.
    start_lag: Latencies,
}

/// What `--overload` measured.
#[derive(Debug, Clone)]
pub struct OverloadReport {
    backend: &'static str,
    factor: f64,
    calibration: Report,
    offered_per_sec: f64,
    seconds: f64,
    offered: u64,
    not_sent: u64,
    /// How long starting (or shedding) every call took.
    sending_seconds: f64,
    start_lag: Option<Summary>,
    /// CPU cores used while offering, by the server and by the bench itself.
    server_cores: Option<f64>,
    bench_cores: Option<f64>,
    accepted: Option<Summary>,
    refused: Option<Summary>,
    other: Option<Summary>,
    codes: BTreeMap<&'static str, u64>,
    accepted_per_sec: f64,
    overload_rss: Option<u64>,
    lost: u64,
    refused_delivered: u64,
    unknown_delivered: u64,
}

/// How much --overload offers: a multiple of the carried load, or a fixed rate (comparable
/// across runs whose calibrations differ).
#[derive(Debug, Clone, Copy)]
pub enum Offer {
    Factor(f64),
    PerSecond(f64),
}

pub async fn run(
    options: &BenchOptions,
    database: &BenchDatabase,
    offer_load: Offer,
    seconds: f64,
) -> Result<OverloadReport, BenchError> {
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let topic = format!("bench-{}", &run_id[run_id.len() - 12..]);
    let calibration_options = BenchOptions {
        mode: Mode::Publish,
        rate: None,
        ..options.clone()
    };
    let mut calibration = Report::new(&calibration_options, database.backend());
    let server = Server::start(options, database.url()).await?;
    let target = GrpcTarget::connect(&server.addr(), options, &topic).await?;
    target.create_subscriptions().await?;

    eprintln!(
        "bench: overload: calibrating with {} messages",
        options.messages
    );
    let watch = server.watch();
    let outcome = workload::flow(&target, &calibration_options, &run_id).await?;
    let carried = outcome.messages as f64 / outcome.seconds.max(1e-3);
    calibration.set_outcome(outcome);
    calibration.set_sampled(watch.stop().await);
    calibration.set_server(server.describe(), server.peak_rss());

    let offered_per_sec = match offer_load {
        Offer::Factor(factor) => carried * factor,
        Offer::PerSecond(rate) => rate,
    };
    let factor = offered_per_sec / carried.max(1e-3);
    let calls = (offered_per_sec * seconds).ceil() as usize;
    eprintln!(
        "bench: overload: {carried:.0} msg/s carried; offering {offered_per_sec:.0}/s for \
         {seconds} s ({calls} calls)"
    );
    let ledger = Arc::new(Ledger::new(calls));
    let overload_id = format!("{run_id}o");
    let watch = server.watch();
    let consumers = spawn_drain(&target, options, &overload_id, ledger.clone());
    let started = Instant::now();
    let payload = Arc::new(workload::payload(options.payload_bytes));
    let max_outstanding = streams_per_connection(options, database)? * options.connections as u64;
    let times = offer(
        &target,
        &ledger,
        &overload_id,
        payload,
        (offered_per_sec, max_outstanding),
        calls,
    )
    .await?;
    let offer_seconds = started.elapsed().as_secs_f64();
    let sampled = watch.stop().await;
    // Past the limit, what is still undelivered counts as lost below.
    let drain_result = tokio::time::timeout(DRAIN_LIMIT, collect_drain(consumers))
        .await
        .unwrap_or(Ok(()));
    server.stop().await?;
    drain_result?;

    let mut report = OverloadReport {
        backend: database.backend(),
        factor,
        calibration,
        offered_per_sec,
        seconds: offer_seconds,
        offered: calls as u64,
        not_sent: 0,
        sending_seconds: times.sending_seconds,
        start_lag: times.start_lag.summary(),
        server_cores: sampled.server_cpu.map(|cpu| cpu / offer_seconds.max(1e-3)),
        bench_cores: sampled.bench_cpu.map(|cpu| cpu / offer_seconds.max(1e-3)),
        accepted: times.accepted.summary(),
        refused: times.refused.summary(),
        other: times.other.summary(),
        codes: times.codes,
        accepted_per_sec: ledger.accepted.load(Relaxed) as f64 / offer_seconds.max(1e-3),
        overload_rss: sampled.max_rss,
        lost: 0,
        refused_delivered: 0,
        unknown_delivered: 0,
    };
    for index in 0..calls {
        let delivered = ledger.was_delivered(index);
        match ledger.answer(index) {
            Answer::Unsent => report.not_sent += 1,
            Answer::Accepted if !delivered => report.lost += 1,
            Answer::Refused if delivered => report.refused_delivered += 1,
            Answer::Other | Answer::InFlight if delivered => report.unknown_delivered += 1,
            _ => {}
        }
    }
    Ok(report)
}

/// Starts the calls open-loop: call i is due at i / rate, whether or not earlier ones have
/// been answered.
async fn offer(
    target: &GrpcTarget,
    ledger: &Arc<Ledger>,
    run_id: &str,
    payload: Arc<Vec<u8>>,
    (rate, max_outstanding): (f64, u64),
    calls: usize,
) -> Result<CallTimes, BenchError> {
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    let mut next = 0usize;
    let mut times = CallTimes::default();
    while next < calls {
        let due = ((start.elapsed().as_secs_f64() * rate) as usize + 1).min(calls);
        let now = start.elapsed();
        while next < due {
            let index = next;
            next += 1;
            if ledger.outstanding.load(Relaxed) >= max_outstanding {
                continue;
            }
            let due_at = Duration::from_secs_f64(index as f64 / rate);
            times.start_lag.record(now.saturating_sub(due_at));
            ledger.outstanding.fetch_add(1, Relaxed);
            ledger.answers[index].store(Answer::InFlight as u8, Relaxed);
            let producer = target.producer(index);
            let key = workload::key(run_id, index as u64);
            tasks.spawn(call(producer, key, payload.clone(), ledger.clone(), index));
        }
        while let Some(done) = tasks.try_join_next() {
            record(&mut times, done);
        }
        tokio::time::sleep(OFFER_TICK).await;
    }
    times.sending_seconds = start.elapsed().as_secs_f64();
    while let Some(done) = tasks.join_next().await {
        record(&mut times, done);
    }
    ledger.offering_done.cancel();
    Ok(times)
}

fn record(
    times: &mut CallTimes,
    done: Result<(Answer, Duration, &'static str), tokio::task::JoinError>,
) {
    let Ok((answer, latency, code)) = done else {
        return;
    };
    match answer {
        Answer::Accepted => times.accepted.record(latency),
        Answer::Refused => times.refused.record(latency),
        _ => times.other.record(latency),
    }
    *times.codes.entry(code).or_default() += 1;
}

async fn call(
    mut producer: Box<dyn Producer>,
    key: String,
    payload: Arc<Vec<u8>>,
    ledger: Arc<Ledger>,
    index: usize,
) -> (Answer, Duration, &'static str) {
    let started = Instant::now();
    let result = tokio::time::timeout(CALL_DEADLINE, producer.publish(key, payload.to_vec())).await;
    let latency = started.elapsed();
    let (answer, code) = match result {
        Ok(Ok(())) => (Answer::Accepted, tonic::Code::Ok),
        Ok(Err(BenchError::Rpc { status, .. })) => match status.code() {
            code @ (tonic::Code::ResourceExhausted | tonic::Code::Unavailable) => {
                (Answer::Refused, code)
            }
            code => (Answer::Other, code),
        },
        Ok(Err(_)) => (Answer::Other, tonic::Code::Unknown),
        Err(_) => (Answer::Other, tonic::Code::DeadlineExceeded),
    };
    if answer == Answer::Accepted {
        ledger.accepted.fetch_add(1, Relaxed);
    }
    ledger.answers[index].store(answer as u8, SeqCst);
    // It may have been delivered before its answer came back.
    ledger.count_if_accepted_and_delivered(index);
    ledger.outstanding.fetch_sub(1, Relaxed);
    (answer, latency, crate::metrics::code_name(code))
}

fn spawn_drain(
    target: &GrpcTarget,
    options: &BenchOptions,
    run_id: &str,
    ledger: Arc<Ledger>,
) -> JoinSet<Result<(), BenchError>> {
    let mut consumers = JoinSet::new();
    for index in 0..options.consumers {
        let consumer = target.consumer(0, index);
        consumers.spawn(drain(
            consumer,
            ledger.clone(),
            options.batch,
            format!("{run_id}-"),
        ));
    }
    consumers
}

/// Receives and acks until every accepted message has been seen, then once more, empty.
async fn drain(
    mut consumer: Box<dyn Consumer>,
    ledger: Arc<Ledger>,
    batch: u32,
    prefix: String,
) -> Result<(), BenchError> {
    loop {
        let received = consumer.receive(batch, DRAIN_WAIT).await?;
        if received.is_empty() && ledger.drained() {
            return Ok(());
        }
        let mut receipts = Vec::with_capacity(received.len());
        for delivery in received {
            let index = delivery
                .key
                .strip_prefix(&prefix)
                .and_then(|index| index.parse::<usize>().ok())
                .filter(|index| *index < ledger.delivered.len());
            if let Some(index) = index {
                ledger.delivered[index].fetch_or(DELIVERED, SeqCst);
                ledger.count_if_accepted_and_delivered(index);
            }
            receipts.push(delivery.receipt);
        }
        if !receipts.is_empty() {
            consumer.ack(receipts).await?;
        }
    }
}

async fn collect_drain(mut consumers: JoinSet<Result<(), BenchError>>) -> Result<(), BenchError> {
    while let Some(joined) = consumers.join_next().await {
        joined.map_err(|error| BenchError::Server(format!("a drain task failed: {error}")))??;
    }
    Ok(())
}

impl OverloadReport {
    /// Whether the server kept every promise: nothing accepted lost, nothing refused delivered.
    pub fn kept_its_promises(&self) -> bool {
        self.lost == 0 && self.refused_delivered == 0
    }

    /// Calls actually started (not shed) per second of offering.
    fn sent_per_sec(&self) -> f64 {
        (self.offered - self.not_sent) as f64 / self.sending_seconds.max(1e-3)
    }

    /// Whether the bench itself could not keep up with the rate it was asked to offer: it
    /// started calls more than [`LATE`] late at p99, or started them at under 90 % of the rate.
    pub fn fell_behind(&self) -> bool {
        let late = self
            .start_lag
            .as_ref()
            .is_some_and(|lag| lag.p99_ms > LATE.as_secs_f64() * 1000.0);
        late || (self.offered as f64) < 0.9 * self.offered_per_sec * self.sending_seconds
    }

    /// One JSON object: the overload figures, with the calibration run's own report nested.
    pub fn json(&self) -> Value {
        json!({
            "mode": "overload",
            "backend": self.backend,
            "factor": self.factor,
            "carried_msgs_per_sec": self.calibration.msgs_per_sec().round(),
            "offered_per_sec": self.offered_per_sec.round(),
            "seconds": self.seconds,
            "offered": self.offered,
            "shed_by_bench": self.not_sent,
            "sent_per_sec": self.sent_per_sec().round(),
            "bench_fell_behind": self.fell_behind(),
            "start_lag_ms": self.start_lag,
            "server_cpu_cores": self.server_cores.map(round2),
            "bench_cpu_cores": self.bench_cores.map(round2),
            "accepted_per_sec": self.accepted_per_sec.round(),
            "latency_ms": {
                "accepted": self.accepted,
                "refused": self.refused,
                "other": self.other,
            },
            "answers": self.codes,
            "server_max_rss_sampled_mib": self.overload_rss.map(mib),
            "lost": self.lost,
            "refused_delivered": self.refused_delivered,
            "unknown_delivered": self.unknown_delivered,
            "calibration": self.calibration.json(),
        })
    }

    /// Readable lines, then the JSON object on the last line.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let calls = |summary: &Option<Summary>| match summary {
            Some(s) => format!(
                "{} calls, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                s.count, s.p50_ms, s.p99_ms, s.max_ms
            ),
            None => "none".into(),
        };
        let cores = |cores: Option<f64>| cores.map_or("unknown".into(), |c| format!("{c:.2}"));
        let rss =
            |bytes: Option<u64>| bytes.map_or("unknown".into(), |b| format!("{:.0} MiB", mib(b)));
        let calibration = self.calibration.json();
        let mut out = String::new();
        let mut line = |text: String| {
            let _ = writeln!(out, "{text}");
        };
        line(format!(
            "courier bench --overload: {:.0} calls/s offered, {:.1}x the carried load ({})",
            self.offered_per_sec, self.factor, self.backend
        ));
        line(format!(
            "  carried:  {:.0} msg/s closed loop; Publish p99 {} ms; server RSS up to {} MiB",
            self.calibration.msgs_per_sec(),
            calibration["latency_ms"]["send"]["p99_ms"],
            calibration["server_max_rss_sampled_mib"]
        ));
        line(format!(
            "  offered:  {:.0} calls/s open loop for {:.1} s ({} calls; {} shed by the bench at its \
             stream limit)",
            self.offered_per_sec, self.seconds, self.offered, self.not_sent
        ));
        line(format!(
            "  sent:     {:.0} calls/s; a call started {} late at p99; CPU cores used: server {}, \
             bench {}",
            self.sent_per_sec(),
            self.start_lag
                .as_ref()
                .map_or("never".into(), |lag| format!("{:.1} ms", lag.p99_ms)),
            cores(self.server_cores),
            cores(self.bench_cores),
        ));
        if self.fell_behind() {
            line(
                "  warning:  the bench could not offer this rate (it started calls late or \
                 slower than asked); the latencies below include its own queue, not only the \
                 server's answer"
                    .into(),
            );
        }
        line(format!(
            "  accepted: {} ({:.0}/s)",
            calls(&self.accepted),
            self.accepted_per_sec
        ));
        line(format!("  refused:  {}", calls(&self.refused)));
        line(format!("  other:    {}", calls(&self.other)));
        line(format!("  answers:  {:?}", self.codes));
        line(format!(
            "  server RSS under overload: up to {}",
            rss(self.overload_rss)
        ));
        line(format!(
            "  promises: {} accepted and lost, {} refused and delivered ({} without a clear \
             answer delivered)",
            self.lost, self.refused_delivered, self.unknown_delivered
        ));
        line(self.json().to_string());
        out
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn mib(bytes: u64) -> f64 {
    (bytes as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0
}
