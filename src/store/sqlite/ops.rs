//! Write operations. Each runs on the writer's connection inside the group transaction, so it
//! reads the current state and writes its change without any other writer in between; the
//! UPDATEs still name the state (and generation) they expect, as every backend must.
//!
//! They run synchronously on the writer's own thread (rusqlite, cached prepared statements):
//! a statement costs microseconds there, where a round trip to an async driver's connection
//! thread cost more than the statement itself.

use std::cell::OnceCell;
use std::time::Duration;

use rusqlite::{Connection, Params, Row, params};

use super::rows::{self, SUBSCRIPTION_COLUMNS, headers_to_json, millis};
use super::{events, lanes};
use crate::domain::{
    CheckerRegistration, Decision, MessageId, MessageRef, MessageState, Name, OrderingKey,
    Subscription, Timestamp, Transition, decide as decide_transition,
};
use crate::store::dead_letters::{self, DeadLetters};
use crate::store::history::{DecidedBy, EventKind, NewEvent};
use crate::store::lanes as store_lanes;
use crate::store::reads::Dialect;
use crate::store::sql::for_sqlite;
use crate::store::{Effects, InsertOutcome, NewMessage, StoreError, Written, rules};

/// Runs a cached statement; returns how many rows it changed.
pub(super) fn execute(
    conn: &Connection,
    sql: &str,
    params: impl Params,
) -> Result<u64, StoreError> {
    Ok(conn.prepare_cached(sql)?.execute(params)? as u64)
}

/// The first row of a cached query, decoded by `decode`.
pub(super) fn query_one<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    decode: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut found = statement.query(params)?;
    found.next()?.map(decode).transpose()
}

/// Every row of a cached query, decoded by `decode`; the statement's column names are read
/// once, at the first lookup by name ([`rows::NamedRow`]).
pub(super) fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    mut decode: impl FnMut(&rows::NamedRow<'_, '_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let names = OnceCell::new();
    let mut found = statement.query(params)?;
    let mut decoded = Vec::new();
    while let Some(row) = found.next()? {
        decoded.push(decode(&rows::NamedRow::new(row, &names))?);
    }
    Ok(decoded)
}

/// When a CONFIRMED message becomes final, the one rule: none of its deliveries is left live
/// (each is ACKED or DISCARDED). Marks message `id` final at `now` if that holds now and it
/// was not final yet; every write that ends or removes a live delivery runs it after. (A
/// CANCELLED message is final at its cancel: `mark_final`.) PostgreSQL keeps the same rule in
/// its trigger `courier_final_on_done_rows`.
///
/// The message itself is not read: only a confirm or a publish routes, so a message that had
/// a delivery to end is CONFIRMED, and stays so.
pub(super) fn mark_final_if_done(
    conn: &Connection,
    id: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    // OR IGNORE keeps the first moment, and means SQLite never aborts this INSERT … SELECT
    // halfway, so it needs no statement journal.
    execute(
        conn,
        "INSERT OR IGNORE INTO final_messages (message_id, final_at) SELECT ?1, ?2 \
         WHERE NOT EXISTS (SELECT 1 FROM deliveries d \
                           WHERE d.message_id = ?1 AND d.state NOT IN ('ACKED', 'DISCARDED'))",
        params![id, now.as_millis()],
    )?;
    Ok(())
}

/// Marks message `id` final at `now` (a cancel), unless it already was.
fn mark_final(conn: &Connection, id: &str, now: Timestamp) -> Result<(), StoreError> {
    execute(
        conn,
        "INSERT OR IGNORE INTO final_messages (message_id, final_at) VALUES (?, ?)",
        params![id, now.as_millis()],
    )?;
    Ok(())
}

pub fn create_subscription(
    conn: &Connection,
    subscription: Subscription,
) -> Written<(Subscription, bool)> {
    if let Some(existing) = find_subscription(conn, &subscription.name)? {
        return if existing.same_config(&subscription) {
            Ok(((existing, false), Effects::none()))
        } else {
            Err(rules::subscription_conflict(&subscription.name))
        };
    }
    let policy = &subscription.retry_policy;
    execute(
        conn,
        "INSERT INTO subscriptions (name, topic, ack_deadline_ms, max_attempts, \
         initial_backoff_ms, max_backoff_ms, multiplier, push_endpoint, created_at, ordered, \
         dead_head) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            subscription.name.as_str(),
            subscription.topic.as_str(),
            millis(subscription.ack_deadline),
            i64::from(policy.max_attempts),
            millis(policy.initial_backoff),
            millis(policy.max_backoff),
            policy.multiplier,
            subscription.push_endpoint.as_deref(),
            subscription.created_at.as_millis(),
            subscription.ordered,
            subscription.dead_head.as_str(),
        ],
    )?;
    Ok(((subscription, true), Effects::subscriptions_changed()))
}

