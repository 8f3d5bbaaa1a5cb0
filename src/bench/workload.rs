//! The workload: producers and consumers as tasks over a [`Target`], timed per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::stats::{Latencies, Summary};
use super::target::{Consumer, Producer, Target};
use super::{BenchError, BenchOptions, Mode};

/// A consumer's long-poll wait; the workload ends consumers itself once everything is acked.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);
/// Tasks that load a backlog through the store: enough to fill the writer's batches.
const LOAD_TASKS: usize = 512;
/// How often a long phase reports its progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What one workload measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Messages delivered and acked on every subscription (each counted once).
    pub messages: u64,
    /// Deliveries acked (each counted once): `messages` times the subscriptions.
    pub deliveries: u64,
    /// From the first Prepare (or, for a backlog, the first Receive) to the last Ack.
    pub seconds: f64,
    /// Prepare, or Publish in publish mode.
    pub prepare: Option<Summary>,
    pub confirm: Option<Summary>,
    /// A producer's whole wait per message: Prepare plus Confirm, or the one Publish.
    pub send: Option<Summary>,
    /// From sending Confirm (or Publish) to the Receive answer that carried the delivery.
    pub delivery: Option<Summary>,
    pub receive: Option<Summary>,
    pub ack: Option<Summary>,
    /// Deliveries received again after their first (at-least-once at work).
    pub duplicates: u64,
    /// Acks not answered OK.
    pub ack_failures: u64,
    /// Receive calls, and how many of them came back empty.
    pub receives: u64,
    pub empty_receives: u64,
    pub backlog: bool,
}

/// Shared by the producer and consumer tasks of one run.
struct Progress {
    start: Instant,
    total: u64,
    /// Subscriptions each message is delivered to.
    subscriptions: u64,
    /// The next message index a producer takes.
    next: AtomicU64,
    /// Per message: nanoseconds from `start` to sending its Confirm (or Publish), plus one;
    /// 0 until sent.
    sent_at: Vec<AtomicU64>,
    /// Per subscription, then per message: whether a consumer has seen the delivery.
    seen: Vec<AtomicBool>,
    /// Distinct deliveries acked.
    acked: AtomicU64,
    /// Nanoseconds from `start` to the first Prepare, and to the last Ack.
    first_send: AtomicU64,
    last_ack: AtomicU64,
    done: CancellationToken,
}

impl Progress {
    fn new(total: u64, subscriptions: usize) -> Self {
        let len = usize::try_from(total).expect("message count fits in memory");
        Self {
            start: Instant::now(),
            total,
            subscriptions: subscriptions as u64,
            next: AtomicU64::new(0),
            sent_at: (0..len).map(|_| AtomicU64::new(0)).collect(),
            seen: (0..len * subscriptions)
                .map(|_| AtomicBool::new(false))
                .collect(),
            acked: AtomicU64::new(0),
            first_send: AtomicU64::new(u64::MAX),
            last_ack: AtomicU64::new(0),
            done: CancellationToken::new(),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Every message's delivery on every subscription.
    fn deliveries(&self) -> u64 {
        self.total * self.subscriptions
    }

    /// Where `seen` keeps message `slot`'s delivery on `subscription`.
    fn seen_slot(&self, subscription: usize, slot: usize) -> usize {
        subscription * self.sent_at.len() + slot
    }
}

#[derive(Default)]
struct ProducerTimes {
    prepare: Latencies,
    confirm: Latencies,
    send: Latencies,
}

#[derive(Default)]
struct ConsumerTimes {
    delivery: Latencies,
    receive: Latencies,
    ack: Latencies,
    duplicates: u64,
    ack_failures: u64,
    receives: u64,
    empty_receives: u64,
}

/// A payload of `bytes` bytes that does not compress to nothing.
pub(super) fn payload(bytes: usize) -> Vec<u8> {
    (0..bytes).map(|i| (i * 31 % 251) as u8).collect()
}

pub(super) fn key(run_id: &str, index: u64) -> String {
    format!("{run_id}-{index}")
}

/// The message index in a bench key.
fn index_of(key: &str) -> Option<usize> {
    key.rsplit('-').next()?.parse().ok()
}

/// Producers send `options.messages` messages while consumers receive and ack them.
pub async fn flow(
    target: &dyn Target,
    options: &BenchOptions,
    run_id: &str,
) -> Result<Outcome, BenchError> {
    let progress = Arc::new(Progress::new(options.messages, options.subscriptions));
    let payload = Arc::new(payload(options.payload_bytes));
    let consumers = spawn_consumers(target, options, &progress, false);
    let mut producers = JoinSet::new();
    for index in 0..options.producers {
        let producer = target.producer(index);
        producers.spawn(produce(
            producer,
            progress.clone(),
            payload.clone(),
            options.mode,
            options.rate,
            run_id.to_owned(),
        ));
    }
    let reporter = tokio::spawn(report_progress(progress.clone(), "flow"));
    let produced = collect(producers, &progress).await;
    let consumed = match &produced {
        // Producers failed: stop the consumers too.
        Err(_) => {
            progress.done.cancel();
            collect(consumers, &progress).await
        }
        Ok(_) => collect(consumers, &progress).await,
    };
    reporter.abort();
    let produced = produced?;
    let consumed = consumed?;

    let mut times = ProducerTimes::default();
    for part in produced {
        times.prepare.merge(part.prepare);
        times.confirm.merge(part.confirm);
        times.send.merge(part.send);
    }
    let mut outcome = outcome_of(consumed, &progress);
    let first = progress.first_send.load(Relaxed);
    let last = progress.last_ack.load(Relaxed);
    outcome.seconds = last.saturating_sub(first) as f64 / 1e9;
    outcome.prepare = times.prepare.summary();
    outcome.confirm = times.confirm.summary();
    outcome.send = times.send.summary();
    Ok(outcome)
}

/// `options.consumers` consumer tasks on each subscription.
fn spawn_consumers(
    target: &dyn Target,
    options: &BenchOptions,
    progress: &Arc<Progress>,
    timed_receive: bool,
) -> JoinSet<Result<ConsumerTimes, BenchError>> {
    let mut consumers = JoinSet::new();
    for subscription in 0..options.subscriptions {
        for index in 0..options.consumers {
            // Numbered over every subscription's consumers, so targets spread them all.
            let consumer = target.consumer(subscription, subscription * options.consumers + index);
            consumers.spawn(consume(
                consumer,
                progress.clone(),
                (options.batch, options.consumer_work),
                timed_receive,
                subscription,
            ));
        }
    }
    consumers
}

/// Joins every task; the first error cancels the rest of the run.
async fn collect<T: 'static>(
    mut tasks: JoinSet<Result<T, BenchError>>,
    progress: &Progress,
) -> Result<Vec<T>, BenchError> {
    let mut results = Vec::new();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(value)) => results.push(value),
            Ok(Err(error)) => {
                progress.done.cancel();
                failure.get_or_insert(error);
            }
            Err(error) => {
                progress.done.cancel();
                failure.get_or_insert(BenchError::Server(format!("a bench task failed: {error}")));
            }
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(results),
    }
}

