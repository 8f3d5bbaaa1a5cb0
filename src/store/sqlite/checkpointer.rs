//! Copies the WAL's committed pages into the database file from a thread of its own, so the
//! writer's commits do not stop to do it.
//!
//! Left to itself SQLite checkpoints inside the commit that takes the WAL past 1,000 pages:
//! that commit copies every page written since the last checkpoint into the database file and
//! fsyncs it, and every caller of its batch (and of the batches queued behind it) waits for
//! that. Here a second connection runs a PASSIVE checkpoint after the writer's commits (at
//! most one every [`GAP`]), concurrently with the writer's next batch: it copies what is
//! committed, fsyncs the database file, and never blocks the writer. The writer keeps SQLite's
//! own checkpoint at 1,000 pages, which then finds little left to copy; it is still needed,
//! because the WAL starts again from its beginning only after a checkpoint that caught up with
//! the last commit, which under steady load only the writer itself can run.
//!
//! Durability does not change: a commit is durable once its WAL frames are synced (at the
//! commit, `synchronous=FULL`); this connection also runs at `synchronous=FULL`, so it syncs
//! the database file before it marks the copied frames as done.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use rusqlite::Connection;

use crate::metrics;
use crate::store::StoreError;

/// The least time between two checkpoints: each costs an fsync of the database file, and
/// pages written again meanwhile are copied once instead of twice.
const GAP: Duration = Duration::from_millis(20);

/// Handle of the checkpoint thread; it ends (closing its connection) when this is dropped.
pub struct Checkpointer {
    nudges: SyncSender<()>,
}

impl Checkpointer {
    /// Opens a connection of its own on the database at `path` and starts the thread.
    pub fn start(path: &Path) -> Result<Self, StoreError> {
        let connection = Connection::open(path)?;
        connection.execute_batch("PRAGMA synchronous = FULL;")?;
        let (nudges, received) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            // Linux keeps 15 bytes of a thread's name: distinct from the writer's in `top -H`
            // and `perf`, where "courier-sqlite-…" made both the same.
            .name("sqlite-checkpt".into())
            .spawn(move || run(&connection, &received))
            .map_err(StoreError::internal)?;
        Ok(Self { nudges })
    }

    /// Tells the thread that something was committed. Never blocks: nudges while a checkpoint
    /// runs or is due anyway fold into one.
    pub fn nudge(&self) {
        // Full: a nudge is waiting already. Disconnected: the thread is gone (it never ends
        // before this handle), and the writer's own checkpoint goes on either way.
        let _ = self.nudges.try_send(());
    }
}

fn run(connection: &Connection, nudges: &Receiver<()>) {
    let mut warned = false;
    while nudges.recv().is_ok() {
        // A row (busy, WAL pages, pages copied); busy means the writer's checkpoint held the
        // lock at that moment (and did the work), and the page counts are then -1.
        let checkpointed = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        });
        match checkpointed {
            Ok((busy, wal_pages)) => {
                if busy == 0 {
                    metrics::sqlite_checkpointed(wal_pages);
                }
                warned = false;
            }
            // A full disk or an I/O error: the writer's own checkpoint is still there, so say
            // it once and go on.
            Err(error) => {
                metrics::sqlite_checkpoint_failed();
                if !warned {
                    tracing::warn!(error = %error, "background checkpoint of the SQLite WAL failed");
                    warned = true;
                }
            }
        }
        std::thread::sleep(GAP);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Instant;

    use rusqlite::OpenFlags;

    use super::*;
    use crate::store::sqlite::writer::Writer;

    /// A writer on a fresh WAL database at `dir/name`, with a checkpointer or without.
    fn writer(dir: &tempfile::TempDir, name: &str, checkpointer: bool) -> (Writer, PathBuf) {
        let path = dir.path().join(name);
        let connection = Connection::open(&path).unwrap();
        // The table first, so it is in the file before the WAL exists.
        connection
            .execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY); PRAGMA journal_mode = WAL;")
            .unwrap();
        let checkpointer = checkpointer.then(|| Checkpointer::start(&path).unwrap());
        let url = format!("sqlite://{}", path.display());
        (
            Writer::start(connection, 64, &url, checkpointer).unwrap(),
            path,
        )
    }

    /// Rows in the database file itself: `immutable` reads it without its WAL.
    fn rows_in_the_file(path: &Path) -> i64 {
        let uri = format!("file:{}?immutable=1", path.display());
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        let file = Connection::open_with_flags(uri, flags).unwrap();
        file.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    /// A few rows, far from the 1,000 WAL pages at which the writer would checkpoint itself:
    /// only the checkpointer copies them into the file, and soon after their commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn committed_pages_reach_the_database_file_without_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (with, with_path) = writer(&dir, "with.db", true);
        let (without, without_path) = writer(&dir, "without.db", false);
        for writer in [&with, &without] {
            for x in 0..3 {
                writer
                    .write(move |connection| {
                        connection.execute("INSERT INTO t (x) VALUES (?)", [x])?;
                        Ok(())
                    })
                    .await
                    .unwrap();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while rows_in_the_file(&with_path) < 3 {
            assert!(
                Instant::now() < deadline,
                "the checkpointer never copied the commits into the database file"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            rows_in_the_file(&without_path),
            0,
            "without a checkpointer the rows stay in the WAL until 1,000 pages"
        );
        // The gauge is process-wide, and every checkpoint (this test's or another's) that ran
        // after a commit found pages in its WAL.
        let exposition = crate::metrics::encode(None);
        let wal_pages = exposition
            .lines()
            .find_map(|line| line.strip_prefix("courier_sqlite_wal_pages "))
            .expect("the WAL gauge is exported");
        assert!(wal_pages.parse::<f64>().unwrap() > 0.0, "{wal_pages}");
    }
}
