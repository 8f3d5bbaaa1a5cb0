//! The PostgreSQL backend, for several Courier replicas on one database. Every write is one
//! transaction; claims lock the rows they take (`FOR UPDATE SKIP LOCKED`, or `FOR UPDATE` on
//! the one delivery a receipt names) and their UPDATEs still name the state and generation
//! they expect, so two replicas never lease the same delivery or both end the same lease.
//! Writes that make deliveries due `pg_notify` the subscription's name inside their
//! transaction, and a listener on every replica turns those into local wake-ups; new leases
//! are announced the same way (debounced, `announce`), so every replica's lease-expiry loop
//! knows when another's leases run out. Calls are bounded by a timeout, and a call abandoned
//! mid-flight closes its connection rather than return it to the pool (`CallSlot`).

mod announce;
mod batcher;
mod calls;
mod listener;
mod one_statement;
mod ops;
mod reads;
mod rows;
mod scheduling;
mod signing_key;
mod subscription_cache;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, Postgres, Transaction};
use tokio::sync::{Notify, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use announce::LeaseAnnouncer;
use batcher::{Batcher, Limits, Outcome};
use calls::{Calls, timed_out};
use subscription_cache::SubscriptionCache;

use super::{
    AckStatus, CheckRecorded, CheckVerdict, CheckerRegistration, DeliveryQuery, DueCheck,
    ExpiredLeases, InsertOutcome, LeasedDelivery, MessageQuery, NewMessage, Page, Stats, Store,
    StoreError, Wakeups,
};
use crate::config::PostgresConfig;
use crate::domain::{
    Decision, DeliveryStatus, MessageId, MessageRecord, MessageRef, MessageState, Name, Receipt,
    RedeliveryPlan, Subscription, Timestamp,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The LISTEN/NOTIFY channel; each notification's payload is a subscription name.
pub const CHANNEL: &str = "courier_wakeups";

/// The notification payload that means "this replica made leases or prepared messages": the
/// other replicas' lease-expiry and check-back loops look at the new deadlines, so they take
/// over if this replica dies (subscription names are never empty).
const DEADLINES_CHANGED: &str = "";

/// The notification payload that means "subscriptions changed": replicas read the table again
/// (no subscription name contains `#`).
const SUBSCRIPTIONS_CHANGED: &str = "#subscriptions";

pub struct PostgresStore {
    /// Runs calls on the pool, each bounded by the call timeout.
    calls: Calls,
    /// This replica's copy of the subscriptions, trusted while the listener hears changes.
    subscriptions: Arc<SubscriptionCache>,
    /// Concurrent Prepares, written together.
    prepares: Batcher<NewMessage, InsertOutcome>,
    /// Concurrent Confirms by message id, written together.
    confirms: Batcher<(MessageId, Timestamp), ops::Wake>,
    wakeups: Wakeups,
    /// Tells the other replicas that this one made leases.
    announcer: Arc<LeaseAnnouncer>,
    /// Whether the listener is subscribed to other replicas' notifications right now.
    listening: watch::Receiver<bool>,
    /// Stops the listener and announcer tasks when the store is dropped.
    _background: DropGuard,
}

impl PostgresStore {
    /// Connects to the database at `url`, runs the migrations, and starts the pool and the
    /// listener that turns other replicas' notifications into local wake-ups.
    pub async fn open(
        url: &str,
        config: &PostgresConfig,
        wakeups: Wakeups,
    ) -> Result<Self, StoreError> {
        let options = connect_options(url, config)?;
        Self::migrate_with(&options, config).await?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            // A call that finds its connection broken answers Unavailable and the pool drops
            // it; a ping before every call would cost a round trip on every call instead.
            .test_before_acquire(false)
            .connect_lazy_with(options.clone());
        let shutdown = CancellationToken::new();
        let (listening_tx, listening) = watch::channel(false);
        let check_listener = Arc::new(Notify::new());
        let announcer = Arc::new(LeaseAnnouncer::default());
        let subscriptions = Arc::new(SubscriptionCache::default());
        tokio::spawn({
            let (announcer, pool, shutdown) = (announcer.clone(), pool.clone(), shutdown.clone());
            async move { announcer.run(pool, shutdown).await }
        });
        tokio::spawn(listener::run(
            options,
            config.connect_timeout,
            wakeups.clone(),
            listener::Signals {
                listening: listening_tx,
                check_now: check_listener.clone(),
                subscriptions: subscriptions.clone(),
            },
            shutdown.clone(),
        ));
        let calls = Calls::new(
            pool,
            config.acquire_timeout + config.statement_timeout,
            check_listener,
        );
        Ok(Self {
            prepares: batched(&calls, NewMessage::size, |conn, items| {
                Box::pin(one_statement::prepare_batch(conn, items))
            }),
            confirms: batched(
                &calls,
                |_| 24,
                |conn, items| Box::pin(one_statement::confirm_batch(conn, items)),
            ),
            calls,
            subscriptions,
            wakeups,
            announcer,
            listening,
            _background: shutdown.drop_guard(),
        })
    }

    /// Whether this replica hears other replicas' wake-ups right now. While it does not,
    /// waiters fall back to their own due times.
    pub fn is_listening(&self) -> bool {
        *self.listening.borrow()
    }

    /// Waits until the listener is subscribed (tests use it before counting on a wake-up
    /// from another replica).
    pub async fn listening(&self) {
        let mut listening = self.listening.clone();
        let _ = listening.wait_for(|listening| *listening).await;
    }

    /// Runs the migrations of the database at `url`, then returns. Safe while other replicas
    /// do the same: sqlx's PostgreSQL migrator holds an advisory lock (`pg_advisory_lock`)
    /// while it checks and applies migrations, so one replica applies them and the others
    /// wait, then find nothing left to do.
    pub async fn migrate(url: &str, config: &PostgresConfig) -> Result<(), StoreError> {
        Self::migrate_with(&connect_options(url, config)?, config).await
    }

    async fn migrate_with(
        options: &PgConnectOptions,
        config: &PostgresConfig,
    ) -> Result<(), StoreError> {
        // Without statement_timeout: waiting for another replica's migration (the advisory
        // lock) or a long migration must not be cancelled. Its own connection, closed after,
        // so the session-level lock can never linger in a pooled connection.
        let options = options.clone().options([("statement_timeout", "0")]);
        let mut connection = connect_with_retry(&options, config.connect_timeout).await?;
        // `run_direct` is what `run` does after acquiring; called on the connection itself it
        // keeps this future `Send` (sqlx's `Acquire` bound otherwise trips the compiler's
        // higher-ranked lifetime check when the future is spawned).
        let migrated = MIGRATOR.run_direct(None, &mut connection, false).await;
        let _ = connection.close().await;
        migrated.map_err(|error| match error {
            sqlx::migrate::MigrateError::Execute(error) => StoreError::from(error),
            other => StoreError::internal(other),
        })
    }

    /// Writes one Prepare (batched with concurrent ones) or Publish (one statement); what
    /// those leave alone takes the transaction (see `one_statement`).
    async fn insert_one(
        &self,
        message: &NewMessage,
    ) -> Result<(InsertOutcome, ops::Wake), StoreError> {
        if !message.publish {
            match self.prepares.submit(message.clone()).await {
                Outcome::Done(outcome) => return Ok((outcome, Vec::new())),
                Outcome::Failed(error) => return Err(error),
                Outcome::FallBack => {}
            }
        }
        self.calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                // A Prepare here was left alone by its batch: only the transaction answers it.
                if message.publish
                    && let Some(published) =
                        one_statement::publish(&mut connection, message).await?
                {
                    return Ok(published);
                }
                let mut tx = connection.begin().await?;
                let (outcome, wake) = ops::insert_message(&mut tx, message).await?;
                commit(tx, &wake).await?;
                Ok((outcome, wake))
            })
            .await
    }

    /// Every subscription, sorted by name, from this replica's copy (read again if it is
    /// stale); `None` while the copy cannot be trusted because the listener, which hears
    /// other replicas' changes, is not connected.
    async fn copy_of_subscriptions(&self) -> Result<Option<Arc<[Subscription]>>, StoreError> {
        if !self.is_listening() {
            return Ok(None);
        }
        if let Some(all) = self.subscriptions.current() {
            return Ok(Some(all));
        }
        let generation = self.subscriptions.generation();
        let all = self.read_subscriptions(None).await?;
        Ok(Some(self.subscriptions.keep(generation, all)))
    }

    async fn read_subscriptions(
        &self,
        topic: Option<&Name>,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.calls
            .call(move |slot| async move {
                reads::subscriptions(&mut *slot.connect().await?, topic).await
            })
            .await
    }

    /// Wakes this replica's waiters; other replicas hear the transaction's notifications.
    fn wake(&self, subscriptions: &[String]) {
        for subscription in subscriptions {
            self.wakeups.notify_subscription(subscription);
        }
        if !subscriptions.is_empty() {
            // Deliveries became due: of the scheduler's loops only push cares.
            self.wakeups.notify_push();
        }
    }
}

