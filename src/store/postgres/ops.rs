//! Write operations, each inside the caller's transaction (READ COMMITTED). Unlike SQLite's
//! single writer, other replicas write at the same time, so every read that a write depends
//! on locks its rows first (`FOR UPDATE`, or `FOR UPDATE SKIP LOCKED` for claims that may
//! take any due row), and every UPDATE still names the state and generation it expects.
//! Locks are taken in key order where one transaction takes several, so two never deadlock.
//! Subscriptions, messages and redrives are here; the consumer side is in `leases`.

use std::time::Duration;

use sqlx::{AssertSqlSafe, PgConnection, Row};
use uuid::Uuid;

use super::reads::PostgresDialect;
use super::rows::{self, Columns, SUBSCRIPTION_COLUMNS, headers_to_json, millis};
use super::{events, lanes};
use crate::domain::{
    CheckerRegistration, Decision, MessageId, MessageRef, MessageState, Name, OrderingKey,
    Subscription, Timestamp, Transition, decide as decide_transition,
};
use crate::store::dead_letters::{self, DeadLetters};
use crate::store::history::{DecidedBy, EventKind, NewEvent};
use crate::store::lanes as store_lanes;
use crate::store::reads::Dialect as _;
use crate::store::{Effects, InsertOutcome, NewMessage, StoreError, Written, rules};

/// How often a write that lost a race to a concurrent delete looks again.
const RACE_ATTEMPTS: usize = 3;

pub async fn create_subscription(
    conn: &mut PgConnection,
    subscription: &Subscription,
) -> Written<(Subscription, bool)> {
    let policy = &subscription.retry_policy;
    for _ in 0..RACE_ATTEMPTS {
        // Insert first: of two replicas creating the same name, exactly one inserts.
        let inserted = sqlx::query(
            "INSERT INTO subscriptions (name, topic, ack_deadline_ms, max_attempts, \
             initial_backoff_ms, max_backoff_ms, multiplier, push_endpoint, created_at, ordered, \
             dead_head) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(subscription.name.as_str())
        .bind(subscription.topic.as_str())
        .bind(millis(subscription.ack_deadline))
        .bind(i64::from(policy.max_attempts))
        .bind(millis(policy.initial_backoff))
        .bind(millis(policy.max_backoff))
        .bind(policy.multiplier)
        .bind(subscription.push_endpoint.as_deref())
        .bind(subscription.created_at.as_millis())
        .bind(subscription.ordered)
        .bind(subscription.dead_head.as_str())
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok((
                (subscription.clone(), true),
                Effects::subscriptions_changed(),
            ));
        }
        match find_subscription(conn, &subscription.name, false).await? {
            Some(existing) if existing.same_config(subscription) => {
                return Ok(((existing, false), Effects::none()));
            }
            Some(_) => return Err(rules::subscription_conflict(&subscription.name)),
            None => continue, // deleted between the two statements: try again
        }
    }
    Err(StoreError::internal(
        "subscription kept vanishing while being created",
    ))
}

pub async fn update_subscription(
    conn: &mut PgConnection,
    subscription: &Subscription,
    now: Timestamp,
) -> Written<Subscription> {
    let existing = find_subscription(conn, &subscription.name, true)
        .await?
        .ok_or_else(|| rules::subscription_not_found(&subscription.name))?;
    rules::check_update(&existing, subscription)?;
    let policy = &subscription.retry_policy;
    sqlx::query(
        "UPDATE subscriptions SET ack_deadline_ms = $1, max_attempts = $2, \
         initial_backoff_ms = $3, max_backoff_ms = $4, multiplier = $5, push_endpoint = $6, \
         dead_head = $8 WHERE name = $7",
    )
    .bind(millis(subscription.ack_deadline))
    .bind(i64::from(policy.max_attempts))
    .bind(millis(policy.initial_backoff))
    .bind(millis(policy.max_backoff))
    .bind(policy.multiplier)
    .bind(subscription.push_endpoint.as_deref())
    .bind(subscription.name.as_str())
    .bind(subscription.dead_head.as_str())
    .execute(&mut *conn)
    .await?;
    let updated = Subscription {
        created_at: existing.created_at,
        ..subscription.clone()
    };
    // A changed policy may make deliveries due sooner, and lanes a dead head no longer
    // blocks go on.
    let mut effects = Effects::due([updated.name.clone()]).and(Effects::subscriptions_changed());
    if existing.dead_head != updated.dead_head {
        let held: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT ordering_key FROM deliveries WHERE subscription = $1 \
             AND ordering_key IS NOT NULL AND state IN ('PENDING', 'LEASED', 'DEAD') \
             AND state = 'DEAD'",
        )
        .bind(updated.name.as_str())
        .fetch_all(&mut *conn)
        .await?;
        let held = held
            .iter()
            .map(|key| (updated.name.as_str(), Some(key.as_str())));
        let lanes = store_lanes::distinct_lanes(held);
        effects = effects.and(lanes::advance(conn, &lanes, now).await?);
    }
    Ok((updated, effects))
}

