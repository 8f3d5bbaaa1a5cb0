//! Encoding values for, and decoding rows from, both SQL backends. The two schemas have the
//! same columns in the same units; only the id column's type differs, so each backend gives
//! its row type a [`Columns`] implementation and everything else is shared. The store only
//! holds values it validated, so a value that fails to decode is corrupt data: an internal
//! error.

use std::time::Duration;

use crate::domain::{
    CheckerRegistration, DeadHeadPolicy, DeliveryState, DeliveryStatus, DueCheck, Headers,
    LeasedDelivery, MessageId, MessageKey, MessageRecord, MessageState, Name, OrderingKey, Receipt,
    RetryPolicy, Subscription, Timestamp, TraceContext,
};
use crate::store::StoreError;
use crate::store::dead_letters::DeadLetter;
use crate::store::history::{EventKind, MessageEvent};

pub const SUBSCRIPTION_COLUMNS: &str = "name, topic, ack_deadline_ms, max_attempts, \
    initial_backoff_ms, max_backoff_ms, multiplier, push_endpoint, created_at, \
    CAST(CASE WHEN ordered THEN 1 ELSE 0 END AS BIGINT) AS ordered, dead_head";

/// The columns of a message row aliased `m`, whose payload is the expression `payload`.
pub fn message_columns(payload: &str) -> String {
    format!(
        "m.id, m.producer, m.topic, m.key, m.ordering_key, m.headers, \
         CAST(length({payload}) AS BIGINT) AS payload_bytes, m.state, m.created_at, \
         m.updated_at, m.check_attempts, m.next_check_at, m.last_check_error"
    )
}

pub const DELIVERY_COLUMNS: &str = "d.subscription, d.message_id, d.state, d.attempts, \
    d.next_attempt_at, d.lease_expires_at, d.last_error, d.ordering_key";

/// Typed access to a row's columns, by name. Integers are 64-bit in both schemas.
pub trait Columns {
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn real(&self, column: &str) -> Result<f64, StoreError>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError>;
    /// A message id column (text on SQLite, uuid on PostgreSQL).
    fn id(&self, column: &str) -> Result<MessageId, StoreError>;
}

/// Implements the type-generic part of [`Columns`] for a sqlx row type; the backend writes
/// `id` itself.
macro_rules! typed_columns {
    () => {
        fn int(&self, column: &str) -> Result<i64, $crate::store::StoreError> {
            Ok(sqlx::Row::try_get(self, column)?)
        }
        fn opt_int(&self, column: &str) -> Result<Option<i64>, $crate::store::StoreError> {
            Ok(sqlx::Row::try_get(self, column)?)
        }
        fn text(&self, column: &str) -> Result<String, $crate::store::StoreError> {
            Ok(sqlx::Row::try_get(self, column)?)
        }
        fn opt_text(&self, column: &str) -> Result<Option<String>, $crate::store::StoreError> {
            Ok(sqlx::Row::try_get(self, column)?)
        }
        fn real(&self, column: &str) -> Result<f64, $crate::store::StoreError> {
            Ok(sqlx::Row::try_get(self, column)?)
        }
        fn bytes(&self, column: &str) -> Result<Vec<u8>, $crate::store::StoreError> {
            Ok(sqlx::Row::try_get(self, column)?)
        }
    };
}
pub(crate) use typed_columns;

pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn duration(row: &impl Columns, column: &str) -> Result<Duration, StoreError> {
    Ok(Duration::from_millis(
        u64::try_from(row.int(column)?).unwrap_or(0),
    ))
}

fn timestamp(row: &impl Columns, column: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row.opt_int(column)?.map(Timestamp::from_millis))
}

fn count(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(StoreError::internal)
}

