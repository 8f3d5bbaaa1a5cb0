//! Persistence behind one trait, with an embedded SQLite backend and a PostgreSQL backend.
//! Every state change is a compare-and-set on the stored state (and lease generation), so
//! concurrent callers, scheduler loops and replicas can never both win a transition.

#[cfg(test)]
mod conformance;
pub mod dead_letters;
mod effects;
mod error;
pub mod history;
mod lanes;
#[cfg(test)]
mod model;
pub mod postgres;
mod reads;
mod rows;
mod rules;
mod sql;
pub mod sqlite;
mod subscription_cache;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod types;
#[cfg(test)]
mod upgrade_checks;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use dead_letters::{DeadLetter, DeadLetters};
pub use effects::{Effects, Written};
pub use error::{Cause, StoreError};
pub use history::{DecidedBy, EventKind, MessageEvent, MessageHistory};
pub use types::*;

use crate::config::Config;
use crate::domain::{
    AckStatus, CheckerRegistration, Decision, DueCheck, LeasedDelivery, MessageId, MessageRecord,
    MessageRef, MessageState, Name, Receipt, RedeliveryPlan, Subscription, Timestamp,
};
use crate::wakeups::Wakeups;

/// Everything Courier persists. Implementations answer a write only after it is durable.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip to the database, for health checks.
    async fn ping(&self) -> Result<(), StoreError>;

    // --- subscriptions ---

    /// Creates a subscription. An identical one under the same name is returned as it is
    /// (`created = false`); a different one fails with AlreadyExists.
    async fn create_subscription(
        &self,
        subscription: Subscription,
    ) -> Result<(Subscription, bool), StoreError>;
    async fn get_subscription(&self, name: &Name) -> Result<Subscription, StoreError>;
    async fn list_subscriptions(
        &self,
        topic: Option<&Name>,
    ) -> Result<Vec<Subscription>, StoreError>;
    /// Replaces ack deadline, retry policy and push endpoint; the topic must not change.
    async fn update_subscription(
        &self,
        subscription: Subscription,
    ) -> Result<Subscription, StoreError>;
    /// Deletes a subscription and its deliveries.
    async fn delete_subscription(&self, name: &Name) -> Result<(), StoreError>;

    // --- producer ---

    /// Stores a new message (PREPARED, or CONFIRMED with its deliveries when `publish`), or
    /// returns the retained message with the same producer and key if its content is equal.
    async fn insert_message(&self, message: NewMessage) -> Result<InsertOutcome, StoreError>;
    /// Applies a producer's or operator's decision (Confirm, Cancel, Resolve) and returns the
    /// resulting state. Confirm creates one delivery per current subscription of the topic.
    async fn decide(
        &self,
        message: &MessageRef,
        decision: Decision,
        now: Timestamp,
    ) -> Result<MessageState, StoreError>;
    /// An operator's decision on a PREPARED or UNRESOLVED message: exactly as [`Store::decide`],
    /// and when it moved the message, the message records it was decided by an operator and
    /// keeps a RESOLVED event naming `operator`.
    async fn resolve(
        &self,
        message: &MessageRef,
        decision: Decision,
        operator: &str,
        now: Timestamp,
    ) -> Result<MessageState, StoreError>;
    async fn get_message(&self, message: &MessageRef) -> Result<MessageRecord, StoreError>;
    /// What a message's timeline needs beyond its record: when and by whom it was decided, and
    /// its kept events, oldest first (see [`history`]): every check-back answer, every failed
    /// delivery attempt, and operators' Resolve, Redrive and Discard, the newest
    /// [`history::EVENTS_PER_MESSAGE`] of them. NotFound for an unknown message.
    async fn message_history(&self, message: MessageId) -> Result<MessageHistory, StoreError>;
    async fn list_messages(&self, query: MessageQuery) -> Result<Page<MessageRecord>, StoreError>;
    async fn register_checker(&self, checker: CheckerRegistration) -> Result<(), StoreError>;
    async fn get_checker(&self, producer: &Name)
    -> Result<Option<CheckerRegistration>, StoreError>;

    // --- consumer ---

    /// Leases due PENDING deliveries of a subscription, oldest due first: as many as `batch`
    /// allows, and at least one when any is due.
    async fn lease(
        &self,
        subscription: &Subscription,
        batch: Batch,
        now: Timestamp,
    ) -> Result<Vec<LeasedDelivery>, StoreError>;
    /// Gives back leases this process took ahead and never handed out (see `lease_ahead`):
    /// PENDING again, due from their publish time so they keep their place, the attempt not
    /// counted. A lease that ended meanwhile (it expired) is left as it is. Returns how many
    /// were given back.
    async fn return_leases(
        &self,
        leased: &[LeasedDelivery],
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Acks each receipt; one status per receipt, in order.
    async fn ack(&self, receipts: &[Receipt], now: Timestamp)
    -> Result<Vec<AckStatus>, StoreError>;
    /// Ends a lease early: PENDING after `delay` (or the backoff), or DEAD on the last attempt;
    /// the delivery's last error and its event read [`rules::nacked`]`(reason)`. Returns the
    /// plan applied, or `None` when this receipt's lease was released already (a repeat of the
    /// Nack, or the lease expired and nobody leased the delivery since): nothing changes.
    async fn nack(
        &self,
        receipt: &Receipt,
        delay: Option<Duration>,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<RedeliveryPlan>, StoreError>;
    /// Moves the lease end to `now + extension` and returns it.
    async fn extend_lease(
        &self,
        receipt: &Receipt,
        extension: Duration,
        now: Timestamp,
    ) -> Result<Timestamp, StoreError>;
    /// Parks the delivery as DEAD with the reason as its last error.
    async fn reject(
        &self,
        receipt: &Receipt,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Earliest time a PENDING delivery of the subscription becomes due, if any.
    async fn next_due(&self, subscription: &Name) -> Result<Option<Timestamp>, StoreError>;

    // --- scheduler ---

    /// Ends leases that expired by `now` (re-checking state and generation), at most a bounded
    /// batch per call: PENDING after backoff, or DEAD when out of attempts. Returns how many
    /// leases it ended and, by subscription, how many of them went DEAD; only leases this call
    /// ended count (not those acked, renewed or ended by another sweep meanwhile).
    async fn expire_leases(&self, now: Timestamp) -> Result<ExpiredLeases, StoreError>;
    /// Earliest lease end among LEASED deliveries, if any.
    async fn next_lease_expiry(&self) -> Result<Option<Timestamp>, StoreError>;

    // --- scheduler: check-back ---

    /// Claims up to `limit` PREPARED messages whose `next_check_at` is at or before `now`,
    /// earliest first, with the checker each producer registered (if any).
    ///
    /// The claim is atomic across schedulers and replicas: the same statement that selects the
    /// messages moves their `next_check_at` to `now + hold`, so no other scheduler claims them
    /// while this check is in flight (PostgreSQL: `UPDATE … WHERE id IN (SELECT … FOR UPDATE
    /// SKIP LOCKED LIMIT n) RETURNING …`). The claim changes nothing else: the state and
    /// `check_attempts` stay as they are, so a check lost to a crash is simply claimed again
    /// after `hold` and counts no attempt. Each returned [`DueCheck::attempt`] is the
    /// message's `check_attempts + 1`.
    async fn claim_due_checks(
        &self,
        now: Timestamp,
        limit: u32,
        hold: Duration,
    ) -> Result<Vec<DueCheck>, StoreError>;

    /// Records the verdict of check number `attempt` of a message, as a compare-and-set on
    /// `state = PREPARED AND check_attempts = attempt - 1`; when that does not hold (the
    /// producer's Confirm or Cancel, or an operator's Resolve, landed while the check was in
    /// flight; or another replica recorded this attempt already) nothing changes and the answer
    /// is [`CheckRecorded::Stale`] with the current state. So a late answer never undoes a
    /// decision, and an attempt is counted once.
    ///
    /// When it holds, in one transaction: `check_attempts = attempt`, and
    /// - `Decided(Commit)`: CONFIRMED exactly as a producer's Confirm (one PENDING delivery per
    ///   current subscription of the topic, due after the message's `deliver_after`; waiting
    ///   long polls and the scheduler are woken), `last_check_error` cleared;
    /// - `Decided(Rollback)`: CANCELLED exactly as a Cancel, `last_check_error` cleared;
    /// - `RetryAt { at, error }`: stays PREPARED, `next_check_at = at`, `last_check_error = error`;
    /// - `GiveUp { error }`: UNRESOLVED, `next_check_at` cleared, `last_check_error = error`.
    ///
    /// A `RetryAt` that applied signals [`Wakeups::checks`] with its time (the check loop may
    /// be sleeping until the claim's hold). Unknown message: NotFound.
    async fn record_check(
        &self,
        message_id: MessageId,
        attempt: u32,
        verdict: CheckVerdict,
        now: Timestamp,
    ) -> Result<CheckRecorded, StoreError>;

    /// Earliest `next_check_at` among PREPARED messages (a claimed check counts at its hold's
    /// end), if any. (A created PREPARED message signals [`Wakeups::checks`] with its first
    /// check time from `insert_message`, so the loop need not poll for new ones.)
    async fn next_check_due(&self) -> Result<Option<Timestamp>, StoreError>;

    // --- scheduler: push delivery ---

    /// Records a failed push (an error status, a timeout, an unreachable receiver) of the lease
    /// named by `receipt`: like a Nack without delay, but with `error` as the delivery's
    /// `last_error`. A compare-and-set on `state = LEASED AND generation = receipt.generation`:
    /// PENDING due after the subscription's backoff for the attempt, or DEAD when the attempt
    /// was the subscription's `max_attempts` (the policy is read from `subscription`). Returns
    /// the plan applied, or `None` when the receipt no longer holds the lease (it expired and
    /// was ended by the lease-expiry sweep, which counted the attempt already): nothing changes.
    /// Wakes the subscription's waiters and the scheduler when it applied.
    async fn fail_delivery(
        &self,
        subscription: &Subscription,
        receipt: &Receipt,
        error: &str,
        now: Timestamp,
    ) -> Result<Option<RedeliveryPlan>, StoreError>;

    // --- scheduler: retention ---

    /// Deletes up to `limit` messages that became final at or before `cutoff`, with their
    /// deliveries, oldest first; returns how many messages. Deleting a message frees its
    /// producer key.
    ///
    /// A message becomes final when it is CANCELLED (at the cancel), or CONFIRMED with at least
    /// one routed delivery and every remaining delivery ACKED (at the last ack, or when the last
    /// non-ACKED delivery is deleted with its subscription or as a dead letter). The backend
    /// records that moment (`final_at`) whatever the write that causes it. Never final: PREPARED
    /// and UNRESOLVED messages; CONFIRMED messages with a PENDING, LEASED or DEAD delivery (dead
    /// letters are kept until redriven and acked, or deleted); unrouted confirms (no delivery was
    /// ever created: kept for the operator, shown in GetStats).
    async fn delete_final_messages(&self, cutoff: Timestamp, limit: u32)
    -> Result<u64, StoreError>;

    /// The earliest `final_at` among retained final messages (see
    /// [`Store::delete_final_messages`]), if any.
    async fn oldest_final_at(&self) -> Result<Option<Timestamp>, StoreError>;

    // --- admin ---

    async fn list_deliveries(
        &self,
        query: DeliveryQuery,
    ) -> Result<Page<crate::domain::DeliveryStatus>, StoreError>;
    /// Makes the `chosen` DEAD deliveries PENDING with attempts reset, and returns how many.
    /// With a `rate` (per second, 0 for all at once) the i-th of them, oldest message first,
    /// is due at `now + i / rate`. A delivery in a lane waits for its turn there; a head that
    /// blocked its lane is delivered first. Each gets a REDRIVEN event. NotFound for an unknown
    /// subscription.
    async fn redrive(
        &self,
        chosen: &DeadLetters,
        rate: f64,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Ends the `chosen` DEAD deliveries for good: DISCARDED, never delivered again, final for
    /// their messages. A lane a discarded head held goes on. Each gets a DISCARDED event.
    /// Answers how many it discarded; NotFound for an unknown subscription.
    async fn discard_dead_letters(
        &self,
        chosen: &DeadLetters,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// How many DEAD deliveries `chosen` names (what a Redrive or Discard would act on now);
    /// NotFound for an unknown subscription.
    async fn count_dead_letters(&self, chosen: &DeadLetters) -> Result<u64, StoreError>;
    /// The first `limit` dead letters `chosen` names, oldest message first; NotFound for an
    /// unknown subscription.
    async fn list_dead_letters(
        &self,
        chosen: &DeadLetters,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError>;
    /// Counts by state per topic and subscription as of `now`; `scope` says whether the
    /// retained totals are counted too (see [`StatsScope`]).
    async fn stats(&self, now: Timestamp, scope: StatsScope) -> Result<Stats, StoreError>;

    // --- callbacks ---

    /// The callback signing key every replica shares (PKCS#8 DER): the stored one, or
    /// `candidate`, stored durably now, when there is none yet. Replicas offering different
    /// candidates at the same time all get the one that was stored.
    async fn shared_signing_key(&self, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError>;
}

/// The kinds of database Courier can store in, told apart by the `database_url` scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:` followed by a file path.
    Sqlite,
    /// `postgres://` or `postgresql://`.
    Postgres,
}

impl Backend {
    /// The backend `database_url` names, if any.
    pub fn of(database_url: &str) -> Option<Self> {
        if database_url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    /// The backend's name in logs and reports (the URL itself may carry a password).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// What `database_url` must look like, for error messages (never quoting the value).
    pub const EXPECTED: &'static str =
        "must start with sqlite: or postgres:// (the value is not shown; it may hold a password)";
}

fn unknown_backend() -> StoreError {
    StoreError::InvalidConfig(format!("database_url {}", Backend::EXPECTED))
}

/// Opens the backend named by `config.database_url` and runs its migrations.
pub async fn open(config: &Config, wakeups: Wakeups) -> Result<Arc<dyn Store>, StoreError> {
    let url = config.database_url.as_str();
    match Backend::of(url) {
        Some(Backend::Sqlite) => {
            let store = sqlite::SqliteStore::open(url, &config.sqlite, wakeups).await?;
            Ok(Arc::new(store))
        }
        Some(Backend::Postgres) => {
            let store = postgres::PostgresStore::open(url, &config.postgres, wakeups).await?;
            Ok(Arc::new(store))
        }
        None => Err(unknown_backend()),
    }
}

/// Runs the migrations of the backend named by `config.database_url`, then returns.
pub async fn migrate(config: &Config) -> Result<(), StoreError> {
    let url = config.database_url.as_str();
    match Backend::of(url) {
        Some(Backend::Sqlite) => open(config, Wakeups::default()).await.map(|_| ()),
        Some(Backend::Postgres) => postgres::PostgresStore::migrate(url, &config.postgres).await,
        None => Err(unknown_backend()),
    }
}
