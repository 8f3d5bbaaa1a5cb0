//! The single SQLite writer: every write is queued here and committed in group transactions.
//! Each queued operation runs inside its own savepoint, so one failing operation rolls back
//! alone; its caller hears back only after the whole batch committed.
//!
//! The writer is a thread of its own with a synchronous connection (rusqlite): it takes every
//! queued operation, runs the batch start to end without leaving the thread, commits, then
//! answers the callers. (Through an async driver every statement was a round trip to the
//! driver's connection thread, and those round trips, not SQLite, bounded throughput.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use tracing::Span;

use super::error::{batch_not_committed, writer_stopped};
use crate::store::StoreError;

/// A queued write: runs on the writer's connection and says whether it failed and how to
/// answer its caller once the batch's commit is known.
type Job = Box<dyn FnOnce(&Connection) -> Ran + Send>;

/// Answers a caller with its operation's result, or with the batch's commit failure.
type Answer = Box<dyn FnOnce(Option<&rusqlite::Error>) + Send>;

struct Ran {
    failed: bool,
    answer: Answer,
}

/// A job with the span of the call that queued it, which its batch's span links to.
struct Queued {
    job: Job,
    caller: Span,
}

/// Handle to the writer thread; cloning shares the queue.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::UnboundedSender<Queued>,
}

impl Writer {
    /// Starts the writer thread on `connection`; it ends (closing the connection) when every
    /// handle is dropped.
    /// Its commits count towards [`commits_to`] of `database_url`.
    pub fn start(
        connection: Connection,
        max_batch: usize,
        database_url: &str,
    ) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::unbounded_channel();
        let commits = commit_counter(database_url);
        std::thread::Builder::new()
            .name("courier-sqlite-writer".into())
            .spawn(move || run(connection, jobs, max_batch, &commits))?;
        Ok(Self { queue })
    }

    /// Runs `operation` in the next group transaction and returns its result after commit.
    pub async fn write<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let result = operation(connection);
            let failed = result.is_err();
            let answer = Box::new(move |commit_failure: Option<&rusqlite::Error>| {
                let result = match commit_failure {
                    None => result,
                    Some(failure) => Err(batch_not_committed(failure)),
                };
                let _ = reply.send(result);
            });
            Ran { failed, answer }
        });
        let queued = Queued {
            job,
            caller: Span::current(),
        };
        self.queue.send(queued).map_err(|_| writer_stopped())?;
        // A dropped reply means the job never ran (the batch could not even begin).
        answer.await.map_err(|_| writer_stopped())?
    }

    pub fn is_running(&self) -> bool {
        !self.queue.is_closed()
    }
}

/// Commits per database URL by the writers of this process, for `courier bench` to report
/// commits per message without a method on the Store trait. Keyed by database, so stores of
/// other databases in the same process (tests running side by side) do not count.
static COMMITS: Mutex<Option<HashMap<String, Arc<AtomicU64>>>> = Mutex::new(None);

fn commit_counter(database_url: &str) -> Arc<AtomicU64> {
    let mut counters = COMMITS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    counters
        .get_or_insert_with(HashMap::new)
        .entry(database_url.to_owned())
        .or_default()
        .clone()
}

/// Write transactions this process's SQLite writers have committed to `database_url` so far.
pub fn commits_to(database_url: &str) -> u64 {
    commit_counter(database_url).load(Relaxed)
}

fn run(
    connection: Connection,
    mut jobs: mpsc::UnboundedReceiver<Queued>,
    max_batch: usize,
    commits: &AtomicU64,
) {
    let mut batch = Vec::with_capacity(max_batch);
    // Blocks this thread (never a runtime's) until work arrives, then takes whatever else
    // queued meanwhile: the batch grows with the load.
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // One span per group commit: how many operations shared the transaction and its fsync,
        // linked to the calls they came from.
        let span = tracing::info_span!(
            "store_batch",
            db.system = "sqlite",
            operations = batch.len(),
        );
        for queued in &batch {
            span.follows_from(&queued.caller);
        }
        let _in_batch = span.enter();
        let jobs = batch.drain(..).map(|queued| queued.job);
        let (answers, failure) = match commit_batch(&connection, jobs) {
            Ok(answers) => {
                commits.fetch_add(1, Relaxed);
                (answers, None)
            }
            Err((answers, error)) => {
                tracing::error!(error = %error, "sqlite batch failed to commit");
                (answers, Some(error))
            }
        };
        for answer in answers {
            answer(failure.as_ref());
        }
    }
    if let Err((_, error)) = connection.close() {
        tracing::warn!(error = %error, "closing the sqlite writer connection failed");
    }
}

type Answers = Vec<Answer>;

/// Runs a batch in one transaction. On failure the transaction is rolled back and the answers
/// of the operations that ran are returned with the error; operations that never ran are
/// dropped, which tells their callers the store is unavailable.
fn commit_batch(
    connection: &Connection,
    batch: impl Iterator<Item = Job>,
) -> Result<Answers, (Answers, rusqlite::Error)> {
    let mut answers: Answers = Vec::new();
    if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
        return Err((answers, error));
    }
    for job in batch {
        let step = || -> Result<(), rusqlite::Error> {
            connection.prepare_cached("SAVEPOINT op")?.execute([])?;
            let ran = job(connection);
            let released = if ran.failed {
                connection
                    .prepare_cached("ROLLBACK TO op")?
                    .execute([])
                    .and_then(|_| connection.prepare_cached("RELEASE op")?.execute([]))
            } else {
                connection.prepare_cached("RELEASE op")?.execute([])
            };
            answers.push(ran.answer);
            released.map(|_| ())
        };
        if let Err(error) = step() {
            let _ = connection.execute_batch("ROLLBACK");
            return Err((answers, error));
        }
    }
    match connection.execute_batch("COMMIT") {
        Ok(()) => Ok(answers),
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            Err((answers, error))
        }
    }
}
