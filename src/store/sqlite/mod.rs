//! The embedded SQLite backend: WAL, `synchronous=FULL`, one writer thread with group commit
//! (its own synchronous connection; see `writer`), and a small pool of read-only connections
//! (sqlx, which also runs the migrations).

mod ops;
mod reads;
mod rows;
mod scheduling;
mod signing_key;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection as _, SqlitePool};

use writer::Writer;
pub use writer::WriterStats;

use super::{
    AckStatus, CheckRecorded, CheckVerdict, CheckerRegistration, DeliveryQuery, DueCheck,
    ExpiredLeases, InsertOutcome, LeasedDelivery, MessageQuery, NewMessage, Page, Stats, Store,
    StoreError, Wakeups,
};
use crate::config::SqliteConfig;
use crate::domain::{
    Decision, DeliveryStatus, MessageId, MessageRecord, MessageRef, MessageState, Name, Receipt,
    RedeliveryPlan, Subscription, Timestamp,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits on a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteStore {
    writer: Writer,
    readers: SqlitePool,
    wakeups: Wakeups,
    stats: Arc<WriterStats>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`, runs migrations and starts the writer.
    pub async fn open(
        url: &str,
        config: &SqliteConfig,
        wakeups: Wakeups,
    ) -> Result<Self, StoreError> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            // The writer and the readers are separate connections that must see one database.
            return Err(StoreError::Unsupported(
                "database_url: the SQLite backend needs a file (WAL); in-memory databases are not supported".into(),
            ));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unsupported(format!("database_url is not a SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let mut connection = options.connect().await?;
        // run_direct rather than run: run's `Acquire` bound makes this future not provably
        // Send (a known sqlx/rustc limitation), and callers spawn it.
        MIGRATOR
            .run_direct(None, &mut connection, false)
            .await
            .map_err(StoreError::internal)?;
        let _ = connection.close().await;
        let readers = SqlitePoolOptions::new()
            .max_connections(config.read_connections)
            .connect_with(options.clone().read_only(true))
            .await?;
        let stats = Arc::new(WriterStats::default());
        let writer = open_writer(options.get_filename())?;
        let writer =
            Writer::start(writer, config.max_batch, stats.clone()).map_err(StoreError::internal)?;
        Ok(Self {
            writer,
            readers,
            wakeups,
            stats,
        })
    }

    /// Commits and operations of the writer so far.
    pub fn writer_stats(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }

    fn wake(&self, subscriptions: &[String]) {
        for subscription in subscriptions {
            self.wakeups.notify_subscription(subscription);
        }
        if !subscriptions.is_empty() {
            // Deliveries became due: only the push loop cares (the lease-expiry loop is told
            // about leases by `lease` itself).
            self.wakeups.notify_push();
        }
    }
}

/// The writer's own connection, with the same durability settings as the pool's.
fn open_writer(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let connection = rusqlite::Connection::open(path)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // Neither setting touches durability (every commit still syncs the WAL):
    // - temp_store = MEMORY keeps the savepoints' sub-journal (the pages each operation changes,
    //   for its own rollback) in memory; as a temporary file it was the writer's largest cost.
    //   Crash recovery never reads it: the WAL is the journal.
    // - a page cache of 16 MiB (the default is 2 MiB) keeps the indexes the writer walks.
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384;",
    )?;
    // Every statement the writer runs is one of a few dozen; keep them all prepared.
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        if !self.writer.is_running() {
            return Err(StoreError::Unavailable(sqlx::Error::WorkerCrashed));
        }
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    fn commit_count(&self) -> Option<u64> {
        Some(
            self.stats
                .commits
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    async fn create_subscription(
        &self,
        subscription: Subscription,
    ) -> Result<(Subscription, bool), StoreError> {
        self.writer
            .write(move |conn| ops::create_subscription(conn, subscription))
            .await
    }

    async fn get_subscription(&self, name: &Name) -> Result<Subscription, StoreError> {
        reads::subscription(&self.readers, name).await
    }

    async fn list_subscriptions(
        &self,
        topic: Option<&Name>,
    ) -> Result<Vec<Subscription>, StoreError> {
        reads::subscriptions(&self.readers, topic).await
    }

    async fn update_subscription(
        &self,
        subscription: Subscription,
    ) -> Result<Subscription, StoreError> {
        let (updated, wake) = self
            .writer
            .write(move |conn| ops::update_subscription(conn, subscription))
            .await?;
        self.wake(&wake);
        Ok(updated)
    }

    async fn delete_subscription(&self, name: &Name) -> Result<(), StoreError> {
        let name = name.clone();
        self.writer
            .write(move |conn| ops::delete_subscription(conn, &name))
            .await
    }

    async fn insert_message(&self, message: NewMessage) -> Result<InsertOutcome, StoreError> {
        let check_at = (!message.publish).then(|| message.now.plus(message.check_after));
        let (outcome, wake) = self
            .writer
            .write(move |conn| ops::insert_message(conn, message))
            .await?;
        self.wake(&wake);
        if let (true, Some(check_at)) = (outcome.created, check_at) {
            self.wakeups.checks().due_at(check_at);
        }
        Ok(outcome)
    }

    async fn decide(
        &self,
        message: &MessageRef,
        decision: Decision,
        now: Timestamp,
    ) -> Result<MessageState, StoreError> {
        let message = message.clone();
        let (state, wake) = self
            .writer
            .write(move |conn| ops::decide(conn, &message, decision, now))
            .await?;
        self.wake(&wake);
        Ok(state)
    }

    async fn get_message(&self, message: &MessageRef) -> Result<MessageRecord, StoreError> {
        reads::message(&self.readers, message).await
    }

    async fn list_messages(&self, query: MessageQuery) -> Result<Page<MessageRecord>, StoreError> {
        reads::messages(&self.readers, query).await
    }

    async fn register_checker(&self, checker: CheckerRegistration) -> Result<(), StoreError> {
        let now = Timestamp::now();
        self.writer
            .write(move |conn| ops::register_checker(conn, checker, now))
            .await
    }

    async fn get_checker(
        &self,
        producer: &Name,
    ) -> Result<Option<CheckerRegistration>, StoreError> {
        reads::checker(&self.readers, producer).await
    }

    async fn lease(
        &self,
        subscription: &Subscription,
        max: u32,
        now: Timestamp,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        let subscription = subscription.clone();
        let leased = self
            .writer
            .write(move |conn| ops::lease(conn, &subscription, max, now))
            .await?;
        if let Some(first) = leased.first() {
            // The lease-expiry loop may be sleeping past these new deadlines (all the same).
            self.wakeups.leases().due_at(first.lease_expires_at);
        }
        Ok(leased)
    }

    async fn ack(
        &self,
        receipts: &[Receipt],
        now: Timestamp,
    ) -> Result<Vec<AckStatus>, StoreError> {
        let receipts = receipts.to_vec();
        self.writer
            .write(move |conn| ops::ack(conn, &receipts, now))
            .await
    }

    async fn nack(
        &self,
        receipt: &Receipt,
        delay: Option<Duration>,
        now: Timestamp,
    ) -> Result<Option<RedeliveryPlan>, StoreError> {
        let receipt = receipt.clone();
        let (plan, wake) = self
            .writer
            .write(move |conn| ops::nack(conn, &receipt, delay, now))
            .await?;
        self.wake(&wake);
        Ok(plan)
    }

    async fn extend_lease(
        &self,
        receipt: &Receipt,
        extension: Duration,
        now: Timestamp,
    ) -> Result<Timestamp, StoreError> {
        let receipt = receipt.clone();
        self.writer
            .write(move |conn| ops::extend_lease(conn, &receipt, extension, now))
            .await
    }

    async fn reject(
        &self,
        receipt: &Receipt,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (receipt, reason) = (receipt.clone(), reason.to_owned());
        self.writer
            .write(move |conn| ops::reject(conn, &receipt, &reason, now))
            .await
    }

    async fn next_due(&self, subscription: &Name) -> Result<Option<Timestamp>, StoreError> {
        reads::next_due(&self.readers, subscription).await
    }

    async fn expire_leases(&self, now: Timestamp) -> Result<ExpiredLeases, StoreError> {
        let (ended, wake) = self
            .writer
            .write(move |conn| ops::expire_leases(conn, now))
            .await?;
        self.wake(&wake);
        Ok(ended)
    }

    async fn next_lease_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        reads::next_lease_expiry(&self.readers).await
    }

    async fn claim_due_checks(
        &self,
        now: Timestamp,
        limit: u32,
        hold: Duration,
    ) -> Result<Vec<DueCheck>, StoreError> {
        self.writer
            .write(move |conn| scheduling::claim_due_checks(conn, now, limit, hold))
            .await
    }

    async fn record_check(
        &self,
        message_id: MessageId,
        attempt: u32,
        verdict: CheckVerdict,
        now: Timestamp,
    ) -> Result<CheckRecorded, StoreError> {
        let retry_at = match &verdict {
            CheckVerdict::RetryAt { at, .. } => Some(*at),
            _ => None,
        };
        let (recorded, wake) = self
            .writer
            .write(move |conn| scheduling::record_check(conn, message_id, attempt, verdict, now))
            .await?;
        self.wake(&wake);
        if let (CheckRecorded::Applied(_), Some(at)) = (recorded, retry_at) {
            self.wakeups.checks().due_at(at);
        }
        Ok(recorded)
    }

    async fn next_check_due(&self) -> Result<Option<Timestamp>, StoreError> {
        scheduling::next_check_due(&self.readers).await
    }

    async fn fail_delivery(
        &self,
        subscription: &Subscription,
        receipt: &Receipt,
        error: &str,
        now: Timestamp,
    ) -> Result<Option<RedeliveryPlan>, StoreError> {
        let (subscription, receipt, error) =
            (subscription.clone(), receipt.clone(), error.to_owned());
        let (plan, wake) = self
            .writer
            .write(move |conn| {
                scheduling::fail_delivery(conn, &subscription, &receipt, &error, now)
            })
            .await?;
        self.wake(&wake);
        Ok(plan)
    }

    async fn delete_final_messages(
        &self,
        cutoff: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.writer
            .write(move |conn| scheduling::delete_final_messages(conn, cutoff, limit))
            .await
    }

    async fn oldest_final_at(&self) -> Result<Option<Timestamp>, StoreError> {
        scheduling::oldest_final_at(&self.readers).await
    }

    async fn list_deliveries(
        &self,
        query: DeliveryQuery,
    ) -> Result<Page<DeliveryStatus>, StoreError> {
        reads::deliveries(&self.readers, query).await
    }

    async fn redrive(
        &self,
        subscription: &Name,
        message_ids: &[MessageId],
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let (name, ids) = (subscription.clone(), message_ids.to_vec());
        let redriven = self
            .writer
            .write(move |conn| ops::redrive(conn, &name, &ids, now))
            .await?;
        if redriven > 0 {
            self.wake(&[subscription.to_string()]);
        }
        Ok(redriven)
    }

    async fn stats(&self, now: Timestamp) -> Result<Stats, StoreError> {
        reads::stats(&self.readers, now).await
    }

    async fn shared_signing_key(&self, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let now = Timestamp::now();
        self.writer
            .write(move |conn| signing_key::get_or_insert(conn, &candidate, now))
            .await
    }
}