pub async fn delete_subscription(conn: &mut PgConnection, name: &Name) -> Written<()> {
    // Lock what the delete will touch in the order acks lock it (deliveries, then their
    // messages, each in key order), so a concurrent ack waits instead of deadlocking: the
    // deleted deliveries may finish their messages (`courier_mark_final_if_done`).
    sqlx::query(
        "SELECT count(*) FROM (SELECT 1 FROM deliveries WHERE subscription = $1 \
         ORDER BY message_id FOR UPDATE) AS locked",
    )
    .bind(name.as_str())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "SELECT count(*) FROM (SELECT 1 FROM messages WHERE id IN \
           (SELECT message_id FROM deliveries WHERE subscription = $1 AND state <> 'ACKED') \
         ORDER BY id FOR NO KEY UPDATE) AS locked",
    )
    .bind(name.as_str())
    .execute(&mut *conn)
    .await?;
    // The subscription's row lock waits for any confirm routing to it right now; the
    // foreign key then deletes every delivery, including the ones that confirm made.
    let deleted = sqlx::query("DELETE FROM subscriptions WHERE name = $1")
        .bind(name.as_str())
        .execute(&mut *conn)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(rules::subscription_not_found(name));
    }
    Ok(((), Effects::subscriptions_changed()))
}

pub(super) async fn find_subscription(
    conn: &mut PgConnection,
    name: &Name,
    lock: bool,
) -> Result<Option<Subscription>, StoreError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE name = $1{lock}");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(rows::subscription).transpose()
}

/// The retained message with the producer key of `message`, as an insert outcome if its
/// content is the same.
async fn existing_message(
    conn: &mut PgConnection,
    message: &NewMessage,
    headers: &str,
) -> Result<Option<InsertOutcome>, StoreError> {
    let existing = sqlx::query(
        "SELECT id, topic, ordering_key, payload, headers, state FROM messages \
         WHERE producer = $1 AND key = $2",
    )
    .bind(message.producer.as_str())
    .bind(message.key.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = existing else {
        return Ok(None);
    };
    let id = row.id("id")?;
    let same = row.text("topic")? == message.topic.as_str()
        && row.text("ordering_key")? == message.ordering_key.as_str()
        && row.try_get::<Vec<u8>, _>("payload")? == message.payload
        && row.text("headers")? == headers;
    if !same {
        return Err(rules::key_conflict(&message.producer, &message.key, id));
    }
    Ok(Some(InsertOutcome {
        message_id: id,
        state: rows::message_state(&row.text("state")?)?,
        created: false,
    }))
}

pub async fn insert_message(
    conn: &mut PgConnection,
    message: &NewMessage,
) -> Written<InsertOutcome> {
    let headers = headers_to_json(&message.headers);
    if let Some(outcome) = existing_message(conn, message, &headers).await? {
        return Ok((outcome, Effects::none()));
    }
    let has_subscription: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM subscriptions WHERE topic = $1)")
            .bind(message.topic.as_str())
            .fetch_one(&mut *conn)
            .await?;
    if !has_subscription {
        return Err(rules::no_subscription(&message.topic));
    }
    let now = message.now.as_millis();
    let first_check_at = message.first_check_at();
    let (state, decided_at) = match first_check_at {
        Some(_) => (MessageState::Prepared, None),
        None => (MessageState::Confirmed, Some(now)),
    };
    let next_check_at = first_check_at.map(Timestamp::as_millis);
    let (traceparent, tracestate) = rows::trace_columns(message.trace.as_ref());
    // Of two replicas inserting the same producer key at once, one inserts; the other waits
    // for it to commit, inserts nothing, and answers with the winner's message.
    let inserted = sqlx::query(
        "INSERT INTO messages (id, producer, topic, key, payload, headers, state, \
         deliver_after_ms, created_at, updated_at, decided_at, next_check_at, ordering_key, \
         traceparent, tracestate) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (producer, key) DO NOTHING",
    )
    .bind(message.id.as_uuid())
    .bind(message.producer.as_str())
    .bind(message.topic.as_str())
    .bind(message.key.as_str())
    .bind(&message.payload)
    .bind(&headers)
    .bind(state.as_str())
    .bind(millis(message.deliver_after))
    .bind(now)
    .bind(now)
    .bind(decided_at)
    .bind(next_check_at)
    .bind(message.ordering_key.as_str())
    .bind(traceparent)
    .bind(tracestate)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        let outcome = existing_message(conn, message, &headers)
            .await?
            .ok_or_else(|| {
                // Inserted and deleted again in between: only retention deletes messages.
                StoreError::internal("a message with this producer key vanished while inserting")
            })?;
        return Ok((outcome, Effects::none()));
    }
    let effects = match first_check_at {
        Some(check_at) => Effects::check_due(check_at),
        None => {
            let due = message.now.plus(message.deliver_after);
            let message_lane = (&message.topic, &message.ordering_key);
            route(conn, message.id, message_lane, due, message.now).await?
        }
    };
    let outcome = InsertOutcome {
        message_id: message.id,
        state,
        created: true,
    };
    Ok((outcome, effects))
}

