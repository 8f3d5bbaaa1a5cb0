//! The producers' hot writes as one autocommitted statement per batch of concurrent calls
//! (`batcher`): new messages (Prepare and Publish share one statement) and Confirm by id. (Ack
//! has its batch beside its transaction, in `leases`.) The transactional versions in `ops`
//! take five to seven round trips (BEGIN, a read, a check, the write, the routing, the
//! notification, COMMIT), and at a few thousand messages a second those round trips, not the
//! disk, are what PostgreSQL and Courier spend their CPU on.
//!
//! Each statement does the common case only: a new key with a subscription, or a Confirm of a
//! message still open. Anything else (a repeated key, a missing subscription, a decided or
//! unknown message, a Publish or Confirm with an ordering key) changes nothing and answers
//! `None`, and the caller runs the transactional version, which tells those cases apart with
//! the same guarantees as before. Data-modifying CTEs all run on one snapshot and commit
//! together. Other replicas hear of the new due deliveries after the commit, from
//! `announce::DueAnnouncer`, not from the statement (see there why).
//!
//! Publish and Confirm route alike: the statements share their routing ([`route`]).

use std::collections::HashMap;
use std::sync::LazyLock;

use sqlx::PgConnection;
use uuid::Uuid;

use super::rows::{Columns, headers_to_json, millis, trace_columns};
use crate::domain::{MessageId, MessageState, Name, Timestamp};
use crate::store::{Effects, InsertOutcome, NewMessage, StoreError};

/// The routing both Publish and Confirm end with. `targets(name, topic)` are the
/// subscriptions of the batch's topics, share-locked in name order (as `ops::route` locks
/// them, so each `routed` counts exactly the subscriptions that get a delivery);
/// `routing(id, topic, at, due)` the messages to route. Each gets one PENDING delivery per
/// subscription of its topic ([`ROUTED`]). The answer is a row per message and subscription
/// routed to (a message routed nowhere: one row, subscription NULL).
fn route(targets_of: &str) -> String {
    format!(
        "targets AS ( \
           SELECT s.name, s.topic FROM subscriptions s WHERE s.topic IN ({targets_of}) \
           ORDER BY s.name FOR SHARE OF s)"
    )
}

const ROUTED: &str = "\
routed AS ( \
  INSERT INTO deliveries (subscription, message_id, state, next_attempt_at, updated_at) \
  SELECT t.name, c.id, 'PENDING', c.due, c.at FROM routing c JOIN targets t ON t.topic = c.topic \
  RETURNING subscription, message_id)";

/// Inserts a batch of new messages (arrays, one element per message): a Prepare as
/// PREPARED; a Publish as CONFIRMED, routed to every subscription of its topic. A message
/// whose key exists (or repeats within the batch) or whose topic has no subscription is not
/// inserted. Rows are inserted in key order, so two batches never wait on each other's keys
/// in a cycle.
static INSERT_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH b AS ( \
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[], \
             $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::text[], $11::text[], \
             $12::text[], $13::bool[]) \
           AS b(id, producer, topic, key, payload, headers, deliver_after_ms, created_at, \
             next_check_at, ordering_key, traceparent, tracestate, publish)), \
         {targets}, \
         inserted AS ( \
           INSERT INTO messages (id, producer, topic, key, payload, headers, state, \
             deliver_after_ms, created_at, updated_at, decided_at, next_check_at, routed, \
             ordering_key, traceparent, tracestate) \
           SELECT b.id, b.producer, b.topic, b.key, b.payload, b.headers, \
             CASE WHEN b.publish THEN 'CONFIRMED' ELSE 'PREPARED' END, b.deliver_after_ms, \
             b.created_at, b.created_at, CASE WHEN b.publish THEN b.created_at END, \
             b.next_check_at, \
             CASE WHEN b.publish THEN (SELECT count(*) FROM targets t WHERE t.topic = b.topic) END, \
             b.ordering_key, b.traceparent, b.tracestate \
           FROM b \
           WHERE CASE WHEN b.publish THEN EXISTS (SELECT 1 FROM targets t WHERE t.topic = b.topic) \
             ELSE EXISTS (SELECT 1 FROM subscriptions s WHERE s.topic = b.topic) END \
           ORDER BY b.producer, b.key \
           ON CONFLICT (producer, key) DO NOTHING \
           RETURNING id, topic, state, created_at AS at, created_at + deliver_after_ms AS due), \
         routing AS (SELECT * FROM inserted WHERE state = 'CONFIRMED'), \
         {ROUTED} \
         SELECT i.id, r.subscription FROM inserted i LEFT JOIN routed r ON r.message_id = i.id",
        targets = route("SELECT topic FROM b WHERE publish"),
    )
});

