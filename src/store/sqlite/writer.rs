//! The single SQLite writer: every write is queued here and committed in group transactions;
//! a caller hears back only after the whole batch committed.
//!
//! The writer is a thread of its own with a synchronous connection (rusqlite): it takes every
//! queued operation, runs the batch start to end without leaving the thread, commits, then
//! answers the callers. (Through an async driver every statement was a round trip to the
//! driver's connection thread, and those round trips, not SQLite, bounded throughput.)
//!
//! One operation that fails must roll back alone. A savepoint per operation does that, but
//! SQLite then copies every page an operation touches into the savepoint's journal, and that
//! copying was a fifth of the writer's time. So a batch first runs optimistically, without
//! savepoints; only when one of its operations fails is it rolled back whole and run again
//! guarded, each operation in its own savepoint (operations are pure functions of their
//! inputs and the database, so a second run does what the first would have). After a failure
//! the next few batches run guarded straight away, so a workload full of refused calls does
//! not pay for every batch twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use tracing::Span;

use super::checkpointer::Checkpointer;
use super::error::{batch_not_committed, writer_stopped};
use crate::store::StoreError;

/// Batches run guarded after one whose operation failed.
const GUARDED_AFTER_FAILURE: u32 = 16;

/// A queued write. It may run twice (see the module's comment); its caller is answered once,
/// with the last run's result, after the batch's commit is known.
trait Job: Send {
    /// Runs the operation and keeps its result; answers whether it failed.
    fn run(&mut self, connection: &Connection) -> bool;
    /// Answers the caller: the kept result, or the batch's failure to commit.
    fn answer(self: Box<Self>, commit_failure: Option<&rusqlite::Error>);
}

struct Operation<T, F> {
    operation: F,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Operation<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, connection: &Connection) -> bool {
        let result = (self.operation)(connection);
        let failed = result.is_err();
        self.result = Some(result);
        failed
    }

    fn answer(self: Box<Self>, commit_failure: Option<&rusqlite::Error>) {
        let result = match (commit_failure, self.result) {
            (Some(failure), _) => Err(batch_not_committed(failure)),
            (None, Some(result)) => result,
            // Never run in a batch that committed: cannot happen, but never answer OK.
            (None, None) => Err(writer_stopped()),
        };
        let _ = self.reply.send(result);
    }
}

/// A job with the span of the call that queued it, which its batch's span links to.
struct Queued {
    job: Box<dyn Job>,
    caller: Span,
}

/// Handle to the writer thread; cloning shares the queue.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::UnboundedSender<Queued>,
}

impl Writer {
    /// Starts the writer thread on `connection`; it ends (closing the connection) when every
    /// handle is dropped. Its commits count towards [`commits_to`] of `database_url`, and
    /// each nudges `checkpointer`, if any.
    pub fn start(
        connection: Connection,
        max_batch: usize,
        database_url: &str,
        checkpointer: Option<Checkpointer>,
    ) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::unbounded_channel();
        let commits = commit_counter(database_url);
        std::thread::Builder::new()
            // At most 15 bytes, all of which Linux keeps (see the checkpointer's).
            .name("sqlite-writer".into())
            .spawn(move || run(connection, jobs, max_batch, &commits, checkpointer))?;
        Ok(Self { queue })
    }

    /// Runs `operation` in the next group transaction and returns its result after commit.
    /// The operation may run twice (a batch rolled back and run again), so it must not change
    /// anything but the database.
    pub async fn write<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            job: Box::new(Operation {
                operation,
                result: None,
                reply,
            }),
            caller: Span::current(),
        };
        self.queue.send(queued).map_err(|_| writer_stopped())?;
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
    mut queue: mpsc::UnboundedReceiver<Queued>,
    max_batch: usize,
    commits: &AtomicU64,
    checkpointer: Option<Checkpointer>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut guarded_left = 0;
    // Blocks this thread (never a runtime's) until work arrives, then takes whatever else
    // queued meanwhile: the batch grows with the load.
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match queue.try_recv() {
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
        let mut jobs: Vec<Box<dyn Job>> = batch.drain(..).map(|queued| queued.job).collect();
        // A lone operation needs no savepoint: rolling back its transaction rolls back it alone.
        let outcome = if guarded_left > 0 && jobs.len() > 1 {
            guarded_left -= 1;
            run_guarded(&connection, &mut jobs).map(|()| true)
        } else {
            match run_optimistic(&connection, &mut jobs) {
                Optimistic::Committed => Ok(true),
                Optimistic::LoneOperationFailed => Ok(false),
                Optimistic::Failed(error) => Err(error),
                Optimistic::OperationFailed => {
                    guarded_left = GUARDED_AFTER_FAILURE;
                    run_guarded(&connection, &mut jobs).map(|()| true)
                }
            }
        };
        let failure = match outcome {
            Ok(committed) => {
                if committed {
                    commits.fetch_add(1, Relaxed);
                    if let Some(checkpointer) = &checkpointer {
                        checkpointer.nudge();
                    }
                }
                None
            }
            Err(error) => {
                tracing::error!(error = %error, "sqlite batch failed to commit");
                Some(error)
            }
        };
        for job in jobs {
            job.answer(failure.as_ref());
        }
    }
    if let Err((_, error)) = connection.close() {
        tracing::warn!(error = %error, "closing the sqlite writer connection failed");
    }
}

