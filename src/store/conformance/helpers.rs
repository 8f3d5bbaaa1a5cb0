//! Builders and assertions every conformance test shares.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::domain::{
    DeadHeadPolicy, DeliveryStatus, MessageId, MessageKey, MessageRef, Name, OrderingKey, Receipt,
    RetryPolicy, Subscription, Timestamp,
};
use crate::store::{Batch, DeadLetters, NewMessage, Store};

pub fn name(value: &str) -> Name {
    Name::parse("name", value).unwrap()
}

pub fn key(value: &str) -> MessageKey {
    MessageKey::parse("key", value).unwrap()
}

/// Every dead letter of `sub`, or those of `ids` when it is not empty.
pub fn dead_of(sub: &str, ids: &[MessageId]) -> DeadLetters {
    DeadLetters::of(name(sub), ids.to_vec())
}

pub const PRODUCER: &str = "shop";
pub const TOPIC: &str = "orders";
pub const SUB: &str = "billing";
pub const ACK_DEADLINE: Duration = Duration::from_secs(30);

pub fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
        multiplier: 2.0,
    }
}

pub fn subscription(sub: &str, topic: &str, max_attempts: u32, now: Timestamp) -> Subscription {
    Subscription {
        name: name(sub),
        topic: name(topic),
        ack_deadline: ACK_DEADLINE,
        retry_policy: policy(max_attempts),
        push_endpoint: None,
        ordered: false,
        dead_head: DeadHeadPolicy::default(),
        created_at: now,
    }
}

pub fn message(topic: &str, message_key: &str, publish: bool, now: Timestamp) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        producer: name(PRODUCER),
        topic: name(topic),
        key: key(message_key),
        ordering_key: OrderingKey::default(),
        payload: format!("payload of {message_key}").into_bytes(),
        headers: BTreeMap::from([("trace".to_owned(), message_key.to_owned())]),
        check_after: CHECK_AFTER,
        deliver_after: Duration::ZERO,
        publish,
        trace: None,
        now,
    }
}

pub fn by_id(id: MessageId) -> MessageRef {
    MessageRef::Id(id)
}

/// A subscription `SUB` on `TOPIC` with `max_attempts`.
pub async fn subscribe(store: &dyn Store, max_attempts: u32, now: Timestamp) -> Subscription {
    store
        .create_subscription(subscription(SUB, TOPIC, max_attempts, now))
        .await
        .unwrap()
        .0
}

/// Publishes a message to `TOPIC` and returns its id.
pub async fn publish(store: &dyn Store, message_key: &str, now: Timestamp) -> MessageId {
    store
        .insert_message(message(TOPIC, message_key, true, now))
        .await
        .unwrap()
        .message_id
}

/// The one delivery of `id` to `SUB`.
pub async fn delivery(store: &dyn Store, id: MessageId) -> DeliveryStatus {
    let record = store.get_message(&by_id(id)).await.unwrap();
    record
        .deliveries
        .into_iter()
        .find(|d| d.subscription.as_str() == SUB)
        .expect("a delivery to SUB")
}

pub async fn lease_one(store: &dyn Store, sub: &Subscription, now: Timestamp) -> Receipt {
    let leased = store.lease(sub, Batch::messages(1), now).await.unwrap();
    assert_eq!(leased.len(), 1, "one delivery due at {now:?}");
    leased[0].receipt.clone()
}

pub fn later(now: Timestamp, millis: u64) -> Timestamp {
    now.plus(Duration::from_millis(millis))
}

/// When a prepared message is first checked, after its Prepare.
pub const CHECK_AFTER: Duration = Duration::from_secs(10);
/// How long a check claim holds its message.
pub const HOLD: Duration = Duration::from_secs(60);

/// Prepares a message with key `message_key` (first check `CHECK_AFTER` after `now`).
pub async fn prepare(store: &dyn Store, message_key: &str, now: Timestamp) -> MessageId {
    store
        .insert_message(message(TOPIC, message_key, false, now))
        .await
        .unwrap()
        .message_id
}
