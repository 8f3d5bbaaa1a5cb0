//! The embedded SQLite backend: WAL, `synchronous=FULL`, one writer thread with group commit
//! (its own synchronous connection; see `writer`), and a small pool of read-only connections
//! (sqlx, which also runs the migrations).

mod checkpointer;
pub(super) mod error;
mod events;
mod lanes;
mod leases;
mod ops;
mod reads;
mod rows;
mod scheduling;
mod signing_key;
mod wal_writes;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection as _, Sqlite, SqlitePool};

use checkpointer::Checkpointer;
use reads::Reads;
use writer::Writer;
pub use writer::commits_to;

use super::subscription_cache::{self, SubscriptionCache};
use super::{
    Batch, CheckRecorded, CheckVerdict, DeadLetter, DeadLetters, DeliveryQuery, ExpiredLeases,
    InsertOutcome, MessageHistory, MessageQuery, NewMessage, Page, Stats, StatsScope, Store,
    StoreError, Written, rules,
};
use crate::config::SqliteConfig;
use crate::domain::{
    AckStatus, CheckerRegistration, Decision, DeliveryStatus, DueCheck, LeasedDelivery, MessageId,
    MessageRecord, MessageRef, MessageState, Name, Receipt, RedeliveryPlan, Subscription,
    Timestamp,
};
use crate::wakeups::Wakeups;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits on a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteStore {
    writer: Writer,
    readers: SqlitePool,
    wakeups: Wakeups,
    /// This process's copy of the subscriptions, made stale by its own subscription writes.
    subscriptions: SubscriptionCache,
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
            return Err(error::invalid_url(
                "the SQLite backend needs a file (WAL); in-memory databases are not supported",
            ));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| error::invalid_url(format_args!("not a SQLite URL: {e}")))?
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
        let writer = open_writer(options.get_filename())?;
        let checkpointer = Checkpointer::start(options.get_filename())?;
        let writer = Writer::start(writer, config.max_batch, url, Some(checkpointer))
            .map_err(StoreError::internal)?;
        Ok(Self {
            writer,
            readers,
            wakeups,
            subscriptions: SubscriptionCache::default(),
        })
    }

    /// A connection of the read-only pool.
    async fn reader(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        Ok(self.readers.acquire().await?)
    }

    /// The one write path: runs `operation` in the writer's next group transaction and, once
    /// that committed, wakes whoever its effects concern.
    async fn write<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&rusqlite::Connection) -> Written<T> + Send + 'static,
    {
        let (value, effects) = self.writer.write(operation).await?;
        if effects.subscriptions_changed {
            self.subscriptions.changed();
        }
        effects.wake(&self.wakeups);
        Ok(value)
    }

    /// Every subscription, sorted by name: the copy while it is current, else the table.
    async fn all_subscriptions(&self) -> Result<Arc<[Subscription]>, StoreError> {
        self.subscriptions
            .current_or_read(async { Reads::subscriptions(&mut *self.reader().await?, None).await })
            .await
    }
}