enum Optimistic {
    Committed,
    /// The batch's only operation failed and was rolled back: its caller hears its error.
    LoneOperationFailed,
    /// An operation failed; the batch was rolled back and must run guarded.
    OperationFailed,
    /// The transaction itself failed (begin or commit); every caller hears of it.
    Failed(rusqlite::Error),
}

/// Runs a batch in one transaction without savepoints. A lone failing operation is its own
/// guarded run: its rollback leaves nothing of it.
fn run_optimistic(connection: &Connection, jobs: &mut [Box<dyn Job>]) -> Optimistic {
    if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
        return Optimistic::Failed(error);
    }
    for job in jobs.iter_mut() {
        if job.run(connection) {
            let _ = connection.execute_batch("ROLLBACK");
            if jobs.len() == 1 {
                return Optimistic::LoneOperationFailed;
            }
            return Optimistic::OperationFailed;
        }
    }
    match connection.execute_batch("COMMIT") {
        Ok(()) => Optimistic::Committed,
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            Optimistic::Failed(error)
        }
    }
}

/// Runs a batch in one transaction, each operation in its own savepoint, so one that fails
/// rolls back alone. On failure the transaction is rolled back and every caller hears of it.
fn run_guarded(connection: &Connection, jobs: &mut [Box<dyn Job>]) -> Result<(), rusqlite::Error> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    for job in jobs.iter_mut() {
        let mut step = || -> Result<(), rusqlite::Error> {
            connection.prepare_cached("SAVEPOINT op")?.execute([])?;
            if job.run(connection) {
                connection.prepare_cached("ROLLBACK TO op")?.execute([])?;
            }
            connection.prepare_cached("RELEASE op")?.execute([])?;
            Ok(())
        };
        if let Err(error) = step() {
            let _ = connection.execute_batch("ROLLBACK");
            return Err(error);
        }
    }
    connection.execute_batch("COMMIT").inspect_err(|_| {
        let _ = connection.execute_batch("ROLLBACK");
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn writer_on_a_fresh_file(dir: &tempfile::TempDir) -> (Writer, String) {
        let path = dir.path().join("writer.db");
        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER PRIMARY KEY);")
            .unwrap();
        let url = format!("sqlite://{}", path.display());
        (Writer::start(connection, 64, &url, None).unwrap(), url)
    }

    fn insert(connection: &Connection, x: i64) -> Result<(), StoreError> {
        connection.execute("INSERT INTO t (x) VALUES (?)", [x])?;
        Ok(())
    }

    /// One batch: a first write holds the writer while the others queue behind it, so they
    /// share the next transaction. One of them writes, then fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_operation_that_fails_after_writing_rolls_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, url) = writer_on_a_fresh_file(&dir);
        let holder = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write(|connection| {
                        std::thread::sleep(Duration::from_millis(200));
                        insert(connection, 0)
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let batch: Vec<_> = (1..=8)
            .map(|x| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .write(move |connection| {
                            insert(connection, x)?;
                            if x == 5 {
                                return Err(StoreError::internal("five is refused"));
                            }
                            Ok(x)
                        })
                        .await
                })
            })
            .collect();
        holder.await.unwrap().unwrap();
        for (x, call) in (1..=8).zip(batch) {
            let answer = call.await.unwrap();
            if x == 5 {
                assert!(answer.is_err(), "the failing write hears its error");
            } else {
                assert_eq!(answer.unwrap(), x, "every other write hears its own result");
            }
        }
        assert!(commits_to(&url) <= 3, "the queued writes shared a batch");

        let written = writer
            .write(|connection| {
                let mut statement = connection.prepare("SELECT x FROM t ORDER BY x")?;
                let rows = statement.query_map([], |row| row.get::<_, i64>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(
            written,
            vec![0, 1, 2, 3, 4, 6, 7, 8],
            "nothing of the failed write stays"
        );
    }

    #[tokio::test]
    async fn a_lone_failing_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, _) = writer_on_a_fresh_file(&dir);
        let failed = writer
            .write(|connection| -> Result<(), StoreError> {
                insert(connection, 1)?;
                Err(StoreError::internal("refused"))
            })
            .await;
        assert!(failed.is_err());
        let count = writer
            .write(|connection| {
                Ok(connection
                    .query_row("SELECT count(*) FROM t", [], |row| row.get::<_, i64>(0))?)
            })
            .await
            .unwrap();
        assert_eq!(count, 0);
    }
}