fn outcome_of(consumed: Vec<ConsumerTimes>, progress: &Progress) -> Outcome {
    let mut delivery = Latencies::default();
    let mut receive = Latencies::default();
    let mut ack = Latencies::default();
    let deliveries = progress.acked.load(Relaxed);
    let mut outcome = Outcome {
        messages: deliveries / progress.subscriptions,
        deliveries,
        ..Outcome::default()
    };
    for part in consumed {
        delivery.merge(part.delivery);
        receive.merge(part.receive);
        ack.merge(part.ack);
        outcome.duplicates += part.duplicates;
        outcome.ack_failures += part.ack_failures;
        outcome.receives += part.receives;
        outcome.empty_receives += part.empty_receives;
    }
    outcome.delivery = delivery.summary();
    outcome.receive = receive.summary();
    outcome.ack = ack.summary();
    outcome
}

async fn produce(
    mut producer: Box<dyn Producer>,
    progress: Arc<Progress>,
    payload: Arc<Vec<u8>>,
    mode: Mode,
    rate: Option<f64>,
    run_id: String,
) -> Result<ProducerTimes, BenchError> {
    let mut times = ProducerTimes::default();
    loop {
        let index = progress.next.fetch_add(1, Relaxed);
        if index >= progress.total || progress.done.is_cancelled() {
            return Ok(times);
        }
        if let Some(rate) = rate {
            // Message i is due at i / rate: an open schedule, so a slow call does not lower
            // the offered rate (as long as enough producers are free).
            let due = progress.start + Duration::from_secs_f64(index as f64 / rate);
            tokio::time::sleep_until(due).await;
        }
        let slot = usize::try_from(index).expect("index fits");
        let key = key(&run_id, index);
        let started = Instant::now();
        progress
            .first_send
            .fetch_min(progress.nanos(started), Relaxed);
        match mode {
            Mode::PrepareConfirm => {
                let message_id = producer.prepare(key, payload.to_vec()).await?;
                let confirming = Instant::now();
                times.prepare.record(confirming - started);
                progress.sent_at[slot].store(progress.nanos(confirming) + 1, Relaxed);
                producer.confirm(message_id).await?;
                times.confirm.record(confirming.elapsed());
            }
            Mode::Publish => {
                progress.sent_at[slot].store(progress.nanos(started) + 1, Relaxed);
                producer.publish(key, payload.to_vec()).await?;
                times.prepare.record(started.elapsed());
            }
        }
        times.send.record(started.elapsed());
    }
}

