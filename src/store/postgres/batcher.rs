//! Group commit for PostgreSQL: concurrent calls of one kind (Prepare, Confirm) are written by
//! one statement, so many producers share one round trip, one transaction and one WAL flush.
//! At a few thousand messages a second the per-statement work (round trip, executor start,
//! commit) costs PostgreSQL and Courier more CPU than the rows themselves.
//!
//! Nothing waits to fill a batch: a call that finds fewer than `max_running` batches in flight
//! starts one at once, and calls that arrive while every batch is busy join the next. A call
//! big enough to fill half a batch alone skips the queue and is written by itself at once. A
//! batch runs in its own task, so a caller that goes away (a cancelled RPC) never strands the
//! others.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tracing::{Instrument, Span};

use crate::store::StoreError;

/// What a batch answers for one of its items.
pub enum Outcome<D> {
    /// Written by the batch.
    Done(D),
    /// Not written (a case the batch statement leaves alone, or a batch that failed for a
    /// reason other than the database being away): the caller takes the single-call path,
    /// which answers every case and is safe to run after a batch that may have committed.
    FallBack,
    /// The database is away; the caller answers Unavailable.
    Failed(StoreError),
}

type Run<I, D> = Box<
    dyn Fn(Vec<I>) -> Pin<Box<dyn Future<Output = Result<Vec<Option<D>>, StoreError>> + Send>>
        + Send
        + Sync,
>;

pub struct Batcher<I, D> {
    shared: Arc<Shared<I, D>>,
}

struct Shared<I, D> {
    queue: Mutex<Queue<I, D>>,
    /// Writes a batch; answers one `Some` per written item, in order, `None` for the rest.
    run: Run<I, D>,
    max_running: usize,
    limits: Limits<I>,
}

/// How much one batch may take: items, and bytes as `size` counts them (at least one item).
pub struct Limits<I> {
    pub items: usize,
    pub bytes: usize,
    pub size: fn(&I) -> usize,
}

/// A queued item, how to answer it, and the span of the call it came from (its batch's span
/// links to it).
type Waiting<I, D> = (I, oneshot::Sender<Outcome<D>>, Span);

struct Queue<I, D> {
    waiting: VecDeque<Waiting<I, D>>,
    running: usize,
}

impl<I: Send + 'static, D: Send + 'static> Batcher<I, D> {
    pub fn new<F, Fut>(max_running: usize, limits: Limits<I>, run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Option<D>>, StoreError>> + Send + 'static,
    {
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    waiting: VecDeque::new(),
                    running: 0,
                }),
                run: Box::new(move |items| Box::pin(run(items))),
                max_running: max_running.max(1),
                limits,
            }),
        }
    }

    /// Queues `item` for the next batch and waits for its outcome.
    pub async fn submit(&self, item: I) -> Outcome<D> {
        let (answer, outcome) = oneshot::channel();
        if (self.shared.limits.size)(&item) * 2 > self.shared.limits.bytes {
            // An item that fills half a batch alone gains little from company, and must not
            // hold a batch slot while small items queue behind it (a Prepare of a large
            // payload, an Ack of most of a 1,000-message Receive): it is written at once, by
            // itself.
            let alone = vec![(item, answer, Span::current())];
            let shared = self.shared.clone();
            tokio::spawn(async move { shared.write(alone).await });
            return outcome.await.unwrap_or(Outcome::FallBack);
        }
        let start = {
            let mut queue = self.shared.lock();
            queue.waiting.push_back((item, answer, Span::current()));
            let start = queue.running < self.shared.max_running;
            if start {
                queue.running += 1;
            }
            start
        };
        if start {
            tokio::spawn(Shared::drain(self.shared.clone()));
        }
        // A batch task that panicked dropped its answers: the single-call path decides.
        outcome.await.unwrap_or(Outcome::FallBack)
    }
}

