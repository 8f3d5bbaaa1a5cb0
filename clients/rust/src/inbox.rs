//! The inbox: a row per processed message in the consumer's own database (`courier_inbox`),
//! written in the same transaction as the handler's work. A redelivered message finds its row
//! and is acknowledged without running the work again, so "work done" and "message seen" can
//! never disagree.

use sqlx::Pool;

use crate::proto::Delivery;
use crate::sql::{self, Backend};

const RECORD: &str = "INSERT INTO courier_inbox (subscription, dedup_key, message_id) \
     VALUES ($1, $2, $3) ON CONFLICT (subscription, dedup_key) DO NOTHING";

/// What makes two deliveries the same message for the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DedupOn {
    /// The message id Courier gave the message (the default).
    #[default]
    MessageId,
    /// The producer and its business key: also catches a producer that sent the same key
    /// again after the first message left Courier's dedup window.
    ProducerKey,
}

/// What [`Inbox::process`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed<T> {
    /// The work ran and committed with the inbox row; it returned this.
    Done(T),
    /// The message was processed before; the work did not run.
    AlreadyProcessed,
}

/// The `courier_inbox` table in a consumer's database, over a sqlx pool of
/// [`sqlx::Postgres`] or [`sqlx::Sqlite`].
#[derive(Debug)]
pub struct Inbox<DB: Backend> {
    pool: Pool<DB>,
    dedup_on: DedupOn,
}

impl<DB: Backend> Clone for Inbox<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            dedup_on: self.dedup_on,
        }
    }
}

impl<DB: Backend> Inbox<DB> {
    /// The inbox in the database of `pool`, deduplicating on message ids.
    pub fn new(pool: Pool<DB>) -> Self {
        Self {
            pool,
            dedup_on: DedupOn::MessageId,
        }
    }

    /// Deduplicates on `dedup_on` instead.
    pub fn dedup_on(mut self, dedup_on: DedupOn) -> Self {
        self.dedup_on = dedup_on;
        self
    }

    /// The pool it uses.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Creates the `courier_inbox` table (and its index) unless it exists.
    pub async fn install(&self) -> Result<(), sqlx::Error> {
        sql::install(&self.pool, DB::TABLES.inbox).await
    }

    /// Deletes the rows of messages processed more than `age` ago; answers how many. A
    /// message older than that is no longer recognised if it comes again, so keep them longer
    /// than a delivery can be retried (the subscription's attempts and backoff) or redriven.
    pub async fn prune(&self, age: std::time::Duration) -> Result<u64, sqlx::Error> {
        sql::prune(&self.pool, DB::TABLES.inbox_prune, age).await
    }

    /// Runs `work` on one transaction with the delivery's inbox row, once per message and
    /// subscription: begins a transaction, records the message, runs `work` on the same
    /// connection and commits. A message recorded before skips `work`
    /// ([`Processed::AlreadyProcessed`]); when `work` fails, nothing is recorded. A delivery of
    /// the same message running at the same time elsewhere waits for this one (PostgreSQL's
    /// row lock, SQLite's single writer) and then finds it recorded.
    pub async fn process<T, E, F>(&self, delivery: &Delivery, work: F) -> Result<Processed<T>, E>
    where
        E: From<sqlx::Error>,
        F: AsyncFnOnce(&mut DB::Connection) -> Result<T, E>,
    {
        let mut transaction = self.pool.begin().await?;
        let binds = vec![
            delivery.subscription.clone(),
            self.dedup_key(delivery),
            delivery.message_id.clone(),
        ];
        if DB::execute(&mut transaction, RECORD, binds).await? == 0 {
            transaction.rollback().await?;
            return Ok(Processed::AlreadyProcessed);
        }
        match work(&mut transaction).await {
            Ok(value) => {
                transaction.commit().await?;
                Ok(Processed::Done(value))
            }
            Err(error) => {
                let _ = transaction.rollback().await;
                Err(error)
            }
        }
    }

    fn dedup_key(&self, delivery: &Delivery) -> String {
        match self.dedup_on {
            DedupOn::MessageId => delivery.message_id.clone(),
            // A producer name cannot hold '/', so the pair reads back unambiguously.
            DedupOn::ProducerKey => format!("{}/{}", delivery.producer, delivery.key),
        }
    }
}