/// Receives batches of up to `batch` on `subscription`, works on each for `work`, and acks
/// it, until every delivery is acked. `timed_receive`: record every Receive's latency (a
/// backlog, where Receive never waits), rather than the confirm-to-delivery time.
async fn consume(
    mut consumer: Box<dyn Consumer>,
    progress: Arc<Progress>,
    (batch, work): (u32, Duration),
    timed_receive: bool,
    subscription: usize,
) -> Result<ConsumerTimes, BenchError> {
    let mut times = ConsumerTimes::default();
    loop {
        let started = Instant::now();
        let received = tokio::select! {
            received = consumer.receive(batch, RECEIVE_WAIT) => received?,
            () = progress.done.cancelled() => return Ok(times),
        };
        let now = Instant::now();
        times.receives += 1;
        if received.is_empty() {
            times.empty_receives += 1;
            continue;
        }
        if timed_receive {
            times.receive.record(now - started);
            progress
                .first_send
                .fetch_min(progress.nanos(started), Relaxed);
        }
        let mut fresh = 0;
        let mut receipts = Vec::with_capacity(received.len());
        for delivery in received {
            let slot = index_of(&delivery.key).filter(|slot| *slot < progress.sent_at.len());
            if let Some(slot) = slot {
                if progress.seen[progress.seen_slot(subscription, slot)].swap(true, Relaxed) {
                    times.duplicates += 1;
                } else {
                    fresh += 1;
                    let sent = progress.sent_at[slot].load(Relaxed);
                    if !timed_receive && sent > 0 {
                        let sent = Duration::from_nanos(sent - 1);
                        times
                            .delivery
                            .record(now.duration_since(progress.start) - sent);
                    }
                }
            }
            receipts.push(delivery.receipt);
        }
        if !work.is_zero() {
            tokio::time::sleep(work).await;
        }
        let acking = Instant::now();
        times.ack_failures += consumer.ack(receipts).await?;
        let acked_at = Instant::now();
        times.ack.record(acked_at - acking);
        let acked = progress.acked.fetch_add(fresh, Relaxed) + fresh;
        if acked >= progress.deliveries() {
            progress
                .last_ack
                .fetch_max(progress.nanos(acked_at), Relaxed);
            progress.done.cancel();
            return Ok(times);
        }
    }
}

async fn report_progress(progress: Arc<Progress>, phase: &'static str) {
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let acked = progress.acked.load(Relaxed);
        let seconds = progress.start.elapsed().as_secs_f64();
        eprintln!(
            "bench: {phase}: {acked}/{} deliveries acked after {seconds:.0} s ({:.0}/s)",
            progress.deliveries(),
            acked as f64 / seconds
        );
    }
}

/// Loads `count` pending messages (Publish) through `target`; returns the seconds it took.
pub async fn load_backlog(
    target: &dyn Target,
    options: &BenchOptions,
    count: u64,
    run_id: &str,
) -> Result<f64, BenchError> {
    let progress = Arc::new(Progress::new(0, 1));
    let next = Arc::new(AtomicU64::new(0));
    let loaded = Arc::new(AtomicU64::new(0));
    let payload = Arc::new(payload(options.payload_bytes));
    let tasks = if target.path() == "store" {
        LOAD_TASKS
    } else {
        options.producers
    };
    let mut loaders = JoinSet::new();
    for index in 0..tasks {
        let mut producer = target.producer(index);
        let (next, loaded, payload) = (next.clone(), loaded.clone(), payload.clone());
        let run_id = run_id.to_owned();
        loaders.spawn(async move {
            loop {
                let index = next.fetch_add(1, Relaxed);
                if index >= count {
                    return Ok(());
                }
                producer
                    .publish(key(&run_id, index), payload.to_vec())
                    .await?;
                loaded.fetch_add(1, Relaxed);
            }
        });
    }
    let start = Instant::now();
    let reporter = tokio::spawn({
        let loaded = loaded.clone();
        async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let done = loaded.load(Relaxed);
                let seconds = start.elapsed().as_secs_f64();
                eprintln!(
                    "bench: loading backlog: {done}/{count} after {seconds:.0} s ({:.0}/s)",
                    done as f64 / seconds
                );
            }
        }
    });
    let result = collect(loaders, &progress).await;
    reporter.abort();
    result?;
    Ok(start.elapsed().as_secs_f64())
}

/// Consumes a backlog of `count` messages (keyed 0..count) on every subscription, timing
/// every Receive and Ack.
pub async fn consume_backlog(
    target: &dyn Target,
    options: &BenchOptions,
    count: u64,
) -> Result<Outcome, BenchError> {
    let progress = Arc::new(Progress::new(count, options.subscriptions));
    let consumers = spawn_consumers(target, options, &progress, true);
    let reporter = tokio::spawn(report_progress(progress.clone(), "backlog"));
    let consumed = collect(consumers, &progress).await;
    reporter.abort();
    let mut outcome = outcome_of(consumed?, &progress);
    let first = progress.first_send.load(Relaxed);
    let last = progress.last_ack.load(Relaxed);
    outcome.seconds = last.saturating_sub(first) as f64 / 1e9;
    outcome.backlog = true;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_index() {
        assert_eq!(index_of(&key("0190abcdef", 42)), Some(42));
        assert_eq!(index_of("no-number-here"), None);
    }
}
