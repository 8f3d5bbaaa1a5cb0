//! The hot writes (Prepare, Publish, Confirm) as one autocommitted statement each; Prepare
//! and Confirm take a whole batch of concurrent calls (`batcher`) in that one statement.
//! The transactional versions in `ops` take five to seven round trips (BEGIN, a read, a
//! check, the write, the routing, the notification, COMMIT), and at a few thousand messages a
//! second those round trips, not the disk, are what PostgreSQL and Courier spend their CPU on.
//!
//! Each statement does the common case only: a new key with a subscription, or a Confirm of a
//! message still open. Anything else (a repeated key, a missing subscription, a decided or
//! unknown message) changes nothing and answers `None`, and the caller runs the
//! transactional version, which tells those cases apart with the same guarantees as before.
//! Data-modifying CTEs all run on one snapshot and commit together, and PostgreSQL sends the
//! `pg_notify`s of the statement only if it commits.

use std::collections::{HashMap, HashSet};

use sqlx::PgConnection;
use uuid::Uuid;

use super::notify;
use super::rows::{Columns, headers_to_json, millis, trace_columns};
use crate::domain::{MessageId, MessageState, Name, Timestamp};
use crate::store::{Effects, InsertOutcome, NewMessage, StoreError, Written};

/// Publishes a new message: CONFIRMED and routed to every subscription of its topic, which
/// it share-locks as `ops::route` does. Nothing is written when the key exists or the topic
/// has no subscription.
const PUBLISH: &str = "\
WITH targets AS ( \
  SELECT name FROM subscriptions WHERE topic = $3 ORDER BY name FOR SHARE), \
inserted AS ( \
  INSERT INTO messages (id, producer, topic, key, payload, headers, state, deliver_after_ms, \
    created_at, updated_at, decided_at, routed, traceparent, tracestate) \
  SELECT $1::uuid, $2::text, $3::text, $4::text, $5::bytea, $6::text, 'CONFIRMED', \
    $7::bigint, $8::bigint, $8::bigint, $8::bigint, (SELECT count(*) FROM targets), \
    $11::text, $12::text \
  WHERE EXISTS (SELECT 1 FROM targets) \
  ON CONFLICT (producer, key) DO NOTHING \
  RETURNING id), \
routed AS ( \
  INSERT INTO deliveries (subscription, message_id, state, next_attempt_at, updated_at) \
  SELECT t.name, i.id, 'PENDING', $9::bigint, $8::bigint FROM inserted i CROSS JOIN targets t \
  RETURNING subscription) \
SELECT subscription, pg_notify($10, subscription) AS notified FROM routed";

/// Prepares a batch of new messages (arrays, one element per message). A message whose key
/// exists (or repeats within the batch) or whose topic has no subscription is not inserted.
/// Rows are inserted in key order, so two batches never wait on each other's keys in a cycle.
const PREPARE_BATCH: &str = "\
INSERT INTO messages (id, producer, topic, key, payload, headers, state, deliver_after_ms, \
  created_at, updated_at, next_check_at, ordering_key, traceparent, tracestate) \
SELECT b.id, b.producer, b.topic, b.key, b.payload, b.headers, 'PREPARED', b.deliver_after_ms, \
  b.created_at, b.created_at, b.next_check_at, b.ordering_key, b.traceparent, b.tracestate \
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], \
  $7::bigint[], $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::text[]) \
  AS b(id, producer, topic, key, payload, headers, deliver_after_ms, created_at, next_check_at, \
    ordering_key, traceparent, tracestate) \
WHERE EXISTS (SELECT 1 FROM subscriptions s WHERE s.topic = b.topic) \
ORDER BY b.producer, b.key \
ON CONFLICT (producer, key) DO NOTHING \
RETURNING id";

/// Confirms a batch of open (PREPARED or UNRESOLVED) messages by id, each at its own time, and
/// routes them as `ops::decide` does and in its lock order: the messages first (in id order,
/// as every batch locks them), then their topics' subscriptions (share), so each `routed`
/// counts exactly the subscriptions that get a PENDING delivery. Decided or unknown messages,
/// and messages with an ordering key (their lanes need `ops::decide`), are neither locked nor
/// returned.
const CONFIRM_BATCH: &str = "\
WITH msg AS ( \
  SELECT m.id, m.topic, b.at FROM messages m \
  JOIN unnest($1::uuid[], $2::bigint[]) AS b(id, at) ON b.id = m.id \
  WHERE m.state IN ('PREPARED', 'UNRESOLVED') AND m.ordering_key = '' \
  ORDER BY m.id FOR NO KEY UPDATE OF m), \
targets AS ( \
  SELECT s.name, s.topic FROM subscriptions s WHERE s.topic IN (SELECT topic FROM msg) \
  ORDER BY s.name FOR SHARE OF s), \
confirmed AS ( \
  UPDATE messages m SET state = 'CONFIRMED', updated_at = msg.at, decided_at = msg.at, \
    next_check_at = NULL, routed = (SELECT count(*) FROM targets t WHERE t.topic = m.topic) \
  FROM msg WHERE m.id = msg.id AND m.state IN ('PREPARED', 'UNRESOLVED') \
  RETURNING m.id, m.topic, msg.at, msg.at + m.deliver_after_ms AS due), \
routed AS ( \
  INSERT INTO deliveries (subscription, message_id, state, next_attempt_at, updated_at) \
  SELECT t.name, c.id, 'PENDING', c.due, c.at FROM confirmed c JOIN targets t ON t.topic = c.topic \
  RETURNING subscription, message_id) \
SELECT c.id, r.subscription, \
  CASE WHEN r.subscription IS NOT NULL THEN pg_notify($3, r.subscription) END AS notified \
FROM confirmed c LEFT JOIN routed r ON r.message_id = c.id";