/// Most batches of one kind in flight at once: enough to keep PostgreSQL's cores busy while
/// one batch waits on its WAL flush.
const BATCHES_IN_FLIGHT: usize = 2;
/// Most calls one batch writes.
const BATCH_ITEMS: usize = 256;
/// Most payload and header bytes one batch sends. Over TLS, sqlx 0.9.0 writes a statement
/// larger than rustls's 64 KiB buffer in two writes on a socket without TCP_NODELAY
/// (transact-rs/sqlx#4335), and the second write then waits about 40 ms for a delayed ACK.
const BATCH_BYTES: usize = 12 * 1024;

type BatchFuture<'a, D> =
    std::pin::Pin<Box<dyn Future<Output = Result<Vec<Option<D>>, StoreError>> + Send + 'a>>;

/// A batcher that writes each batch with `write`, as one call (timeout, retries) of `calls`.
fn batched<I, D>(
    calls: &Calls,
    size: fn(&I) -> usize,
    write: for<'a> fn(&'a mut PgConnection, &'a [I]) -> BatchFuture<'a, D>,
) -> Batcher<I, D>
where
    I: Send + Sync + 'static,
    D: Send + 'static,
{
    let calls = calls.clone();
    let limits = Limits {
        items: BATCH_ITEMS,
        bytes: BATCH_BYTES,
        size,
    };
    Batcher::new(BATCHES_IN_FLIGHT, limits, move |items: Vec<I>| {
        let calls = calls.clone();
        async move {
            let items = &items;
            calls
                .call(move |slot| async move { write(&mut *slot.connect().await?, items).await })
                .await
        }
    })
}

