//! Decoding SQLite rows into domain values. The store only holds values it validated, so a
//! value that fails to decode is corrupt data: an internal error.

use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::domain::{
    DeliveryState, DeliveryStatus, Headers, MessageId, MessageKey, MessageRecord, MessageState,
    Name, RetryPolicy, Subscription, Timestamp,
};
use crate::store::{CheckerRegistration, StoreError};

pub const SUBSCRIPTION_COLUMNS: &str = "name, topic, ack_deadline_ms, max_attempts, \
    initial_backoff_ms, max_backoff_ms, multiplier, push_endpoint, created_at";

pub const MESSAGE_COLUMNS: &str = "m.id, m.producer, m.topic, m.key, m.headers, \
    length(m.payload) AS payload_bytes, m.state, m.created_at, m.updated_at, m.check_attempts, \
    m.next_check_at, m.last_check_error";

pub const DELIVERY_COLUMNS: &str = "d.subscription, d.message_id, d.state, d.attempts, \
    d.next_attempt_at, d.lease_expires_at, d.last_error";

pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn duration(row: &SqliteRow, column: &str) -> Result<Duration, StoreError> {
    let value: i64 = row.try_get(column)?;
    Ok(Duration::from_millis(u64::try_from(value).unwrap_or(0)))
}

fn timestamp(row: &SqliteRow, column: &str) -> Result<Option<Timestamp>, StoreError> {
    let value: Option<i64> = row.try_get(column)?;
    Ok(value.map(Timestamp::from_millis))
}

pub fn message_id(value: &str) -> Result<MessageId, StoreError> {
    MessageId::parse(value).map_err(|_| StoreError::internal(format!("corrupt message id {value:?}")))
}

pub fn headers_to_json(headers: &Headers) -> String {
    serde_json::to_string(headers).unwrap_or_else(|_| "{}".into())
}

pub fn headers_from_json(text: &str) -> Result<Headers, StoreError> {
    serde_json::from_str(text).map_err(StoreError::internal)
}

pub fn message_state(value: &str) -> Result<MessageState, StoreError> {
    MessageState::parse(value)
        .ok_or_else(|| StoreError::internal(format!("corrupt message state {value:?}")))
}

pub fn delivery_state(value: &str) -> Result<DeliveryState, StoreError> {
    DeliveryState::parse(value)
        .ok_or_else(|| StoreError::internal(format!("corrupt delivery state {value:?}")))
}

pub fn subscription(row: &SqliteRow) -> Result<Subscription, StoreError> {
    let max_attempts: i64 = row.try_get("max_attempts")?;
    Ok(Subscription {
        name: Name::from_trusted(row.try_get("name")?),
        topic: Name::from_trusted(row.try_get("topic")?),
        ack_deadline: duration(row, "ack_deadline_ms")?,
        retry_policy: RetryPolicy {
            max_attempts: u32::try_from(max_attempts).map_err(StoreError::internal)?,
            initial_backoff: duration(row, "initial_backoff_ms")?,
            max_backoff: duration(row, "max_backoff_ms")?,
            multiplier: row.try_get("multiplier")?,
        },
        push_endpoint: row.try_get("push_endpoint")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

/// A message row (selected with [`MESSAGE_COLUMNS`]) without its deliveries.
pub fn message(row: &SqliteRow) -> Result<MessageRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let headers: String = row.try_get("headers")?;
    let payload_bytes: i64 = row.try_get("payload_bytes")?;
    let check_attempts: i64 = row.try_get("check_attempts")?;
    Ok(MessageRecord {
        id: message_id(&id)?,
        producer: Name::from_trusted(row.try_get("producer")?),
        topic: Name::from_trusted(row.try_get("topic")?),
        key: MessageKey::from_trusted(row.try_get("key")?),
        headers: headers_from_json(&headers)?,
        payload_bytes: u64::try_from(payload_bytes).unwrap_or(0),
        state: message_state(&state)?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
        check_attempts: u32::try_from(check_attempts).unwrap_or(u32::MAX),
        next_check_at: timestamp(row, "next_check_at")?,
        last_check_error: row.try_get("last_check_error")?,
        deliveries: Vec::new(),
    })
}

/// A delivery row selected with [`DELIVERY_COLUMNS`].
pub fn delivery(row: &SqliteRow) -> Result<DeliveryStatus, StoreError> {
    let message: String = row.try_get("message_id")?;
    let state: String = row.try_get("state")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(DeliveryStatus {
        subscription: Name::from_trusted(row.try_get("subscription")?),
        message_id: message_id(&message)?,
        state: delivery_state(&state)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: timestamp(row, "next_attempt_at")?,
        lease_expires_at: timestamp(row, "lease_expires_at")?,
        last_error: row.try_get("last_error")?,
    })
}

pub fn checker(row: &SqliteRow) -> Result<CheckerRegistration, StoreError> {
    Ok(CheckerRegistration {
        producer: Name::from_trusted(row.try_get("producer")?),
        endpoint: row.try_get("endpoint")?,
        timeout: duration(row, "timeout_ms")?,
    })
}