/// Creates one PENDING delivery per current subscription of the topic, due at `due` (or
/// waiting in its lane, for a message with an ordering key in an ordered subscription), and
/// records how many there were (0: unrouted). The subscriptions are share-locked, so one
/// being deleted right now is either gone already or deleted after this commits, with its
/// deliveries.
async fn route(
    conn: &mut PgConnection,
    id: MessageId,
    (topic, ordering_key): (&Name, &OrderingKey),
    due: Timestamp,
    now: Timestamp,
) -> Result<Effects, StoreError> {
    let subscriptions: Vec<String> = if ordering_key.lane().is_some() {
        let targets: Vec<(String, bool)> = sqlx::query_as(
            "SELECT name, ordered FROM subscriptions WHERE topic = $1 ORDER BY name FOR SHARE",
        )
        .bind(topic.as_str())
        .fetch_all(&mut *conn)
        .await?;
        let ordered: Vec<String> = targets
            .into_iter()
            .filter_map(|(name, ordered)| ordered.then_some(name))
            .collect();
        let message_lane = (topic, ordering_key);
        lanes::route_keyed(conn, id, message_lane, &ordered, due, now).await?
    } else {
        sqlx::query_scalar(
            "WITH targets AS (SELECT name FROM subscriptions WHERE topic = $1 ORDER BY name \
             FOR SHARE) \
             INSERT INTO deliveries (subscription, message_id, state, next_attempt_at, updated_at) \
             SELECT name, $2, 'PENDING', $3, $4 FROM targets RETURNING subscription",
        )
        .bind(topic.as_str())
        .bind(id.as_uuid())
        .bind(due.as_millis())
        .bind(now.as_millis())
        .fetch_all(&mut *conn)
        .await?
    };
    sqlx::query("UPDATE messages SET routed = $1 WHERE id = $2")
        .bind(subscriptions.len() as i64)
        .bind(id.as_uuid())
        .execute(&mut *conn)
        .await?;
    if subscriptions.is_empty() {
        tracing::warn!(message_id = %id, %topic, "confirmed message has no subscription: unrouted");
    }
    Ok(Effects::due(
        subscriptions.into_iter().map(Name::from_trusted),
    ))
}

/// What a decision needs to know of a message.
struct Located {
    id: MessageId,
    topic: Name,
    ordering_key: OrderingKey,
    state: MessageState,
    deliver_after: Duration,
}