/// Commits `tx` after queueing one notification per subscription in `wake`; PostgreSQL sends
/// them to every listener when (and only if) the transaction commits.
async fn commit(mut tx: Transaction<'_, Postgres>, wake: &[String]) -> Result<(), StoreError> {
    if !wake.is_empty() {
        sqlx::query("SELECT pg_notify($1, name) FROM unnest($2::text[]) AS name")
            .bind(CHANNEL)
            .bind(wake)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Connection settings from the URL plus Courier's: application name and the server-side
/// timeouts. The URL (and its password) stays inside sqlx; errors never quote it.
fn connect_options(url: &str, config: &PostgresConfig) -> Result<PgConnectOptions, StoreError> {
    let timeout_ms = config.statement_timeout.as_millis().to_string();
    let options = PgConnectOptions::from_str(url)
        .map_err(|_| {
            StoreError::Unsupported(
                "database_url is not a valid PostgreSQL URL (the value is not shown; it may hold a password)"
                    .into(),
            )
        })?
        .application_name("courier")
        // A transaction never waits on its client for long; if a replica stalls mid
        // transaction (a cut network), PostgreSQL ends it and frees its row locks.
        .options([
            ("statement_timeout", timeout_ms.as_str()),
            ("idle_in_transaction_session_timeout", timeout_ms.as_str()),
            // Not "relation _sqlx_migrations already exists, skipping" at every start.
            ("client_min_messages", "warning"),
        ]);
    Ok(options)
}

/// Opens one connection, retrying refused or failed attempts with a short backoff until
/// `timeout` has passed, so replicas that start just before PostgreSQL does still come up.
async fn connect_with_retry(
    options: &PgConnectOptions,
    timeout: Duration,
) -> Result<PgConnection, StoreError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let error = match tokio::time::timeout(remaining, options.connect()).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(error)) => StoreError::from(error),
            Err(_) => timed_out(timeout),
        };
        // Only a database that is not there (yet) is worth waiting for; a wrong password or
        // database name is not going to fix itself.
        if !matches!(error, StoreError::Unavailable(_))
            || tokio::time::Instant::now() + pause >= deadline
        {
            return Err(error);
        }
        tracing::debug!(error = %error, "database not reachable yet; retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.calls
            .call(move |slot| async move {
                sqlx::query("SELECT 1")
                    .execute(&mut *slot.connect().await?)
                    .await?;
                Ok(())
            })
            .await
    }

    async fn create_subscription(
        &self,
        subscription: Subscription,
    ) -> Result<(Subscription, bool), StoreError> {
        let subscription = &subscription;
        let created = self
            .calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                let created = ops::create_subscription(&mut tx, subscription).await?;
                commit(tx, &[SUBSCRIPTIONS_CHANGED.to_owned()]).await?;
                Ok(created)
            })
            .await;
        self.subscriptions.changed();
        created
    }

    async fn get_subscription(&self, name: &Name) -> Result<Subscription, StoreError> {
        if let Some(all) = self.copy_of_subscriptions().await?
            && let Ok(found) = all.binary_search_by(|s| s.name.as_str().cmp(name.as_str()))
        {
            return Ok(all[found].clone());
        }
        // Not in the copy: maybe created a moment ago on another replica.
        self.calls
            .call(move |slot| async move {
                reads::subscription(&mut *slot.connect().await?, name).await
            })
            .await
    }

    async fn list_subscriptions(
        &self,
        topic: Option<&Name>,
    ) -> Result<Vec<Subscription>, StoreError> {
        match self.copy_of_subscriptions().await? {
            Some(all) => Ok(all
                .iter()
                .filter(|s| topic.is_none_or(|topic| s.topic == *topic))
                .cloned()
                .collect()),
            None => self.read_subscriptions(topic).await,
        }
    }

    async fn update_subscription(
        &self,
        subscription: Subscription,
    ) -> Result<Subscription, StoreError> {
        let subscription = &subscription;
        let updated = self
            .calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                let (updated, mut wake) = ops::update_subscription(&mut tx, subscription).await?;
                wake.push(SUBSCRIPTIONS_CHANGED.to_owned());
                commit(tx, &wake).await?;
                wake.pop();
                Ok((updated, wake))
            })
            .await;
        self.subscriptions.changed();
        let (updated, wake) = updated?;
        self.wake(&wake);
        Ok(updated)
    }

    async fn delete_subscription(&self, name: &Name) -> Result<(), StoreError> {
        let deleted = self
            .calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                ops::delete_subscription(&mut tx, name).await?;
                commit(tx, &[SUBSCRIPTIONS_CHANGED.to_owned()]).await
            })
            .await;
        self.subscriptions.changed();
        deleted
    }

    async fn insert_message(&self, message: NewMessage) -> Result<InsertOutcome, StoreError> {
        let (outcome, wake) = self.insert_one(&message).await?;
        self.wake(&wake);
        if outcome.created && !message.publish {
            // Other replicas hear of it within a second (best effort), so their check loops
            // run the first check if this replica dies before it.
            self.announcer.defer();
            // This replica's check loop may be sleeping past the first check.
            self.wakeups
                .checks()
                .due_at(message.now.plus(message.check_after));
        }
        Ok(outcome)
    }

    async fn decide(
        &self,
        message: &MessageRef,
        decision: Decision,
        now: Timestamp,
    ) -> Result<MessageState, StoreError> {
        if decision == Decision::Commit
            && let MessageRef::Id(id) = message
        {
            match self.confirms.submit((*id, now)).await {
                Outcome::Done(wake) => {
                    self.wake(&wake);
                    return Ok(MessageState::Confirmed);
                }
                Outcome::Failed(error) => return Err(error),
                Outcome::FallBack => {}
            }
        }
        let (state, wake) = self
            .calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                let (state, wake) = ops::decide(&mut tx, message, decision, now).await?;
                commit(tx, &wake).await?;
                Ok((state, wake))
            })
            .await?;
        self.wake(&wake);
        Ok(state)
    }

    async fn get_message(&self, message: &MessageRef) -> Result<MessageRecord, StoreError> {
        self.calls.call(
            move |slot| async move { reads::message(&mut *slot.connect().await?, message).await },
        )
        .await
    }

    async fn list_messages(&self, query: MessageQuery) -> Result<Page<MessageRecord>, StoreError> {
        let query = &query;
        self.calls.call(
            move |slot| async move { reads::messages(&mut *slot.connect().await?, query).await },
        )
        .await
    }

    async fn register_checker(&self, checker: CheckerRegistration) -> Result<(), StoreError> {
        let (checker, now) = (&checker, Timestamp::now());
        self.calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                ops::register_checker(&mut tx, checker, now).await?;
                commit(tx, &[]).await
            })
            .await
    }

    async fn get_checker(
        &self,
        producer: &Name,
    ) -> Result<Option<CheckerRegistration>, StoreError> {
        self.calls.call(
            move |slot| async move { reads::checker(&mut *slot.connect().await?, producer).await },
        )
        .await
    }

    async fn lease(
        &self,
        subscription: &Subscription,
        max: u32,
        now: Timestamp,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        let (leased, announced) = self
            .calls
            .call(move |slot| async move {
                // Other replicas' lease-expiry loops must hear of these deadlines: they end
                // the leases if this replica dies.
                let announce = self.announcer.due();
                let mut connection = slot.connect().await?;
                let leased = ops::lease(&mut connection, subscription, max, now, announce).await?;
                Ok((leased, announce))
            })
            .await?;
        if announced && !leased.is_empty() {
            self.announcer.sent();
        }
        if let Some(first) = leased.first() {
            // This replica's lease-expiry loop may be sleeping past these new deadlines (all
            // the same).
            self.wakeups.leases().due_at(first.lease_expires_at);
            if !announced {
                self.announcer.defer();
            }
        }
        Ok(leased)
    }

    async fn ack(
        &self,
        receipts: &[Receipt],
        now: Timestamp,
    ) -> Result<Vec<AckStatus>, StoreError> {
        self.calls
            .call(move |slot| async move {
                ops::ack(&mut *slot.connect().await?, receipts, now).await
            })
            .await
    }

    async fn nack(
        &self,
        receipt: &Receipt,
        delay: Option<Duration>,
        now: Timestamp,
    ) -> Result<Option<RedeliveryPlan>, StoreError> {
        let (plan, wake) = self
            .calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                let (plan, wake) = ops::nack(&mut tx, receipt, delay, now).await?;
                commit(tx, &wake).await?;
                Ok((plan, wake))
            })
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
        self.calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                let lease_expires_at = ops::extend_lease(&mut tx, receipt, extension, now).await?;
                commit(tx, &[]).await?;
                Ok(lease_expires_at)
            })
            .await
    }

    async fn reject(
        &self,
        receipt: &Receipt,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                ops::reject(&mut tx, receipt, reason, now).await?;
                commit(tx, &[]).await
            })
            .await
    }

    async fn next_due(&self, subscription: &Name) -> Result<Option<Timestamp>, StoreError> {
        self.calls
            .call(move |slot| async move {
                reads::next_due(&mut *slot.connect().await?, subscription).await
            })
            .await
    }

    async fn expire_leases(&self, now: Timestamp) -> Result<ExpiredLeases, StoreError> {
        let (ended, wake) = self
            .calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                let (ended, wake) = ops::expire_leases(&mut tx, now).await?;
                commit(tx, &wake).await?;
                Ok((ended, wake))
            })
            .await?;
        self.wake(&wake);
        Ok(ended)
    }

    async fn next_lease_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        self.calls.call(
            move |slot| async move { reads::next_lease_expiry(&mut *slot.connect().await?).await },
        )
        .await
    }

    async fn claim_due_checks(
        &self,
        now: Timestamp,
        limit: u32,
        hold: Duration,
    ) -> Result<Vec<DueCheck>, StoreError> {
        self.calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                let claimed = scheduling::claim_due_checks(&mut tx, now, limit, hold).await?;
                commit(tx, &[]).await?;
                Ok(claimed)
            })
            .await
    }

    async fn record_check(
        &self,
        message_id: MessageId,
        attempt: u32,
        verdict: CheckVerdict,
        now: Timestamp,
    ) -> Result<CheckRecorded, StoreError> {
        let verdict = &verdict;
        let (recorded, wake) = self
            .calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                let (recorded, wake) =
                    scheduling::record_check(&mut tx, message_id, attempt, verdict, now).await?;
                commit(tx, &wake).await?;
                Ok((recorded, wake))
            })
            .await?;
        self.wake(&wake);
        if let (CheckRecorded::Applied(_), CheckVerdict::RetryAt { at, .. }) = (recorded, verdict) {
            self.wakeups.checks().due_at(*at);
        }
        Ok(recorded)
    }

    async fn next_check_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.calls
            .call(move |slot| async move {
                scheduling::next_check_due(&mut *slot.connect().await?).await
            })
            .await
    }

    async fn fail_delivery(
        &self,
        subscription: &Subscription,
        receipt: &Receipt,
        error: &str,
        now: Timestamp,
    ) -> Result<Option<RedeliveryPlan>, StoreError> {
        let (plan, wake) = self
            .calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                let (plan, wake) =
                    scheduling::fail_delivery(&mut tx, subscription, receipt, error, now).await?;
                commit(tx, &wake).await?;
                Ok((plan, wake))
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
        self.calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                let deleted = scheduling::delete_final_messages(&mut tx, cutoff, limit).await?;
                commit(tx, &[]).await?;
                Ok(deleted)
            })
            .await
    }

    async fn oldest_final_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.calls
            .call(move |slot| async move {
                scheduling::oldest_final_at(&mut *slot.connect().await?).await
            })
            .await
    }

    async fn list_deliveries(
        &self,
        query: DeliveryQuery,
    ) -> Result<Page<DeliveryStatus>, StoreError> {
        let query = &query;
        self.calls.call(
            move |slot| async move { reads::deliveries(&mut *slot.connect().await?, query).await },
        )
        .await
    }

    async fn redrive(
        &self,
        subscription: &Name,
        message_ids: &[MessageId],
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let (redriven, wake) = self
            .calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                let mut tx = connection.begin().await?;
                let redriven = ops::redrive(&mut tx, subscription, message_ids, now).await?;
                let wake = if redriven > 0 {
                    vec![subscription.to_string()]
                } else {
                    Vec::new()
                };
                commit(tx, &wake).await?;
                Ok((redriven, wake))
            })
            .await?;
        self.wake(&wake);
        Ok(redriven)
    }

    async fn stats(&self, now: Timestamp) -> Result<Stats, StoreError> {
        self.calls
            .call(move |slot| async move { reads::stats(&mut *slot.connect().await?, now).await })
            .await
    }

    async fn shared_signing_key(&self, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let (candidate, now) = (&candidate, Timestamp::now());
        self.calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                signing_key::get_or_insert(&mut connection, candidate, now).await
            })
            .await
    }
}