/// Publishes a new message, or `None` when the transactional path must decide (the key
/// exists, or the topic has no subscription).
pub async fn publish(
    conn: &mut PgConnection,
    message: &NewMessage,
) -> Written<Option<InsertOutcome>> {
    let (traceparent, tracestate) = trace_columns(message.trace.as_ref());
    let rows = sqlx::query(PUBLISH)
        .bind(message.id.as_uuid())
        .bind(message.producer.as_str())
        .bind(message.topic.as_str())
        .bind(message.key.as_str())
        .bind(&message.payload)
        .bind(headers_to_json(&message.headers))
        .bind(millis(message.deliver_after))
        .bind(message.now.as_millis())
        .bind(message.now.plus(message.deliver_after).as_millis())
        .bind(notify::DUE)
        .bind(traceparent)
        .bind(tracestate)
        .fetch_all(&mut *conn)
        .await?;
    if rows.is_empty() {
        return Ok((None, Effects::none()));
    }
    let outcome = InsertOutcome {
        message_id: message.id,
        state: MessageState::Confirmed,
        created: true,
    };
    let routed = rows
        .iter()
        .map(|row| Ok(Name::from_trusted(row.text("subscription")?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((Some(outcome), Effects::due(routed)))
}

/// Prepares each message of the batch (never publishes); `None` for those the transactional
/// path must answer (an existing or repeated key, or a topic without subscription).
pub async fn prepare_batch(
    conn: &mut PgConnection,
    messages: &[NewMessage],
) -> Result<Vec<Option<InsertOutcome>>, StoreError> {
    let mut columns = PrepareColumns::default();
    for message in messages {
        columns.push(message);
    }
    let inserted: Vec<Uuid> = sqlx::query_scalar(PREPARE_BATCH)
        .bind(columns.ids)
        .bind(columns.producers)
        .bind(columns.topics)
        .bind(columns.keys)
        .bind(columns.payloads)
        .bind(columns.headers)
        .bind(columns.deliver_after)
        .bind(columns.created_at)
        .bind(columns.next_check_at)
        .bind(columns.ordering_keys)
        .bind(columns.traceparents)
        .bind(columns.tracestates)
        .fetch_all(&mut *conn)
        .await?;
    let inserted: HashSet<Uuid> = inserted.into_iter().collect();
    Ok(messages
        .iter()
        .map(|message| {
            inserted
                .contains(&message.id.as_uuid())
                .then_some(InsertOutcome {
                    message_id: message.id,
                    state: MessageState::Prepared,
                    created: true,
                })
        })
        .collect())
}

/// A batch of Prepares as one array per column.
#[derive(Default)]
struct PrepareColumns {
    ids: Vec<Uuid>,
    producers: Vec<String>,
    topics: Vec<String>,
    keys: Vec<String>,
    payloads: Vec<Vec<u8>>,
    headers: Vec<String>,
    deliver_after: Vec<i64>,
    created_at: Vec<i64>,
    next_check_at: Vec<i64>,
    ordering_keys: Vec<String>,
    traceparents: Vec<Option<String>>,
    tracestates: Vec<Option<String>>,
}

impl PrepareColumns {
    fn push(&mut self, message: &NewMessage) {
        self.ids.push(message.id.as_uuid());
        self.producers.push(message.producer.to_string());
        self.topics.push(message.topic.to_string());
        self.keys.push(message.key.to_string());
        self.payloads.push(message.payload.clone());
        self.headers.push(headers_to_json(&message.headers));
        self.deliver_after.push(millis(message.deliver_after));
        self.created_at.push(message.now.as_millis());
        self.next_check_at
            .push(message.now.plus(message.check_after).as_millis());
        self.ordering_keys
            .push(message.ordering_key.as_str().to_owned());
        let (traceparent, tracestate) = trace_columns(message.trace.as_ref());
        self.traceparents.push(traceparent);
        self.tracestates.push(tracestate);
    }
}

/// Confirms each open message of the batch (by id, at its own time) and answers the effects
/// of its routing; `None` for those the transactional path must answer (unknown or already
/// decided).
pub async fn confirm_batch(
    conn: &mut PgConnection,
    confirms: &[(MessageId, Timestamp)],
) -> Result<Vec<Option<Effects>>, StoreError> {
    // The same message twice in one batch: confirmed once, both callers answered.
    let mut unique: HashMap<MessageId, i64> = HashMap::with_capacity(confirms.len());
    for (id, at) in confirms {
        unique.entry(*id).or_insert(at.as_millis());
    }
    let (ids, at): (Vec<Uuid>, Vec<i64>) =
        unique.iter().map(|(id, at)| (id.as_uuid(), *at)).unzip();
    let rows = sqlx::query(CONFIRM_BATCH)
        .bind(ids)
        .bind(at)
        .bind(notify::DUE)
        .fetch_all(&mut *conn)
        .await?;
    let mut routed: HashMap<MessageId, Vec<Name>> = HashMap::new();
    for row in &rows {
        let subscriptions = routed.entry(row.id("id")?).or_default();
        if let Some(name) = row.opt_text("subscription")? {
            subscriptions.push(Name::from_trusted(name));
        }
    }
    let routed: HashMap<MessageId, Effects> = routed
        .into_iter()
        .map(|(id, subscriptions)| {
            if subscriptions.is_empty() {
                tracing::warn!(message_id = %id, "confirmed message has no subscription: unrouted");
            }
            (id, Effects::due(subscriptions))
        })
        .collect();
    Ok(confirms
        .iter()
        .map(|(id, _)| routed.get(id).cloned())
        .collect())
}