pub fn message_id(value: &str) -> Result<MessageId, StoreError> {
    MessageId::parse(value)
        .map_err(|_| StoreError::internal(format!("corrupt message id {value:?}")))
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

/// A retry policy from the `max_attempts, initial_backoff_ms, max_backoff_ms, multiplier`
/// columns of `subscriptions`.
pub fn retry_policy(row: &impl Columns) -> Result<RetryPolicy, StoreError> {
    Ok(RetryPolicy {
        max_attempts: count(row.int("max_attempts")?)?,
        initial_backoff: duration(row, "initial_backoff_ms")?,
        max_backoff: duration(row, "max_backoff_ms")?,
        multiplier: row.real("multiplier")?,
    })
}

/// A subscription row selected with [`SUBSCRIPTION_COLUMNS`].
pub fn subscription(row: &impl Columns) -> Result<Subscription, StoreError> {
    Ok(Subscription {
        name: Name::from_trusted(row.text("name")?),
        topic: Name::from_trusted(row.text("topic")?),
        ack_deadline: duration(row, "ack_deadline_ms")?,
        retry_policy: retry_policy(row)?,
        push_endpoint: row.opt_text("push_endpoint")?,
        ordered: row.int("ordered")? != 0,
        dead_head: dead_head(&row.text("dead_head")?)?,
        created_at: Timestamp::from_millis(row.int("created_at")?),
    })
}

/// A message row (selected with [`message_columns`]) without its deliveries.
pub fn dead_head(value: &str) -> Result<DeadHeadPolicy, StoreError> {
    DeadHeadPolicy::parse(value)
        .ok_or_else(|| StoreError::internal(format!("corrupt dead-head policy {value:?}")))
}

pub fn message(row: &impl Columns) -> Result<MessageRecord, StoreError> {
    Ok(MessageRecord {
        id: row.id("id")?,
        producer: Name::from_trusted(row.text("producer")?),
        topic: Name::from_trusted(row.text("topic")?),
        key: MessageKey::from_trusted(row.text("key")?),
        ordering_key: OrderingKey::from_trusted(row.text("ordering_key")?),
        headers: headers_from_json(&row.text("headers")?)?,
        payload_bytes: u64::try_from(row.int("payload_bytes")?).unwrap_or(0),
        state: message_state(&row.text("state")?)?,
        created_at: Timestamp::from_millis(row.int("created_at")?),
        updated_at: Timestamp::from_millis(row.int("updated_at")?),
        check_attempts: u32::try_from(row.int("check_attempts")?).unwrap_or(u32::MAX),
        next_check_at: timestamp(row, "next_check_at")?,
        last_check_error: row.opt_text("last_check_error")?,
        deliveries: Vec::new(),
    })
}

/// A delivery row selected with [`DELIVERY_COLUMNS`].
pub fn delivery(row: &impl Columns) -> Result<DeliveryStatus, StoreError> {
    Ok(DeliveryStatus {
        subscription: Name::from_trusted(row.text("subscription")?),
        message_id: row.id("message_id")?,
        state: delivery_state(&row.text("state")?)?,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: timestamp(row, "next_attempt_at")?,
        lease_expires_at: timestamp(row, "lease_expires_at")?,
        last_error: row.opt_text("last_error")?,
        ordering_key: row.opt_text("ordering_key")?.map(OrderingKey::from_trusted),
    })
}

pub fn checker(row: &impl Columns) -> Result<CheckerRegistration, StoreError> {
    Ok(CheckerRegistration {
        producer: Name::from_trusted(row.text("producer")?),
        endpoint: row.text("endpoint")?,
        timeout: duration(row, "timeout_ms")?,
    })
}

/// The trace context from a message's `traceparent, tracestate` columns.
pub fn trace_context(row: &impl Columns) -> Result<Option<TraceContext>, StoreError> {
    let Some(traceparent) = row.opt_text("traceparent")? else {
        return Ok(None);
    };
    let tracestate = row.opt_text("tracestate")?;
    TraceContext::from_stored(&traceparent, tracestate.as_deref())
        .map(Some)
        .map_err(|error| StoreError::internal(format!("corrupt trace context: {error}")))
}

/// The `traceparent, tracestate` column values of a message's trace context.
pub fn trace_columns(trace: Option<&TraceContext>) -> (Option<String>, Option<String>) {
    match trace {
        None => (None, None),
        Some(trace) => (
            Some(trace.parent.to_string()),
            trace.state.as_ref().map(ToString::to_string),
        ),
    }
}

/// A delivery just leased to `subscription` until `lease_expires_at`, from a row with the
/// delivery's new `message_id, attempts, generation` and its message's `producer, topic, key,
/// payload, headers, decided_at, traceparent, tracestate`.
pub fn leased_delivery(
    row: &impl Columns,
    subscription: &Name,
    lease_expires_at: Timestamp,
) -> Result<LeasedDelivery, StoreError> {
    Ok(LeasedDelivery {
        receipt: Receipt {
            message_id: row.id("message_id")?,
            generation: count(row.int("generation")?)?,
            subscription: subscription.clone(),
        },
        topic: Name::from_trusted(row.text("topic")?),
        producer: Name::from_trusted(row.text("producer")?),
        key: MessageKey::from_trusted(row.text("key")?),
        ordering_key: OrderingKey::from_trusted(row.text("ordering_key")?),
        payload: row.bytes("payload")?,
        headers: headers_from_json(&row.text("headers")?)?,
        attempt: count(row.int("attempts")?)?,
        published_at: Timestamp::from_millis(row.opt_int("decided_at")?.unwrap_or_default()),
        lease_expires_at,
        trace: trace_context(row)?,
    })
}

/// A claimed check-back, from a row with the message's `id, producer, topic, key, headers,
/// created_at, check_attempts, traceparent, tracestate` and its producer's checker `endpoint, timeout_ms` (NULL when
/// none is registered).
pub fn due_check(row: &impl Columns) -> Result<DueCheck, StoreError> {
    let producer = Name::from_trusted(row.text("producer")?);
    let checker = match row.opt_text("endpoint")? {
        Some(endpoint) => Some(CheckerRegistration {
            producer: producer.clone(),
            endpoint,
            timeout: duration(row, "timeout_ms")?,
        }),
        None => None,
    };
    Ok(DueCheck {
        message_id: row.id("id")?,
        producer,
        topic: Name::from_trusted(row.text("topic")?),
        key: MessageKey::from_trusted(row.text("key")?),
        headers: headers_from_json(&row.text("headers")?)?,
        prepared_at: Timestamp::from_millis(row.int("created_at")?),
        attempt: count(row.int("check_attempts")? + 1)?,
        checker,
        trace: trace_context(row)?,
    })
}

/// The state, lease generation and attempts of a delivery from its `state, generation,
/// attempts` columns.
pub fn lease_state(row: &impl Columns) -> Result<(DeliveryState, u32, u32), StoreError> {
    Ok((
        delivery_state(&row.text("state")?)?,
        count(row.int("generation")?)?,
        count(row.int("attempts")?)?,
    ))
}

/// Trims the one extra row fetched to learn whether another page exists, and returns the
/// cursor of the next page.
pub fn next_cursor<T>(
    items: &mut Vec<T>,
    page_size: u32,
    id: impl Fn(&T) -> MessageId,
) -> Option<MessageId> {
    if items.len() > page_size as usize {
        items.truncate(page_size as usize);
        items.last().map(id)
    } else {
        None
    }
}

pub fn message_event(row: &impl Columns) -> Result<MessageEvent, StoreError> {
    Ok(MessageEvent {
        at: Timestamp::from_millis(row.int("at")?),
        kind: EventKind::parse(&row.text("kind")?)?,
        subscription: row.opt_text("subscription")?.map(Name::from_trusted),
        attempt: row.opt_int("attempt")?.map(count).transpose()?,
        outcome: row.opt_text("outcome")?,
        detail: row.opt_text("detail")?,
    })
}

pub fn dead_letter(row: &impl Columns) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        message_id: row.id("message_id")?,
        key: MessageKey::from_trusted(row.text("key")?),
        ordering_key: row.opt_text("ordering_key")?,
        attempts: count(row.int("attempts")?)?,
        last_error: row.opt_text("last_error")?,
        dead_at: Timestamp::from_millis(row.int("dead_at")?),
    })
}
