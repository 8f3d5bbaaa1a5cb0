//! Persistence behind one trait, with an embedded SQLite backend and a PostgreSQL backend.
//! Every state change is a compare-and-set on the stored state (and lease generation), so
//! concurrent callers, scheduler loops and replicas can never both win a transition.

mod error;
mod sql;
pub mod sqlite;
mod types;
mod wakeups;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use error::StoreError;
pub use types::*;
pub use wakeups::Wakeups;

use crate::config::Config;
use crate::domain::{
    Decision, MessageId, MessageRecord, MessageRef, MessageState, Name, Receipt, Subscription,
    Timestamp,
};

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
    async fn list_subscriptions(&self, topic: Option<&Name>)
    -> Result<Vec<Subscription>, StoreError>;
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
    async fn get_message(&self, message: &MessageRef) -> Result<MessageRecord, StoreError>;
    async fn list_messages(&self, query: MessageQuery) -> Result<Page<MessageRecord>, StoreError>;
    async fn register_checker(&self, checker: CheckerRegistration) -> Result<(), StoreError>;
    async fn get_checker(&self, producer: &Name) -> Result<Option<CheckerRegistration>, StoreError>;

    // --- consumer ---

    /// Leases up to `max` due PENDING deliveries of a subscription, oldest due first.
    async fn lease(
        &self,
        subscription: &Subscription,
        max: u32,
        now: Timestamp,
    ) -> Result<Vec<LeasedDelivery>, StoreError>;
    /// Acks each receipt; one status per receipt, in order.
    async fn ack(&self, receipts: &[Receipt], now: Timestamp) -> Result<Vec<AckStatus>, StoreError>;
    /// Ends a lease early: PENDING after `delay` (or the backoff), or DEAD on the last attempt.
    async fn nack(
        &self,
        receipt: &Receipt,
        delay: Option<Duration>,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Moves the lease end to `now + extension` and returns it.
    async fn extend_lease(
        &self,
        receipt: &Receipt,
        extension: Duration,
        now: Timestamp,
    ) -> Result<Timestamp, StoreError>;
    /// Parks the delivery as DEAD with the reason as its last error.
    async fn reject(&self, receipt: &Receipt, reason: &str, now: Timestamp)
    -> Result<(), StoreError>;
    /// Earliest time a PENDING delivery of the subscription becomes due, if any.
    async fn next_due(&self, subscription: &Name) -> Result<Option<Timestamp>, StoreError>;

    // --- scheduler ---

    /// Ends every lease that expired by `now` (re-checking state and generation): PENDING after
    /// backoff, or DEAD when out of attempts. Returns how many leases it ended.
    async fn expire_leases(&self, now: Timestamp) -> Result<u64, StoreError>;
    /// Earliest lease end among LEASED deliveries, if any.
    async fn next_lease_expiry(&self) -> Result<Option<Timestamp>, StoreError>;

    // --- admin ---

    async fn list_deliveries(
        &self,
        query: DeliveryQuery,
    ) -> Result<Page<crate::domain::DeliveryStatus>, StoreError>;
    /// Makes DEAD deliveries PENDING (due now) with attempts reset: all of the subscription's,
    /// or only those of the listed messages. Returns how many.
    async fn redrive(
        &self,
        subscription: &Name,
        message_ids: &[MessageId],
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    async fn stats(&self, now: Timestamp) -> Result<Stats, StoreError>;
}

/// Opens the backend named by `config.database_url` and runs its migrations.
pub async fn open(config: &Config, wakeups: Wakeups) -> Result<Arc<dyn Store>, StoreError> {
    if config.database_url.starts_with("sqlite:") {
        let store = sqlite::SqliteStore::open(&config.database_url, &config.sqlite, wakeups).await?;
        Ok(Arc::new(store))
    } else {
        Err(StoreError::Unsupported(
            "the PostgreSQL backend is not built yet; use a sqlite: database_url".into(),
        ))
    }
}

/// Runs the migrations of the backend named by `config.database_url`, then returns.
pub async fn migrate(config: &Config) -> Result<(), StoreError> {
    open(config, Wakeups::default()).await.map(|_| ())
}