impl<I: Send + 'static, D: Send + 'static> Shared<I, D> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<I, D>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many of the waiting items the next batch takes: one at least, then as many as fit.
    fn batch_len(&self, waiting: &VecDeque<Waiting<I, D>>) -> usize {
        let mut bytes = 0;
        let mut take = 0;
        for (item, _, _) in waiting.iter().take(self.limits.items.max(1)) {
            bytes += (self.limits.size)(item);
            if take > 0 && bytes > self.limits.bytes {
                break;
            }
            take += 1;
        }
        take
    }

    /// Writes batches until the queue is empty, then ends.
    async fn drain(self: Arc<Self>) {
        loop {
            let batch: Vec<_> = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.running -= 1;
                    return;
                }
                let take = self.batch_len(&queue.waiting);
                queue.waiting.drain(..take).collect()
            };
            if let Some(cause) = self.write(batch).await {
                // The database is away: calls that queued meanwhile would wait for a batch of
                // their own only to hear the same, and answer after twice their bound. They
                // hear it now.
                let queued: Vec<_> = self.lock().waiting.drain(..).collect();
                tell_away(queued.into_iter().map(|(_, answer, _)| answer), &cause);
            }
        }
    }

    /// Writes one batch and answers each of its callers; returns the cause when the database
    /// was away.
    async fn write(&self, batch: Vec<Waiting<I, D>>) -> Option<SharedCause> {
        let count = batch.len();
        // One span per batch statement, linked to the calls it wrote for.
        let span = tracing::info_span!("store_batch", db.system = "postgresql", operations = count);
        let mut items = Vec::with_capacity(count);
        let mut answers = Vec::with_capacity(count);
        for (item, answer, caller) in batch {
            span.follows_from(&caller);
            items.push(item);
            answers.push(answer);
        }
        match (self.run)(items).instrument(span).await {
            Ok(done) if done.len() == count => {
                for (answer, done) in answers.into_iter().zip(done) {
                    let outcome = done.map_or(Outcome::FallBack, Outcome::Done);
                    let _ = answer.send(outcome);
                }
            }
            Ok(done) => {
                tracing::error!(
                    items = count,
                    answers = done.len(),
                    "a batch answered a different number of items; they take the single-call path"
                );
                answers.into_iter().for_each(|answer| {
                    let _ = answer.send(Outcome::FallBack);
                });
            }
            Err(StoreError::Unavailable(cause)) => {
                let cause = SharedCause(Arc::from(cause));
                tell_away(answers, &cause);
                return Some(cause);
            }
            Err(error) => {
                tracing::debug!(error = %error, items = count, "batch failed; its items take the single-call path");
                answers.into_iter().for_each(|answer| {
                    let _ = answer.send(Outcome::FallBack);
                });
            }
        }
        None
    }
}

/// Answers each caller that the database is away, all with the one cause, shared.
fn tell_away<D>(
    answers: impl IntoIterator<Item = oneshot::Sender<Outcome<D>>>,
    cause: &SharedCause,
) {
    for answer in answers {
        let _ = answer.send(Outcome::Failed(StoreError::unavailable(cause.clone())));
    }
}