/// Confirms a batch of open (PREPARED or UNRESOLVED) messages by id (`$1`), each at its own
/// time (`$2`), and routes them as `ops::decide` does and in its lock order: the messages
/// first (in id order, as every batch locks them), then their topics' subscriptions. Decided
/// or unknown messages, and messages with an ordering key (their lanes need `ops::decide`),
/// are neither locked nor returned.
static CONFIRM_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH msg AS ( \
           SELECT m.id, m.topic, b.at FROM messages m \
           JOIN unnest($1::uuid[], $2::bigint[]) AS b(id, at) ON b.id = m.id \
           WHERE m.state IN ('PREPARED', 'UNRESOLVED') AND m.ordering_key = '' \
           ORDER BY m.id FOR NO KEY UPDATE OF m), \
         {targets}, \
         routing AS ( \
           UPDATE messages m SET state = 'CONFIRMED', updated_at = msg.at, decided_at = msg.at, \
             next_check_at = NULL, routed = (SELECT count(*) FROM targets t WHERE t.topic = m.topic) \
           FROM msg WHERE m.id = msg.id AND m.state IN ('PREPARED', 'UNRESOLVED') \
           RETURNING m.id, m.topic, msg.at, msg.at + m.deliver_after_ms AS due), \
         {ROUTED} \
         SELECT c.id, r.subscription FROM routing c LEFT JOIN routed r ON r.message_id = c.id",
        targets = route("SELECT topic FROM msg"),
    )
});

/// Inserts each message of the batch (Prepares and Publishes alike) and answers what the
/// caller applies after the commit; `None` for those the transactional path must answer (an
/// existing or repeated key, or a topic without subscription). Publishes with an ordering key
/// do not belong here: their lanes need the transaction.
pub async fn insert_batch(
    conn: &mut PgConnection,
    messages: &[NewMessage],
) -> Result<Vec<Option<(InsertOutcome, Effects)>>, StoreError> {
    let mut columns = MessageColumns::default();
    for message in messages {
        columns.push(message);
    }
    let rows = sqlx::query(INSERT_BATCH.as_str())
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
        .bind(columns.publish)
        .fetch_all(&mut *conn)
        .await?;
    let mut routed = routed_by_message(&rows)?;
    Ok(messages
        .iter()
        .map(|message| {
            let subscriptions = routed.remove(&message.id)?;
            let (state, effects) = match message.first_check_at() {
                Some(check_at) => (MessageState::Prepared, Effects::check_due(check_at)),
                None => (MessageState::Confirmed, Effects::due(subscriptions)),
            };
            let outcome = InsertOutcome {
                message_id: message.id,
                state,
                created: true,
            };
            Some((outcome, effects))
        })
        .collect())
}

/// A batch of new messages as one array per column.
#[derive(Default)]
struct MessageColumns {
    ids: Vec<Uuid>,
    producers: Vec<String>,
    topics: Vec<String>,
    keys: Vec<String>,
    payloads: Vec<Vec<u8>>,
    headers: Vec<String>,
    deliver_after: Vec<i64>,
    created_at: Vec<i64>,
    next_check_at: Vec<Option<i64>>,
    ordering_keys: Vec<String>,
    traceparents: Vec<Option<String>>,
    tracestates: Vec<Option<String>>,
    publish: Vec<bool>,
}

impl MessageColumns {
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
            .push(message.first_check_at().map(Timestamp::as_millis));
        self.ordering_keys
            .push(message.ordering_key.as_str().to_owned());
        let (traceparent, tracestate) = trace_columns(message.trace.as_ref());
        self.traceparents.push(traceparent);
        self.tracestates.push(tracestate);
        self.publish.push(message.publish);
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
    let rows = sqlx::query(CONFIRM_BATCH.as_str())
        .bind(ids)
        .bind(at)
        .fetch_all(&mut *conn)
        .await?;
    let routed: HashMap<MessageId, Effects> = routed_by_message(&rows)?
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

/// The messages a statement wrote (`id`), each with the subscriptions it was routed to
/// (`subscription`, NULL for none).
fn routed_by_message(
    rows: &[sqlx::postgres::PgRow],
) -> Result<HashMap<MessageId, Vec<Name>>, StoreError> {
    let mut routed: HashMap<MessageId, Vec<Name>> = HashMap::new();
    for row in rows {
        let subscriptions = routed.entry(row.id("id")?).or_default();
        if let Some(name) = row.opt_text("subscription")? {
            subscriptions.push(Name::from_trusted(name));
        }
    }
    Ok(routed)
}