/// Finds and locks a message by id or producer key.
async fn locate(conn: &mut PgConnection, message: &MessageRef) -> Result<Located, StoreError> {
    let query = match message {
        MessageRef::Id(id) => sqlx::query(
            "SELECT id, topic, ordering_key, state, deliver_after_ms FROM messages WHERE id = $1 \
             FOR NO KEY UPDATE",
        )
        .bind(id.as_uuid()),
        MessageRef::ProducerKey { producer, key } => sqlx::query(
            "SELECT id, topic, ordering_key, state, deliver_after_ms FROM messages \
             WHERE producer = $1 AND key = $2 FOR NO KEY UPDATE",
        )
        .bind(producer.as_str())
        .bind(key.as_str()),
    };
    let row = query
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(message.to_string()))?;
    Ok(Located {
        id: row.id("id")?,
        topic: Name::from_trusted(row.text("topic")?),
        ordering_key: OrderingKey::from_trusted(row.text("ordering_key")?),
        state: rows::message_state(&row.text("state")?)?,
        deliver_after: Duration::from_millis(
            u64::try_from(row.int("deliver_after_ms")?).unwrap_or(0),
        ),
    })
}

pub async fn decide(
    conn: &mut PgConnection,
    message: &MessageRef,
    decision: Decision,
    now: Timestamp,
) -> Written<MessageState> {
    let ((state, _), effects) =
        decide_as(conn, message, decision, DecidedBy::Producer, now).await?;
    Ok((state, effects))
}

/// An operator's decision: like the producer's, and recorded in the message's events with
/// `operator`'s name when it changed the state.
pub async fn resolve(
    conn: &mut PgConnection,
    message: &MessageRef,
    decision: Decision,
    operator: &str,
    now: Timestamp,
) -> Written<MessageState> {
    let ((state, moved), effects) =
        decide_as(conn, message, decision, DecidedBy::Operator, now).await?;
    if let Some(id) = moved {
        events::record(conn, &NewEvent::resolved(id, decision, operator, now)).await?;
    }
    Ok((state, effects))
}

/// Applies `decision`, made `by`, and answers the resulting state and, when this call moved
/// the message, its id.
pub(super) async fn decide_as(
    conn: &mut PgConnection,
    message: &MessageRef,
    decision: Decision,
    by: DecidedBy,
    now: Timestamp,
) -> Written<(MessageState, Option<MessageId>)> {
    // The row lock makes a racing Confirm, Cancel, Resolve or check result wait and then see
    // this decision: exactly one of them moves the message.
    let Located {
        id,
        topic,
        ordering_key,
        state: current,
        deliver_after,
    } = locate(conn, message).await?;
    let target = match decide_transition(current, decision) {
        Transition::To(target) => target,
        Transition::AlreadyThere(state) => return Ok(((state, None), Effects::none())),
        Transition::Contradicts(current) => return Err(StoreError::MessageConflict { current }),
    };
    let changed = sqlx::query(
        "UPDATE messages SET state = $1, updated_at = $2, decided_at = $2, next_check_at = NULL, \
         decided_by = $5 WHERE id = $3 AND state = $4",
    )
    .bind(target.as_str())
    .bind(now.as_millis())
    .bind(id.as_uuid())
    .bind(current.as_str())
    .bind(by.stored())
    .execute(&mut *conn)
    .await?;
    if changed.rows_affected() == 0 {
        return Err(StoreError::internal("message changed under its row lock"));
    }
    let effects = if target == MessageState::Confirmed {
        let due = now.plus(deliver_after);
        route(conn, id, (&topic, &ordering_key), due, now).await?
    } else {
        Effects::none()
    };
    Ok(((target, Some(id)), effects))
}

pub async fn register_checker(
    conn: &mut PgConnection,
    checker: &CheckerRegistration,
    now: Timestamp,
) -> Written<()> {
    sqlx::query(
        "INSERT INTO checkers (producer, endpoint, timeout_ms, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (producer) DO UPDATE SET endpoint = excluded.endpoint, \
         timeout_ms = excluded.timeout_ms, updated_at = excluded.updated_at",
    )
    .bind(checker.producer.as_str())
    .bind(&checker.endpoint)
    .bind(millis(checker.timeout))
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await?;
    Ok(((), Effects::none()))
}