pub fn update_subscription(
    conn: &Connection,
    subscription: Subscription,
    now: Timestamp,
) -> Written<Subscription> {
    let existing = find_subscription(conn, &subscription.name)?
        .ok_or_else(|| rules::subscription_not_found(&subscription.name))?;
    rules::check_update(&existing, &subscription)?;
    let policy = &subscription.retry_policy;
    execute(
        conn,
        "UPDATE subscriptions SET ack_deadline_ms = ?, max_attempts = ?, initial_backoff_ms = ?, \
         max_backoff_ms = ?, multiplier = ?, push_endpoint = ?, dead_head = ? WHERE name = ?",
        params![
            millis(subscription.ack_deadline),
            i64::from(policy.max_attempts),
            millis(policy.initial_backoff),
            millis(policy.max_backoff),
            policy.multiplier,
            subscription.push_endpoint.as_deref(),
            subscription.dead_head.as_str(),
            subscription.name.as_str(),
        ],
    )?;
    let updated = Subscription {
        created_at: existing.created_at,
        ..subscription
    };
    // A changed policy may make deliveries due sooner, and lanes a dead head no longer
    // blocks go on.
    let mut effects = Effects::due([updated.name.clone()]).and(Effects::subscriptions_changed());
    if existing.dead_head != updated.dead_head {
        let held = query_all(
            conn,
            "SELECT DISTINCT ordering_key FROM deliveries WHERE subscription = ? \
             AND ordering_key IS NOT NULL AND state IN ('PENDING', 'LEASED', 'DEAD') \
             AND state = 'DEAD'",
            [updated.name.as_str()],
            |row| Ok(row.get::<_, String>(0)?),
        )?;
        let held = held
            .iter()
            .map(|key| (updated.name.as_str(), Some(key.as_str())));
        effects = effects.and(lanes::advance(
            conn,
            &store_lanes::distinct_lanes(held),
            now,
        )?);
    }
    Ok((updated, effects))
}

pub fn delete_subscription(conn: &Connection, name: &Name) -> Written<()> {
    // Messages whose live deliveries go with the subscription may become final by it.
    let live: Vec<String> = query_all(
        conn,
        "SELECT message_id FROM deliveries WHERE subscription = ? \
         AND state NOT IN ('ACKED', 'DISCARDED')",
        [name.as_str()],
        |row| Ok(row.get(0)?),
    )?;
    execute(
        conn,
        "DELETE FROM deliveries WHERE subscription = ?",
        [name.as_str()],
    )?;
    let deleted = execute(
        conn,
        "DELETE FROM subscriptions WHERE name = ?",
        [name.as_str()],
    )?;
    if deleted == 0 {
        return Err(rules::subscription_not_found(name));
    }
    let now = Timestamp::now();
    for id in &live {
        mark_final_if_done(conn, id, now)?;
    }
    Ok(((), Effects::subscriptions_changed()))
}

pub(super) fn find_subscription(
    conn: &Connection,
    name: &Name,
) -> Result<Option<Subscription>, StoreError> {
    let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE name = ?");
    query_one(conn, &sql, [name.as_str()], |row| rows::subscription(row))
}

/// The names of a topic's subscriptions, in order: read from one index, no sort
/// (migration 0013).
pub(super) const SUBSCRIPTIONS_OF_TOPIC: &str =
    "SELECT name FROM subscriptions WHERE topic = ? ORDER BY name";

fn subscriptions_of_topic(conn: &Connection, topic: &str) -> Result<Vec<Name>, StoreError> {
    query_all(conn, SUBSCRIPTIONS_OF_TOPIC, [topic], |row| {
        Ok(Name::from_trusted(row.get(0)?))
    })
}

