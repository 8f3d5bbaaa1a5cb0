//! The PostgreSQL backend, for several Courier replicas on one database. Every write is one
//! transaction (`write`); claims lock the rows they take (`FOR UPDATE SKIP LOCKED`, or `FOR
//! UPDATE` on the one delivery a receipt names) and their UPDATEs still name the state and
//! generation they expect, so two replicas never lease the same delivery or both end the same
//! lease. What a write makes due travels to the other replicas as notifications sent by its
//! transaction (`notify`), and a listener on every replica turns those into local wake-ups;
//! new leases are announced the same way (debounced, `announce`), so every replica's
//! lease-expiry loop knows when another's leases run out. Calls are bounded by a timeout, and a
//! call abandoned mid-flight closes its connection rather than return it to the pool
//! (`CallSlot`).

mod announce;
mod batcher;
mod calls;
mod connect;
pub(super) mod error;
mod events;
mod lanes;
mod leases;
mod listener;
mod notify;
mod one_statement;
mod ops;
#[cfg(test)]
mod plan_tests;
mod reads;
mod rows;
mod scheduling;
mod signing_key;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod upgrade_tests;
mod write;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::{Notify, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use announce::{DueAnnouncer, LeaseAnnouncer};
use batcher::{Batcher, Outcome};
use calls::Calls;
use reads::Reads;
use write::{Tx, TxFuture, batched};

use super::subscription_cache::{self, SubscriptionCache};
use super::{
    Batch, CheckRecorded, CheckVerdict, DeadLetter, DeadLetters, DeliveryQuery, Effects,
    ExpiredLeases, InsertOutcome, MessageHistory, MessageQuery, NewMessage, Page, Stats,
    StatsScope, Store, StoreError, rules,
};
use crate::config::PostgresConfig;
use crate::domain::{
    AckStatus, CheckerRegistration, Decision, DeliveryStatus, DueCheck, LeasedDelivery, MessageId,
    MessageRecord, MessageRef, MessageState, Name, Receipt, RedeliveryPlan, Subscription,
    Timestamp,
};
use crate::wakeups::Wakeups;

pub struct PostgresStore {
    /// Runs calls on the pool, each bounded by the call timeout.
    calls: Calls,
    /// This replica's copy of the subscriptions, trusted while the listener hears changes.
    subscriptions: Arc<SubscriptionCache>,
    /// Concurrent Prepares and Publishes, written together.
    inserts: Batcher<NewMessage, (InsertOutcome, Effects)>,
    /// Concurrent Confirms by message id, written together.
    confirms: Batcher<(MessageId, Timestamp), Effects>,
    /// Concurrent Acks (each call's receipts and time), written together.
    acks: Batcher<(Vec<Receipt>, Timestamp), Vec<AckStatus>>,
    wakeups: Wakeups,
    /// Tells the other replicas that this one made leases.
    announcer: Arc<LeaseAnnouncer>,
    /// Tells the other replicas which subscriptions have new due deliveries.
    due_announcer: Arc<DueAnnouncer>,
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
        let options = connect::options(url, config)?;
        connect::migrate(&options, config).await?;
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
        let due_announcer = Arc::new(DueAnnouncer::default());
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
                due: due_announcer.clone(),
            },
            shutdown.clone(),
        ));
        let calls = Calls::new(
            pool,
            config.acquire_timeout + config.statement_timeout,
            check_listener,
        );
        Ok(Self {
            inserts: batched(&calls, NewMessage::size, |conn, items| {
                Box::pin(one_statement::insert_batch(conn, items))
            }),
            confirms: batched(
                &calls,
                |_| 24,
                |conn, items| Box::pin(one_statement::confirm_batch(conn, items)),
            ),
            acks: batched(&calls, leases::ack_size, |conn, items| {
                Box::pin(leases::ack_batch(conn, items))
            }),
            calls,
            subscriptions,
            wakeups,
            announcer,
            due_announcer,
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

    /// Runs the migrations of the database at `url`, then returns (safe while other replicas
    /// do the same).
    pub async fn migrate(url: &str, config: &PostgresConfig) -> Result<(), StoreError> {
        connect::migrate(&connect::options(url, config)?, config).await
    }

    /// Runs `read` on a connection of its own, as one call (timeout, retries).
    async fn read<'caller, T, F>(&self, read: F) -> Result<T, StoreError>
    where
        F: for<'t> Fn(Tx<'t, 'caller>) -> TxFuture<'t, Result<T, StoreError>> + Sync,
    {
        let read = &read;
        self.calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                read(Tx::of(&mut connection)).await
            })
            .await
    }

    /// Writes one Prepare or Publish, batched with concurrent ones; what the batch leaves
    /// alone takes the transaction (see `one_statement`).
    async fn insert_one(&self, message: &NewMessage) -> Result<InsertOutcome, StoreError> {
        // A Publish with an ordering key joins its lanes, which only the transaction does.
        let batched = !message.publish || message.ordering_key.lane().is_none();
        if batched {
            match self.inserts.submit(message.clone()).await {
                Outcome::Done((outcome, effects)) => {
                    self.apply(&effects);
                    return Ok(outcome);
                }
                Outcome::Failed(error) => return Err(error),
                Outcome::FallBack => {}
            }
        }
        self.write(|tx| Box::pin(ops::insert_message(tx.into_connection(), message)))
            .await
    }

    /// Every subscription, sorted by name, from this replica's copy (read again if it is
    /// stale); `None` while the copy cannot be trusted because the listener, which hears
    /// other replicas' changes, is not connected.
    async fn copy_of_subscriptions(&self) -> Result<Option<Arc<[Subscription]>>, StoreError> {
        if !self.is_listening() {
            return Ok(None);
        }
        let read = self.read(|tx| Box::pin(Reads::subscriptions(tx.into_connection(), None)));
        self.subscriptions.current_or_read(read).await.map(Some)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|tx| {
            Box::pin(async move {
                sqlx::query("SELECT 1")
                    .execute(tx.into_connection())
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn create_subscription(
        &self,
        subscription: Subscription,
    ) -> Result<(Subscription, bool), StoreError> {
        let subscription = &subscription;
        self.write(|tx| Box::pin(ops::create_subscription(tx.into_connection(), subscription)))
            .await
    }

    async fn get_subscription(&self, name: &Name) -> Result<Subscription, StoreError> {
        if let Some(all) = self.copy_of_subscriptions().await?
            && let Some(subscription) = subscription_cache::named(&all, name)
        {
            return Ok(subscription);
        }
        // Not in the copy: maybe created a moment ago on another replica.
        self.read(|tx| Box::pin(Reads::subscription(tx.into_connection(), name)))
            .await
    }

    async fn list_subscriptions(
        &self,
        topic: Option<&Name>,
    ) -> Result<Vec<Subscription>, StoreError> {
        match self.copy_of_subscriptions().await? {
            Some(all) => Ok(subscription_cache::on_topic(&all, topic)),
            None => {
                self.read(|tx| Box::pin(Reads::subscriptions(tx.into_connection(), topic)))
                    .await
            }
        }
    }

    async fn update_subscription(
        &self,
        subscription: Subscription,
    ) -> Result<Subscription, StoreError> {
        let subscription = &subscription;
        let now = Timestamp::now();
        self.write(|tx| {
            Box::pin(ops::update_subscription(
                tx.into_connection(),
                subscription,
                now,
            ))
        })
        .await
    }

    async fn delete_subscription(&self, name: &Name) -> Result<(), StoreError> {
        self.write(|tx| Box::pin(ops::delete_subscription(tx.into_connection(), name)))
            .await
    }

    async fn insert_message(&self, message: NewMessage) -> Result<InsertOutcome, StoreError> {
        let outcome = self.insert_one(&message).await?;
        if outcome.created && !message.publish {
            // Other replicas hear of it within a second (best effort), so their check loops
            // run the first check if this replica dies before it.
            self.announcer.defer();
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
                Outcome::Done(effects) => {
                    self.apply(&effects);
                    return Ok(MessageState::Confirmed);
                }
                Outcome::Failed(error) => return Err(error),
                Outcome::FallBack => {}
            }
        }
        self.write(|tx| Box::pin(ops::decide(tx.into_connection(), message, decision, now)))
            .await
    }

    async fn resolve(
        &self,
        message: &MessageRef,
        decision: Decision,
        operator: &str,
        now: Timestamp,
    ) -> Result<MessageState, StoreError> {
        self.write(|tx| {
            Box::pin(ops::resolve(
                tx.into_connection(),
                message,
                decision,
                operator,
                now,
            ))
        })
        .await
    }

    async fn message_history(&self, message: MessageId) -> Result<MessageHistory, StoreError> {
        self.read(|tx| Box::pin(Reads::history(tx.into_connection(), message)))
            .await
    }

    async fn get_message(&self, message: &MessageRef) -> Result<MessageRecord, StoreError> {
        self.read(|tx| Box::pin(Reads::message(tx.into_connection(), message)))
            .await
    }

    async fn list_messages(&self, query: MessageQuery) -> Result<Page<MessageRecord>, StoreError> {
        let query = &query;
        self.read(|tx| Box::pin(Reads::messages(tx.into_connection(), query)))
            .await
    }

    async fn register_checker(&self, checker: CheckerRegistration) -> Result<(), StoreError> {
        let (checker, now) = (&checker, Timestamp::now());
        self.write(|tx| Box::pin(ops::register_checker(tx.into_connection(), checker, now)))
            .await
    }

    async fn get_checker(
        &self,
        producer: &Name,
    ) -> Result<Option<CheckerRegistration>, StoreError> {
        self.read(|tx| Box::pin(Reads::checker(tx.into_connection(), producer)))
            .await
    }

    async fn lease(
        &self,
        subscription: &Subscription,
        batch: Batch,
        now: Timestamp,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        // Other replicas' lease-expiry loops must hear of these deadlines: they end the leases
        // if this replica dies. The first lease statement of a window carries the news.
        let announce = self.announcer.due();
        let leased = self
            .write_statement(|tx| {
                Box::pin(leases::lease(
                    tx.into_connection(),
                    subscription,
                    batch,
                    now,
                    announce,
                ))
            })
            .await?;
        if !leased.is_empty() {
            if announce {
                self.announcer.sent();
            } else {
                self.announcer.defer();
            }
        }
        Ok(leased)
    }

    async fn return_leases(
        &self,
        leased: &[LeasedDelivery],
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.write(|tx| Box::pin(leases::return_leases(tx.into_connection(), leased, now)))
            .await
    }

    async fn ack(
        &self,
        receipts: &[Receipt],
        now: Timestamp,
    ) -> Result<Vec<AckStatus>, StoreError> {
        match self.acks.submit((receipts.to_vec(), now)).await {
            Outcome::Done(statuses) => return Ok(statuses),
            Outcome::Failed(error) => return Err(error),
            Outcome::FallBack => {}
        }
        // A transaction: an ack that ends the head of a lane then locks the lane and promotes
        // the next delivery, each seeing what was committed before.
        self.write(|tx| Box::pin(leases::ack(tx.into_connection(), receipts, now)))
            .await
    }

    async fn nack(
        &self,
        receipt: &Receipt,
        delay: Option<Duration>,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<RedeliveryPlan>, StoreError> {
        let error = &rules::nacked(reason);
        self.write(|tx| {
            Box::pin(leases::nack(
                tx.into_connection(),
                receipt,
                delay,
                error,
                now,
            ))
        })
        .await
    }

    async fn extend_lease(
        &self,
        receipt: &Receipt,
        extension: Duration,
        now: Timestamp,
    ) -> Result<Timestamp, StoreError> {
        self.write(|tx| {
            Box::pin(leases::extend_lease(
                tx.into_connection(),
                receipt,
                extension,
                now,
            ))
        })
        .await
    }

    async fn reject(
        &self,
        receipt: &Receipt,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(|tx| Box::pin(leases::reject(tx.into_connection(), receipt, reason, now)))
            .await
    }

    async fn next_due(&self, subscription: &Name) -> Result<Option<Timestamp>, StoreError> {
        self.read(|tx| Box::pin(Reads::next_due(tx.into_connection(), subscription)))
            .await
    }

    async fn expire_leases(&self, now: Timestamp) -> Result<ExpiredLeases, StoreError> {
        self.write(|tx| Box::pin(leases::expire_leases(tx.into_connection(), now)))
            .await
    }

    async fn next_lease_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(|tx| Box::pin(Reads::next_lease_expiry(tx.into_connection())))
            .await
    }

    async fn claim_due_checks(
        &self,
        now: Timestamp,
        limit: u32,
        hold: Duration,
    ) -> Result<Vec<DueCheck>, StoreError> {
        self.write(|tx| {
            Box::pin(scheduling::claim_due_checks(
                tx.into_connection(),
                now,
                limit,
                hold,
            ))
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
        self.write(|tx| {
            Box::pin(scheduling::record_check(
                tx.into_connection(),
                message_id,
                attempt,
                verdict,
                now,
            ))
        })
        .await
    }

    async fn next_check_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(|tx| Box::pin(Reads::next_check_due(tx.into_connection())))
            .await
    }

    async fn fail_delivery(
        &self,
        subscription: &Subscription,
        receipt: &Receipt,
        error: &str,
        now: Timestamp,
    ) -> Result<Option<RedeliveryPlan>, StoreError> {
        self.write(|tx| {
            Box::pin(scheduling::fail_delivery(
                tx.into_connection(),
                subscription,
                receipt,
                error,
                now,
            ))
        })
        .await
    }

    async fn delete_final_messages(
        &self,
        cutoff: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.write(|tx| {
            Box::pin(scheduling::delete_final_messages(
                tx.into_connection(),
                cutoff,
                limit,
            ))
        })
        .await
    }

    async fn oldest_final_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(|tx| Box::pin(Reads::oldest_final_at(tx.into_connection())))
            .await
    }

    async fn list_deliveries(
        &self,
        query: DeliveryQuery,
    ) -> Result<Page<DeliveryStatus>, StoreError> {
        let query = &query;
        self.read(|tx| Box::pin(Reads::deliveries(tx.into_connection(), query)))
            .await
    }

    async fn redrive(
        &self,
        chosen: &DeadLetters,
        rate: f64,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.write(|tx| Box::pin(ops::redrive(tx.into_connection(), chosen, rate, now)))
            .await
    }

    async fn discard_dead_letters(
        &self,
        chosen: &DeadLetters,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.write(|tx| Box::pin(ops::discard(tx.into_connection(), chosen, now)))
            .await
    }

    async fn count_dead_letters(&self, chosen: &DeadLetters) -> Result<u64, StoreError> {
        self.read(|tx| Box::pin(Reads::count_dead_letters(tx.into_connection(), chosen)))
            .await
    }

    async fn list_dead_letters(
        &self,
        chosen: &DeadLetters,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(|tx| {
            Box::pin(Reads::list_dead_letters(
                tx.into_connection(),
                chosen,
                limit,
            ))
        })
        .await
    }

    async fn stats(&self, now: Timestamp, scope: StatsScope) -> Result<Stats, StoreError> {
        self.read(|tx| Box::pin(Reads::stats(tx.into_connection(), now, scope)))
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