/// The dead letters `chosen` names, oldest message first (message id and lane key), locked.
async fn chosen_dead_letters(
    conn: &mut PgConnection,
    chosen: &DeadLetters,
) -> Result<Vec<(Uuid, Option<String>)>, StoreError> {
    if find_subscription(conn, &chosen.subscription, false)
        .await?
        .is_none()
    {
        return Err(rules::subscription_not_found(&chosen.subscription));
    }
    let sql = format!("{} FOR UPDATE OF d", PostgresDialect::dead_letters_sql());
    let found = PostgresDialect::bind_dead_letters(sqlx::query(AssertSqlSafe(sql)), chosen)?
        .fetch_all(&mut *conn)
        .await?;
    found
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Makes the chosen dead letters PENDING with attempts reset, due at their paced times (or
/// waiting in their lane), and records it in their messages' events.
pub async fn redrive(
    conn: &mut PgConnection,
    chosen: &DeadLetters,
    rate: f64,
    now: Timestamp,
) -> Written<u64> {
    let found = chosen_dead_letters(conn, chosen).await?;
    let ids: Vec<Uuid> = found.iter().map(|(id, _)| *id).collect();
    let due: Vec<i64> = dead_letters::paced(now, found.len(), rate)
        .into_iter()
        .map(Timestamp::as_millis)
        .collect();
    let ended: Vec<(Uuid, Option<String>)> = sqlx::query_as(
        "UPDATE deliveries d SET state = 'PENDING', attempts = 0, \
         next_attempt_at = CASE WHEN d.ordering_key IS NULL THEN u.due END, \
         lease_expires_at = NULL, updated_at = $1 \
         FROM unnest($3::uuid[], $4::bigint[]) AS u(id, due) \
         WHERE d.subscription = $2 AND d.message_id = u.id AND d.state = 'DEAD' \
         RETURNING d.message_id, d.ordering_key",
    )
    .bind(now.as_millis())
    .bind(chosen.subscription.as_str())
    .bind(ids)
    .bind(due)
    .fetch_all(&mut *conn)
    .await?;
    let (redriven, effects) =
        dead_letters_ended(conn, chosen, &ended, EventKind::Redriven, now).await?;
    Ok((
        redriven,
        effects.and(Effects::redriven(&chosen.subscription, redriven)),
    ))
}

/// Ends the chosen dead letters for good (DISCARDED) and records it in their messages' events.
pub async fn discard(
    conn: &mut PgConnection,
    chosen: &DeadLetters,
    now: Timestamp,
) -> Written<u64> {
    let found = chosen_dead_letters(conn, chosen).await?;
    let ids: Vec<Uuid> = found.iter().map(|(id, _)| *id).collect();
    let ended: Vec<(Uuid, Option<String>)> = sqlx::query_as(
        "UPDATE deliveries SET state = 'DISCARDED', next_attempt_at = NULL, \
         lease_expires_at = NULL, updated_at = $1 \
         WHERE subscription = $2 AND message_id = ANY($3) AND state = 'DEAD' \
         RETURNING message_id, ordering_key",
    )
    .bind(now.as_millis())
    .bind(chosen.subscription.as_str())
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    dead_letters_ended(conn, chosen, &ended, EventKind::Discarded, now).await
}

/// After the `ended` dead letters left DEAD: records `kind` in their messages' events and lets
/// the lanes they were in go on. Answers how many ended.
async fn dead_letters_ended(
    conn: &mut PgConnection,
    chosen: &DeadLetters,
    ended: &[(Uuid, Option<String>)],
    kind: EventKind,
    now: Timestamp,
) -> Written<u64> {
    let subscription = &chosen.subscription;
    let recorded: Vec<NewEvent> = ended
        .iter()
        .map(|(id, _)| {
            NewEvent::dead_letter_ended(MessageId::from_uuid(*id), subscription, kind, now)
        })
        .collect();
    events::record_all(conn, &recorded).await?;
    let lanes = store_lanes::distinct_lanes(
        ended
            .iter()
            .map(|(_, key)| (subscription.as_str(), key.as_deref())),
    );
    let effects = lanes::advance(conn, &lanes, now).await?;
    Ok((ended.len() as u64, effects))
}