/// One batch's cause of failure, told to each of its callers.
#[derive(Debug, Clone)]
struct SharedCause(Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for SharedCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// At most `items` per batch, and 100 bytes where each item counts as its value.
    fn limits(items: usize) -> Limits<u32> {
        Limits {
            items,
            bytes: 100,
            size: |n| *n as usize,
        }
    }

    /// A batcher whose batches double even numbers, leave odd ones to the single-call path
    /// and record their sizes.
    fn doubling(max_running: usize, sizes: Arc<Mutex<Vec<usize>>>) -> Batcher<u32, u32> {
        Batcher::new(max_running, limits(8), move |items: Vec<u32>| {
            let sizes = sizes.clone();
            async move {
                sizes.lock().unwrap().push(items.len());
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(items
                    .into_iter()
                    .map(|n| (n % 2 == 0).then_some(n * 2))
                    .collect())
            }
        })
    }

    #[tokio::test]
    async fn concurrent_items_share_batches_and_get_their_own_answers() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let batcher = Arc::new(doubling(1, sizes.clone()));
        let calls: Vec<_> = (0..20u32)
            .map(|n| {
                let batcher = batcher.clone();
                tokio::spawn(async move { (n, batcher.submit(n).await) })
            })
            .collect();
        for call in calls {
            let (n, outcome) = call.await.unwrap();
            match outcome {
                Outcome::Done(doubled) => assert_eq!(doubled, n * 2),
                Outcome::FallBack => assert_eq!(n % 2, 1, "{n} should have been written"),
                Outcome::Failed(error) => panic!("{error}"),
            }
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 20);
        assert!(sizes.iter().all(|&size| size <= 8), "{sizes:?}");
        assert!(
            sizes.len() < 20,
            "items queued behind a running batch share the next: {sizes:?}"
        );
    }

    #[tokio::test]
    async fn a_lone_item_is_written_at_once_and_the_batcher_goes_idle() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let batcher = doubling(2, sizes.clone());
        assert!(matches!(batcher.submit(4).await, Outcome::Done(8)));
        assert!(matches!(batcher.submit(6).await, Outcome::Done(12)));
        assert_eq!(*sizes.lock().unwrap(), vec![1, 1]);
        assert_eq!(batcher.shared.lock().running, 0);
    }

    #[tokio::test]
    async fn a_big_item_does_not_wait_for_the_batches_in_flight() {
        // Small items' batches hold until the gate opens; big ones (over half of the 100-byte
        // limit) must be written meanwhile.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let batcher = Arc::new(Batcher::new(1, limits(8), {
            let gate = gate.clone();
            move |items: Vec<u32>| {
                let gate = gate.clone();
                async move {
                    if items.iter().any(|&n| n < 50) {
                        let _ = gate.acquire().await.unwrap();
                    }
                    Ok(items.into_iter().map(|n| Some(n * 2)).collect())
                }
            }
        }));
        let small = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit(2).await }
        });
        tokio::task::yield_now().await;
        let big = tokio::time::timeout(Duration::from_secs(5), batcher.submit(60)).await;
        assert!(matches!(big, Ok(Outcome::Done(120))), "the big item waited");
        assert!(!small.is_finished());
        gate.add_permits(1);
        assert!(matches!(small.await.unwrap(), Outcome::Done(4)));
    }

    #[test]
    fn batches_stop_at_the_byte_limit_but_take_one_item_however_large() {
        let batcher = doubling(1, Arc::default());
        let waiting = |sizes: &[u32]| -> VecDeque<_> {
            let waiting = |&n| (n, oneshot::channel().0, Span::none());
            sizes.iter().map(waiting).collect()
        };
        let shared = &batcher.shared;
        assert_eq!(shared.batch_len(&waiting(&[40, 40, 40])), 2);
        assert_eq!(shared.batch_len(&waiting(&[500, 1])), 1);
        assert_eq!(shared.batch_len(&waiting(&[0; 20])), 8);
    }

    #[tokio::test]
    async fn a_database_away_fails_every_item_and_other_errors_fall_back() {
        let calls = Arc::new(AtomicUsize::new(0));
        let batcher: Batcher<u32, u32> = Batcher::new(1, limits(8), {
            let calls = calls.clone();
            move |_items: Vec<u32>| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        Err(StoreError::from(sqlx::Error::PoolTimedOut))
                    } else {
                        Err(StoreError::internal("deadlock"))
                    }
                }
            }
        });
        assert!(matches!(
            batcher.submit(1).await,
            Outcome::Failed(StoreError::Unavailable(_))
        ));
        assert!(matches!(batcher.submit(2).await, Outcome::FallBack));
    }

    #[tokio::test]
    async fn calls_queued_behind_a_batch_that_found_the_database_away_hear_it_at_once() {
        let batches = Arc::new(AtomicUsize::new(0));
        let batcher = Arc::new(Batcher::new(1, limits(8), {
            let batches = batches.clone();
            move |_items: Vec<u32>| {
                batches.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err::<Vec<Option<u32>>, _>(StoreError::from(sqlx::Error::PoolTimedOut))
                }
            }
        }));
        let submit = |n: u32| {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit(n).await })
        };
        let mut calls = vec![submit(0)];
        // The first batch is running when the others queue.
        tokio::time::sleep(Duration::from_millis(10)).await;
        calls.extend((1..5).map(submit));
        for call in calls {
            let outcome = call.await.unwrap();
            assert!(matches!(
                outcome,
                Outcome::Failed(StoreError::Unavailable(_))
            ));
        }
        assert_eq!(
            batches.load(Ordering::SeqCst),
            1,
            "the queued calls ran no batch of their own"
        );
    }
}