pub fn insert_message(conn: &Connection, message: &NewMessage) -> Written<InsertOutcome> {
    let headers = headers_to_json(&message.headers);
    let existing = query_one(
        conn,
        "SELECT m.id, m.topic, m.ordering_key, p.payload, m.headers, m.state FROM messages m \
         JOIN message_payloads p ON p.id = m.payload_id WHERE m.producer = ? AND m.key = ?",
        [message.producer.as_str(), message.key.as_str()],
        |row| {
            let id: String = row.get("id")?;
            let same = row.get_ref("topic")?.as_str()? == message.topic.as_str()
                && row.get_ref("ordering_key")?.as_str()? == message.ordering_key.as_str()
                && row.get_ref("payload")?.as_blob()? == message.payload.as_slice()
                && row.get_ref("headers")?.as_str()? == headers;
            let state: String = row.get("state")?;
            Ok((id, same, state))
        },
    )?;
    if let Some((id, same, state)) = existing {
        if !same {
            return Err(rules::key_conflict(
                &message.producer,
                &message.key,
                rows::message_id(&id)?,
            ));
        }
        let outcome = InsertOutcome {
            message_id: rows::message_id(&id)?,
            state: rows::message_state(&state)?,
            created: false,
        };
        return Ok((outcome, Effects::none()));
    }

    let subscriptions = subscriptions_of_topic(conn, message.topic.as_str())?;
    if subscriptions.is_empty() {
        return Err(rules::no_subscription(&message.topic));
    }
    let now = message.now.as_millis();
    let first_check_at = message.first_check_at();
    let (state, decided_at) = match first_check_at {
        Some(_) => (MessageState::Prepared, None),
        None => (MessageState::Confirmed, Some(now)),
    };
    let next_check_at = first_check_at.map(Timestamp::as_millis);
    // A Publish is routed in the same transaction; `routed` is written with the row rather
    // than by a second UPDATE.
    let routed = message.publish.then_some(subscriptions.len() as i64);
    let (traceparent, tracestate) = rows::trace_columns(message.trace.as_ref());
    // The payload in a table of its own, so no later write of the message rewrites it
    // (migration 0011); the message names it by its row id.
    execute(
        conn,
        "INSERT INTO message_payloads (payload) VALUES (?)",
        [&message.payload],
    )?;
    let payload_id = conn.last_insert_rowid();
    execute(
        conn,
        "INSERT INTO messages (id, producer, topic, key, headers, state, \
         deliver_after_ms, created_at, updated_at, decided_at, next_check_at, routed, \
         ordering_key, traceparent, tracestate, payload_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            message.id.to_string(),
            message.producer.as_str(),
            message.topic.as_str(),
            message.key.as_str(),
            headers,
            state.as_str(),
            millis(message.deliver_after),
            now,
            now,
            decided_at,
            next_check_at,
            routed,
            message.ordering_key.as_str(),
            traceparent,
            tracestate,
            payload_id,
        ],
    )?;
    let effects = match first_check_at {
        Some(check_at) => Effects::check_due(check_at),
        None => route(
            conn,
            message.id,
            (message.topic.as_str(), &message.ordering_key),
            subscriptions,
            message.now.plus(message.deliver_after),
            message.now,
        )?,
    };
    let outcome = InsertOutcome {
        message_id: message.id,
        state,
        created: true,
    };
    Ok((outcome, effects))
}

/// Creates one PENDING delivery per current subscription of the topic (`subscriptions`, read
/// in this transaction), due at `due`, or waiting in its lane where the subscription is
/// ordered and the message has an ordering key. The caller records their number as `routed`
/// (0: unrouted) in its own write of the message.
fn route(
    conn: &Connection,
    id: MessageId,
    (topic, ordering_key): (&str, &OrderingKey),
    subscriptions: Vec<Name>,
    due: Timestamp,
    now: Timestamp,
) -> Result<Effects, StoreError> {
    if ordering_key.lane().is_some() {
        lanes::route_keyed(conn, id, topic, ordering_key, due, now)?;
    } else {
        // One single-row INSERT per subscription (read in this transaction): unlike an
        // INSERT … SELECT, SQLite runs it without a statement journal.
        let id = id.to_string();
        for subscription in &subscriptions {
            execute(
                conn,
                "INSERT INTO deliveries (subscription, message_id, state, next_attempt_at, \
                 updated_at) VALUES (?, ?, 'PENDING', ?, ?)",
                params![subscription.as_str(), &id, due.as_millis(), now.as_millis()],
            )?;
        }
    }
    if subscriptions.is_empty() {
        tracing::warn!(message_id = %id, topic, "confirmed message has no subscription: unrouted");
    }
    Ok(Effects::due(subscriptions))
}