/// The writer's own connection, with the same durability settings as the pool's. Its WAL
/// frames reach the kernel one commit at a time (see `wal_writes`).
fn open_writer(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let vfs = wal_writes::writer_vfs().map_err(StoreError::internal)?;
    let connection = rusqlite::Connection::open_with_flags_and_vfs(
        path,
        rusqlite::OpenFlags::default(),
        vfs.name(),
    )?;
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
            return Err(error::writer_stopped());
        }
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    async fn create_subscription(
        &self,
        subscription: Subscription,
    ) -> Result<(Subscription, bool), StoreError> {
        self.write(move |conn| ops::create_subscription(conn, subscription.clone()))
            .await
    }

    async fn get_subscription(&self, name: &Name) -> Result<Subscription, StoreError> {
        match subscription_cache::named(&self.all_subscriptions().await?, name) {
            Some(subscription) => Ok(subscription),
            // Not in the copy: read the table, which tells "created by another process" from
            // "not found" in its own words.
            None => Reads::subscription(&mut *self.reader().await?, name).await,
        }
    }

    async fn list_subscriptions(
        &self,
        topic: Option<&Name>,
    ) -> Result<Vec<Subscription>, StoreError> {
        Ok(subscription_cache::on_topic(
            &self.all_subscriptions().await?,
            topic,
        ))
    }

    async fn update_subscription(
        &self,
        subscription: Subscription,
    ) -> Result<Subscription, StoreError> {
        self.write(move |conn| {
            ops::update_subscription(conn, subscription.clone(), Timestamp::now())
        })
        .await
    }

    async fn delete_subscription(&self, name: &Name) -> Result<(), StoreError> {
        let name = name.clone();
        self.write(move |conn| ops::delete_subscription(conn, &name))
            .await
    }

    async fn insert_message(&self, message: NewMessage) -> Result<InsertOutcome, StoreError> {
        self.write(move |conn| ops::insert_message(conn, &message))
            .await
    }

    async fn decide(
        &self,
        message: &MessageRef,
        decision: Decision,
        now: Timestamp,
    ) -> Result<MessageState, StoreError> {
        let message = message.clone();
        self.write(move |conn| ops::decide(conn, &message, decision, now))
            .await
    }

    async fn resolve(
        &self,
        message: &MessageRef,
        decision: Decision,
        operator: &str,
        now: Timestamp,
    ) -> Result<MessageState, StoreError> {
        let (message, operator) = (message.clone(), operator.to_owned());
        self.write(move |conn| ops::resolve(conn, &message, decision, &operator, now))
            .await
    }

    async fn message_history(&self, message: MessageId) -> Result<MessageHistory, StoreError> {
        Reads::history(&mut *self.reader().await?, message).await
    }

    async fn get_message(&self, message: &MessageRef) -> Result<MessageRecord, StoreError> {
        Reads::message(&mut *self.reader().await?, message).await
    }

    async fn list_messages(&self, query: MessageQuery) -> Result<Page<MessageRecord>, StoreError> {
        Reads::messages(&mut *self.reader().await?, &query).await
    }

    async fn register_checker(&self, checker: CheckerRegistration) -> Result<(), StoreError> {
        let now = Timestamp::now();
        self.write(move |conn| ops::register_checker(conn, checker.clone(), now))
            .await
    }

    async fn get_checker(
        &self,
        producer: &Name,
    ) -> Result<Option<CheckerRegistration>, StoreError> {
        Reads::checker(&mut *self.reader().await?, producer).await
    }

    async fn lease(
        &self,
        subscription: &Subscription,
        batch: Batch,
        now: Timestamp,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        let subscription = subscription.clone();
        self.write(move |conn| leases::lease(conn, &subscription, batch, now))
            .await
    }

    async fn return_leases(
        &self,
        leased: &[LeasedDelivery],
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let returned: Vec<(Receipt, Timestamp)> = leased
            .iter()
            .map(|delivery| (delivery.receipt.clone(), delivery.published_at))
            .collect();
        self.write(move |conn| leases::return_leases(conn, &returned, now))
            .await
    }

    async fn ack(
        &self,
        receipts: &[Receipt],
        now: Timestamp,
    ) -> Result<Vec<AckStatus>, StoreError> {
        let receipts = receipts.to_vec();
        self.write(move |conn| leases::ack(conn, &receipts, now))
            .await
    }

    async fn nack(
        &self,
        receipt: &Receipt,
        delay: Option<Duration>,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<RedeliveryPlan>, StoreError> {
        let receipt = receipt.clone();
        let error = rules::nacked(reason);
        self.write(move |conn| leases::nack(conn, &receipt, delay, &error, now))
            .await
    }

    async fn extend_lease(
        &self,
        receipt: &Receipt,
        extension: Duration,
        now: Timestamp,
    ) -> Result<Timestamp, StoreError> {
        let receipt = receipt.clone();
        self.write(move |conn| leases::extend_lease(conn, &receipt, extension, now))
            .await
    }

    async fn reject(
        &self,
        receipt: &Receipt,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (receipt, reason) = (receipt.clone(), reason.to_owned());
        self.write(move |conn| leases::reject(conn, &receipt, &reason, now))
            .await
    }

    async fn next_due(&self, subscription: &Name) -> Result<Option<Timestamp>, StoreError> {
        Reads::next_due(&mut *self.reader().await?, subscription).await
    }

    async fn expire_leases(&self, now: Timestamp) -> Result<ExpiredLeases, StoreError> {
        self.write(move |conn| leases::expire_leases(conn, now))
            .await
    }

    async fn next_lease_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        Reads::next_lease_expiry(&mut *self.reader().await?).await
    }

    async fn claim_due_checks(
        &self,
        now: Timestamp,
        limit: u32,
        hold: Duration,
    ) -> Result<Vec<DueCheck>, StoreError> {
        self.write(move |conn| scheduling::claim_due_checks(conn, now, limit, hold))
            .await
    }

    async fn record_check(
        &self,
        message_id: MessageId,
        attempt: u32,
        verdict: CheckVerdict,
        now: Timestamp,
    ) -> Result<CheckRecorded, StoreError> {
        self.write(move |conn| {
            scheduling::record_check(conn, message_id, attempt, verdict.clone(), now)
        })
        .await
    }

    async fn next_check_due(&self) -> Result<Option<Timestamp>, StoreError> {
        Reads::next_check_due(&mut *self.reader().await?).await
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
        self.write(move |conn| {
            scheduling::fail_delivery(conn, &subscription, &receipt, &error, now)
        })
        .await
    }

    async fn delete_final_messages(
        &self,
        cutoff: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.write(move |conn| scheduling::delete_final_messages(conn, cutoff, limit))
            .await
    }

    async fn oldest_final_at(&self) -> Result<Option<Timestamp>, StoreError> {
        Reads::oldest_final_at(&mut *self.reader().await?).await
    }

    async fn list_deliveries(
        &self,
        query: DeliveryQuery,
    ) -> Result<Page<DeliveryStatus>, StoreError> {
        Reads::deliveries(&mut *self.reader().await?, &query).await
    }

    async fn redrive(
        &self,
        chosen: &DeadLetters,
        rate: f64,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let chosen = chosen.clone();
        self.write(move |conn| ops::redrive(conn, &chosen, rate, now))
            .await
    }

    async fn discard_dead_letters(
        &self,
        chosen: &DeadLetters,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let chosen = chosen.clone();
        self.write(move |conn| ops::discard(conn, &chosen, now))
            .await
    }

    async fn count_dead_letters(&self, chosen: &DeadLetters) -> Result<u64, StoreError> {
        Reads::count_dead_letters(&mut *self.reader().await?, chosen).await
    }

    async fn list_dead_letters(
        &self,
        chosen: &DeadLetters,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        Reads::list_dead_letters(&mut *self.reader().await?, chosen, limit).await
    }

    async fn stats(&self, now: Timestamp, scope: StatsScope) -> Result<Stats, StoreError> {
        Reads::stats(&mut *self.reader().await?, now, scope).await
    }

    async fn shared_signing_key(&self, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let now = Timestamp::now();
        self.writer
            .write(move |conn| signing_key::get_or_insert(conn, &candidate, now))
            .await
    }
}

#[cfg(test)]
mod payload_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod test_database;
#[cfg(test)]
mod upgrade_tests;
