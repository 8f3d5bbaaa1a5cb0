//! The store-side rules both backends apply identically, on top of the domain's pure state
//! machines: how a receipt's lease check becomes an error, and the texts clients and
//! operators see. Keeping them here makes the two backends answer the same way.

use crate::domain::{
    DeliveryState, LeaseCheck, MessageId, MessageKey, Name, Quoted, Receipt, Subscription,
    Timestamp, check_lease,
};
use crate::store::StoreError;

/// What a delivery counts against a Receive's byte budget besides its payload, headers (as
/// stored, JSON), key and ordering key: an allowance for its ids, names, receipt and times, so
/// that an answer within the budget stays within a client's message limit.
pub const DELIVERY_ALLOWANCE: i64 = 512;

/// When a delivery leased ahead and given back (`Store::return_leases`) is due again: from
/// its publish time, so it keeps its place among those leased after it (it was due already).
pub fn due_again(published_at: Timestamp, now: Timestamp) -> Timestamp {
    published_at.min(now)
}

/// How many of the candidates, with these sizes in lease order, one lease of `batch` hands
/// out: those that fit in the byte budget, and always the first.
pub fn fitting(sizes: impl IntoIterator<Item = i64>, batch: crate::store::Batch) -> usize {
    let mut total: u64 = 0;
    let mut count = 0;
    for size in sizes {
        total = total.saturating_add(u64::try_from(size).unwrap_or(0));
        if count > 0 && total > batch.bytes {
            break;
        }
        count += 1;
    }
    count
}

/// Most expired leases one `expire_leases` call ends, so a sweep never holds locks for long.
pub const EXPIRY_BATCH: i64 = 1000;

/// `last_error` of a delivery after a Nack.
pub const NACKED: &str = "nacked by the consumer";

/// What a Nack records as its delivery's last error: [`NACKED`], with the consumer's reason
/// when it gave one.
pub fn nacked(reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("{NACKED}: {reason}"),
        None => NACKED.to_owned(),
    }
}

/// `last_error` of a delivery whose lease ran out.
pub const LEASE_EXPIRED: &str = "lease expired before an ack";

/// `last_error` of a rejected delivery.
pub fn rejected(reason: &str) -> String {
    if reason.is_empty() {
        "rejected by the consumer".to_owned()
    } else {
        format!("rejected by the consumer: {reason}")
    }
}

/// Whether `receipt` may still act on its delivery, given the delivery's current `(state,
/// generation, attempts)`: the lease check and the attempts, or the error its holder sees.
pub fn held_lease(
    current: Option<(DeliveryState, u32, u32)>,
    receipt: &Receipt,
) -> Result<(LeaseCheck, u32), StoreError> {
    let attempts = current.map(|(_, _, a)| a).unwrap_or(0);
    match check_lease(current.map(|(s, g, _)| (s, g)), receipt.generation) {
        LeaseCheck::NotFound => Err(StoreError::NotFound(format!("receipt {receipt}"))),
        LeaseCheck::Lost(current) => Err(StoreError::LeaseLost { current }),
        check => Ok((check, attempts)),
    }
}

pub fn subscription_not_found(name: &Name) -> StoreError {
    StoreError::NotFound(format!("subscription {name}"))
}

pub fn subscription_conflict(name: &Name) -> StoreError {
    StoreError::AlreadyExists(format!(
        "subscription {name} already exists with another configuration"
    ))
}

/// What an update may not change: the topic, and whether the subscription is ordered (its
/// deliveries were routed into lanes, or not, from the start).
pub fn check_update(existing: &Subscription, update: &Subscription) -> Result<(), StoreError> {
    let name = &existing.name;
    if existing.topic != update.topic {
        return Err(StoreError::FailedPrecondition(format!(
            "the topic of subscription {name} is {} and cannot change",
            existing.topic
        )));
    }
    if existing.ordered != update.ordered {
        let is = if existing.ordered {
            "ordered"
        } else {
            "not ordered"
        };
        return Err(StoreError::FailedPrecondition(format!(
            "subscription {name} is {is}; that is set at creation and cannot change"
        )));
    }
    Ok(())
}

pub fn no_subscription(topic: &Name) -> StoreError {
    StoreError::FailedPrecondition(format!(
        "topic {topic} has no subscription; create one first so the message has somewhere to go"
    ))
}

pub fn key_conflict(producer: &Name, key: &MessageKey, existing: MessageId) -> StoreError {
    StoreError::AlreadyExists(format!(
        "producer {producer} already used key {} for message {existing} with other content",
        Quoted(key.as_str())
    ))
}