/// What a decision needs to know of a message.
struct Located {
    id: MessageId,
    topic: String,
    ordering_key: OrderingKey,
    state: MessageState,
    deliver_after: Duration,
}

/// Finds a message by id or producer key.
fn locate(conn: &Connection, message: &MessageRef) -> Result<Located, StoreError> {
    let decode = |row: &Row<'_>| {
        let id: String = row.get("id")?;
        let state: String = row.get("state")?;
        let deliver_after: i64 = row.get("deliver_after_ms")?;
        Ok(Located {
            id: rows::message_id(&id)?,
            topic: row.get("topic")?,
            ordering_key: OrderingKey::from_trusted(row.get("ordering_key")?),
            state: rows::message_state(&state)?,
            deliver_after: Duration::from_millis(u64::try_from(deliver_after).unwrap_or(0)),
        })
    };
    let found = match message {
        MessageRef::Id(id) => query_one(
            conn,
            "SELECT id, topic, ordering_key, state, deliver_after_ms FROM messages WHERE id = ?",
            [id.to_string()],
            decode,
        )?,
        MessageRef::ProducerKey { producer, key } => query_one(
            conn,
            "SELECT id, topic, ordering_key, state, deliver_after_ms FROM messages \
             WHERE producer = ? AND key = ?",
            [producer.as_str(), key.as_str()],
            decode,
        )?,
    };
    found.ok_or_else(|| StoreError::NotFound(message.to_string()))
}

pub fn decide(
    conn: &Connection,
    message: &MessageRef,
    decision: Decision,
    now: Timestamp,
) -> Written<MessageState> {
    let ((state, _), effects) = decide_as(conn, message, decision, DecidedBy::Producer, now)?;
    Ok((state, effects))
}

/// An operator's decision: like the producer's, and recorded in the message's events with
/// `operator`'s name when it changed the state.
pub fn resolve(
    conn: &Connection,
    message: &MessageRef,
    decision: Decision,
    operator: &str,
    now: Timestamp,
) -> Written<MessageState> {
    let ((state, moved), effects) = decide_as(conn, message, decision, DecidedBy::Operator, now)?;
    if let Some(id) = moved {
        events::record(conn, &NewEvent::resolved(id, decision, operator, now))?;
    }
    Ok((state, effects))
}

/// Applies `decision`, made `by`, and answers the resulting state and, when this call moved
/// the message, its id.
pub(super) fn decide_as(
    conn: &Connection,
    message: &MessageRef,
    decision: Decision,
    by: DecidedBy,
    now: Timestamp,
) -> Written<(MessageState, Option<MessageId>)> {
    let Located {
        id,
        topic,
        ordering_key,
        state: current,
        deliver_after,
    } = locate(conn, message)?;
    let target = match decide_transition(current, decision) {
        Transition::To(target) => target,
        Transition::AlreadyThere(state) => return Ok(((state, None), Effects::none())),
        Transition::Contradicts(current) => return Err(StoreError::MessageConflict { current }),
    };
    // A confirm routes: `routed` is written with the state rather than by a second UPDATE.
    let subscriptions = if target == MessageState::Confirmed {
        Some(subscriptions_of_topic(conn, &topic)?)
    } else {
        None
    };
    let changed = execute(
        conn,
        "UPDATE messages SET state = ?, updated_at = ?, decided_at = ?, next_check_at = NULL, \
         routed = COALESCE(?, routed), decided_by = ? \
         WHERE id = ? AND state = ?",
        params![
            target.as_str(),
            now.as_millis(),
            now.as_millis(),
            subscriptions.as_ref().map(|s| s.len() as i64),
            by.stored(),
            id.to_string(),
            current.as_str(),
        ],
    )?;
    if changed == 0 {
        return Err(StoreError::internal(
            "message changed under the single writer",
        ));
    }
    if target == MessageState::Cancelled {
        mark_final(conn, &id.to_string(), now)?;
    }
    let effects = match subscriptions {
        Some(subscriptions) => route(
            conn,
            id,
            (&topic, &ordering_key),
            subscriptions,
            now.plus(deliver_after),
            now,
        )?,
        None => Effects::none(),
    };
    Ok(((target, Some(id)), effects))
}

