//! The transactional outbox: a row in the producer's own database (`courier_outbox`), written
//! in the same local transaction as the business change, so the Checker can say for certain
//! whether that transaction committed.
//!
//! The answer is definitive because of one rule: when the Checker finds no row, it writes a
//! ROLLED_BACK tombstone under the same message id (`INSERT … ON CONFLICT DO NOTHING`) and
//! answers ROLLBACK. A producer transaction still in flight then fails on the key when it
//! commits (PostgreSQL makes the Checker's insert wait for that transaction to end; SQLite has
//! one writer), rolls back, and is cancelled. So "absent" can never turn into "committed"
//! after the Checker said ROLLBACK.

mod checker;

use sqlx::Pool;

pub use checker::OutboxChecker;

use crate::message::OutgoingMessage;
use crate::producer::{Producer, SendError, Sent};
use crate::proto::Decision;
use crate::sql::{self, Backend};

const RECORD: &str = "INSERT INTO courier_outbox (message_id, state) VALUES ($1, 'COMMITTED')";
const TOMBSTONE: &str = "INSERT INTO courier_outbox (message_id, state) VALUES ($1, 'ROLLED_BACK') \
     ON CONFLICT (message_id) DO NOTHING";
const STATE: &str = "SELECT state FROM courier_outbox WHERE message_id = $1";

/// The `courier_outbox` table in a producer's database, over a sqlx pool of
/// [`sqlx::Postgres`] or [`sqlx::Sqlite`].
#[derive(Debug)]
pub struct Outbox<DB: Backend> {
    pool: Pool<DB>,
}

impl<DB: Backend> Clone for Outbox<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
        }
    }
}

impl<DB: Backend> Outbox<DB> {
    /// The outbox in the database of `pool`.
    pub fn new(pool: Pool<DB>) -> Self {
        Self { pool }
    }

    /// The pool it uses.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Creates the `courier_outbox` table (and its index) unless it exists. Run it at start-up
    /// or copy its statements into your own migrations.
    pub async fn install(&self) -> Result<(), sqlx::Error> {
        sql::install(&self.pool, DB::TABLES.outbox).await
    }

    /// Deletes the rows (records and tombstones) created more than `age` ago; answers how
    /// many. Keep them while Courier may still ask about their messages: longer than the
    /// time a message can stay PREPARED (check-back's `checks.max_attempts` with its backoff,
    /// about two hours by default) and than an operator would wait to resolve one.
    pub async fn prune(&self, age: std::time::Duration) -> Result<u64, sqlx::Error> {
        sql::prune(&self.pool, DB::TABLES.outbox_prune, age).await
    }

    /// Records `message_id` as committed, inside the caller's transaction on `connection`.
    /// [`send_in_transaction`](Self::send_in_transaction) does this for you; call it when you
    /// run Prepare and Confirm yourself.
    pub async fn record(
        connection: &mut DB::Connection,
        message_id: &str,
    ) -> Result<(), sqlx::Error> {
        DB::execute(connection, RECORD, vec![message_id.to_owned()]).await?;
        Ok(())
    }

    /// Whether the local transaction of `message_id` committed: COMMIT when its row is there,
    /// ROLLBACK otherwise, after writing a tombstone that keeps it from committing later.
    pub async fn decide(&self, message_id: &str) -> Result<Decision, sqlx::Error> {
        let mut connection = self.pool.acquire().await?;
        let id = || vec![message_id.to_owned()];
        let mut state = DB::fetch_text(&mut connection, STATE, id()).await?;
        if state.is_none() {
            DB::execute(&mut connection, TOMBSTONE, id()).await?;
            state = DB::fetch_text(&mut connection, STATE, id()).await?;
        }
        Ok(match state.as_deref() {
            Some("COMMITTED") => Decision::Commit,
            _ => Decision::Rollback,
        })
    }

    /// The two-phase send over a local transaction: Prepare; begin a transaction on the pool,
    /// record the message id in `courier_outbox`, run `work` on the same connection with the
    /// message id at hand, commit; then Confirm. When `work` returns `Err` or panics, or the
    /// commit fails, the transaction rolls back and the message is cancelled (the outbox says
    /// which, so a commit whose answer was lost is confirmed, not cancelled). If the process
    /// dies in between, the [`OutboxChecker`] answers Courier's check-back.
    ///
    /// ```no_run
    /// # async fn example(outbox: courier_client::Outbox<sqlx::Postgres>, producer: courier_client::Producer) -> Result<(), Box<dyn std::error::Error>> {
    /// use courier_client::OutgoingMessage;
    ///
    /// let message = OutgoingMessage::new("orders", "order-1042").payload(b"{\"total\":12}".to_vec());
    /// let sent = outbox
    ///     .send_in_transaction(&producer, message, async |connection, message_id| {
    ///         sqlx::query("INSERT INTO orders (order_no, message_id) VALUES ($1, $2)")
    ///             .bind("order-1042")
    ///             .bind(message_id)
    ///             .execute(&mut *connection)
    ///             .await?;
    ///         Ok::<_, sqlx::Error>(())
    ///     })
    ///     .await?;
    /// println!("sent {}", sent.message_id);
    /// # Ok(()) }
    /// ```
    pub async fn send_in_transaction<T, E, F>(
        &self,
        producer: &Producer,
        message: OutgoingMessage,
        work: F,
    ) -> Result<Sent<T>, SendError<E>>
    where
        E: From<sqlx::Error>,
        F: AsyncFnOnce(&mut DB::Connection, &str) -> Result<T, E>,
    {
        let local = async |message_id: String| {
            let mut transaction = self.pool.begin().await?;
            Self::record(&mut transaction, &message_id).await?;
            match work(&mut transaction, &message_id).await {
                Ok(value) => {
                    transaction.commit().await?;
                    Ok(value)
                }
                Err(error) => {
                    // Rolled back now, so the outbox answers at once below.
                    let _ = transaction.rollback().await;
                    Err(error)
                }
            }
        };
        let after_failure = async |message_id: String| match self.decide(&message_id).await {
            Ok(decision) => Some(decision),
            Err(error) => {
                tracing::warn!(%message_id, %error, "cannot read the outbox after a failed local transaction; check-back will decide");
                None
            }
        };
        producer.send_resolving(message, local, after_failure).await
    }

    /// The Checker service Courier calls for this producer's messages, answering from this
    /// outbox. Serve it with tonic and register its URL with
    /// [`Producer::register_checker`].
    pub fn checker(&self, auth: crate::CallbackAuth) -> OutboxChecker<DB> {
        OutboxChecker::new(self.clone(), auth)
    }
}
