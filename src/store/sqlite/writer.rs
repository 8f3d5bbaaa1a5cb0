//! The single SQLite writer: every write is queued here and committed in group transactions.
//! Each queued operation runs inside its own savepoint, so one failing operation rolls back
//! alone; its caller hears back only after the whole batch committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use futures::future::BoxFuture;
use sqlx::{Connection, Executor, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

/// A queued write: runs on the writer's connection and says whether it failed and how to
/// answer its caller once the batch's commit is known.
type Job = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Ran> + Send>;

/// Answers a caller with its operation's result, or with the batch's commit failure.
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

struct Ran {
    failed: bool,
    answer: Answer,
}

/// Handle to the writer task; cloning shares the queue.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::UnboundedSender<Job>,
}

/// Counters of the writer's work: commits per operation shows group commit at work.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub operations: AtomicU64,
}

impl Writer {
    /// Starts the writer task on `connection`; it ends when every handle is dropped.
    pub fn start(connection: SqliteConnection, max_batch: usize, stats: Arc<WriterStats>) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(run(connection, jobs, max_batch, stats));
        Self { queue }
    }

    /// Runs `operation` in the next group transaction and returns its result after commit.
    pub async fn write<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            Box::pin(async move {
                let result = operation(connection).await;
                let failed = result.is_err();
                let answer = Box::new(move |commit_failure: Option<&str>| {
                    let result = match commit_failure {
                        None => result,
                        Some(failure) => Err(StoreError::internal(format!(
                            "the batch holding this write did not commit: {failure}"
                        ))),
                    };
                    let _ = reply.send(result);
                });
                Ran { failed, answer }
            })
        });
        self.queue.send(job).map_err(|_| writer_gone())?;
        // A dropped reply means the job never ran (the batch could not even begin).
        answer.await.map_err(|_| writer_gone())?
    }

    pub fn is_running(&self) -> bool {
        !self.queue.is_closed()
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable(sqlx::Error::WorkerCrashed)
}

async fn run(
    mut connection: SqliteConnection,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    max_batch: usize,
    stats: Arc<WriterStats>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while jobs.recv_many(&mut batch, max_batch).await > 0 {
        let (answers, failure) = match commit_batch(&mut connection, batch.drain(..)).await {
            Ok(answers) => {
                stats.commits.fetch_add(1, Relaxed);
                stats.operations.fetch_add(answers.len() as u64, Relaxed);
                (answers, None)
            }
            Err((answers, error)) => {
                tracing::error!(error = %error, "sqlite batch failed to commit");
                (answers, Some(error.to_string()))
            }
        };
        for answer in answers {
            answer(failure.as_deref());
        }
    }
    let _ = connection.close().await;
}

type Answers = Vec<Answer>;

/// Runs a batch in one transaction. On failure the transaction is rolled back and the answers
/// of the operations that ran are returned with the error; operations that never ran are
/// dropped, which tells their callers the store is unavailable.
///
/// Every statement is a round trip to sqlx's connection thread, which costs far more than the
/// statement itself, so the bookkeeping around operations is merged: one round trip opens the
/// transaction with the first savepoint, one between operations releases (or rolls back) the
/// last savepoint and opens the next, and one releases the last and commits.
async fn commit_batch(
    connection: &mut SqliteConnection,
    batch: impl Iterator<Item = Job>,
) -> Result<Answers, (Answers, sqlx::Error)> {
    let mut answers: Answers = Vec::new();
    if let Err(error) = connection.execute("BEGIN IMMEDIATE; SAVEPOINT op").await {
        // BEGIN may have succeeded before SAVEPOINT failed; with no transaction this fails.
        let _ = connection.execute("ROLLBACK").await;
        return Err((answers, error));
    }
    let mut jobs = batch.peekable();
    while let Some(job) = jobs.next() {
        let ran = job(&mut *connection).await;
        let last = jobs.peek().is_none();
        let end = match (ran.failed, last) {
            (false, false) => "RELEASE op; SAVEPOINT op",
            (true, false) => "ROLLBACK TO op; RELEASE op; SAVEPOINT op",
            (false, true) => "RELEASE op; COMMIT",
            (true, true) => "ROLLBACK TO op; RELEASE op; COMMIT",
        };
        answers.push(ran.answer);
        if let Err(error) = connection.execute(end).await {
            let _ = connection.execute("ROLLBACK").await;
            return Err((answers, error));
        }
    }
    Ok(answers)
}