pub fn register_checker(
    conn: &Connection,
    checker: CheckerRegistration,
    now: Timestamp,
) -> Written<()> {
    execute(
        conn,
        "INSERT INTO checkers (producer, endpoint, timeout_ms, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (producer) DO UPDATE SET endpoint = excluded.endpoint, \
         timeout_ms = excluded.timeout_ms, updated_at = excluded.updated_at",
        params![
            checker.producer.as_str(),
            checker.endpoint,
            millis(checker.timeout),
            now.as_millis(),
        ],
    )?;
    Ok(((), Effects::none()))
}

/// The dead letters `chosen` names, oldest message first: message id and lane key.
pub(super) fn chosen_dead_letters(
    conn: &Connection,
    chosen: &DeadLetters,
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    let ids: Vec<String> = chosen.message_ids.iter().map(ToString::to_string).collect();
    let ids = serde_json::to_string(&ids).map_err(StoreError::internal)?;
    let sql = <super::reads::SqliteDialect as Dialect>::dead_letters_sql();
    let (contains, from, until, key, ordering_key) = chosen.filter_binds();
    query_all(
        conn,
        &sql,
        params![
            chosen.subscription.as_str(),
            ids,
            contains,
            from,
            until,
            key,
            ordering_key
        ],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// Makes the chosen dead letters PENDING with attempts reset, due at their paced times (or
/// waiting in their lane), and records it in their messages' events.
pub fn redrive(conn: &Connection, chosen: &DeadLetters, rate: f64, now: Timestamp) -> Written<u64> {
    let found = chosen_of_subscription(conn, chosen)?;
    let due = dead_letters::paced(now, found.len(), rate);
    let sql = format!(
        "UPDATE deliveries SET state = 'PENDING', attempts = 0, next_attempt_at = {}, \
         lease_expires_at = NULL, updated_at = ?2 \
         WHERE subscription = ?3 AND message_id = ?4 AND state = 'DEAD'",
        for_sqlite(store_lanes::REDRIVEN_DUE_AT)
    );
    for ((id, _), due) in found.iter().zip(due) {
        let params = params![
            due.as_millis(),
            now.as_millis(),
            chosen.subscription.as_str(),
            id
        ];
        execute(conn, &sql, params)?;
    }
    let (redriven, effects) = dead_letters_ended(conn, chosen, &found, EventKind::Redriven, now)?;
    Ok((
        redriven,
        effects.and(Effects::redriven(&chosen.subscription, redriven)),
    ))
}

/// Ends the chosen dead letters for good (DISCARDED) and records it in their messages' events.
pub fn discard(conn: &Connection, chosen: &DeadLetters, now: Timestamp) -> Written<u64> {
    let found = chosen_of_subscription(conn, chosen)?;
    for (id, _) in &found {
        execute(
            conn,
            "UPDATE deliveries SET state = 'DISCARDED', next_attempt_at = NULL, \
             lease_expires_at = NULL, updated_at = ? \
             WHERE subscription = ? AND message_id = ? AND state = 'DEAD'",
            params![now.as_millis(), chosen.subscription.as_str(), id],
        )?;
        mark_final_if_done(conn, id, now)?;
    }
    dead_letters_ended(conn, chosen, &found, EventKind::Discarded, now)
}

/// The chosen dead letters; NOT_FOUND for an unknown subscription.
fn chosen_of_subscription(
    conn: &Connection,
    chosen: &DeadLetters,
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    if find_subscription(conn, &chosen.subscription)?.is_none() {
        return Err(rules::subscription_not_found(&chosen.subscription));
    }
    chosen_dead_letters(conn, chosen)
}

/// After the `ended` dead letters left DEAD: records `kind` in their messages' events and lets
/// the lanes they were in go on. Answers how many ended.
fn dead_letters_ended(
    conn: &Connection,
    chosen: &DeadLetters,
    ended: &[(String, Option<String>)],
    kind: EventKind,
    now: Timestamp,
) -> Written<u64> {
    let subscription = &chosen.subscription;
    for (id, _) in ended {
        let id = rows::message_id(id)?;
        events::record(
            conn,
            &NewEvent::dead_letter_ended(id, subscription, kind, now),
        )?;
    }
    let lanes = store_lanes::distinct_lanes(
        ended
            .iter()
            .map(|(_, key)| (subscription.as_str(), key.as_deref())),
    );
    let effects = lanes::advance(conn, &lanes, now)?;
    Ok((ended.len() as u64, effects))
}
