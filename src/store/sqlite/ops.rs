//! Write operations. Each runs on the writer's connection inside the group transaction, so it
//! reads the current state and writes its change without any other writer in between; the
//! UPDATEs still name the state (and generation) they expect, as every backend must.
//!
//! They run synchronously on the writer's own thread (rusqlite, cached prepared statements):
//! a statement costs microseconds there, where a round trip to an async driver's connection
//! thread cost more than the statement itself.

use std::time::Duration;

use rusqlite::{Connection, Params, Row, params};

use super::rows::{self, SUBSCRIPTION_COLUMNS, headers_to_json, millis};
use crate::domain::{
    AckVerdict, Decision, DeliveryState, LeaseCheck, MessageId, MessageRef, MessageState, Name,
    Receipt, RedeliveryPlan, Subscription, Timestamp, Transition, classify_ack,
    decide as decide_transition, plan_redelivery, random_jitter,
};
use crate::store::{
    AckStatus, CheckerRegistration, ExpiredLeases, InsertOutcome, LeasedDelivery, NewMessage,
    StoreError, rules,
};

/// Subscriptions whose waiters should wake once the write commits.
pub type Wake = Vec<String>;

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

/// Every row of a cached query, decoded by `decode`.
pub(super) fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    mut decode: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut found = statement.query(params)?;
    let mut decoded = Vec::new();
    while let Some(row) = found.next()? {
        decoded.push(decode(row)?);
    }
    Ok(decoded)
}

pub fn create_subscription(
    conn: &Connection,
    subscription: Subscription,
) -> Result<(Subscription, bool), StoreError> {
    if let Some(existing) = find_subscription(conn, &subscription.name)? {
        return if existing.same_config(&subscription) {
            Ok((existing, false))
        } else {
            Err(rules::subscription_conflict(&subscription.name))
        };
    }
    let policy = &subscription.retry_policy;
    execute(
        conn,
        "INSERT INTO subscriptions (name, topic, ack_deadline_ms, max_attempts, \
         initial_backoff_ms, max_backoff_ms, multiplier, push_endpoint, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        ],
    )?;
    Ok((subscription, true))
}

pub fn update_subscription(
    conn: &Connection,
    subscription: Subscription,
) -> Result<(Subscription, Wake), StoreError> {
    let existing = find_subscription(conn, &subscription.name)?
        .ok_or_else(|| rules::subscription_not_found(&subscription.name))?;
    if existing.topic != subscription.topic {
        return Err(rules::topic_is_immutable(&existing.name, &existing.topic));
    }
    let policy = &subscription.retry_policy;
    execute(
        conn,
        "UPDATE subscriptions SET ack_deadline_ms = ?, max_attempts = ?, initial_backoff_ms = ?, \
         max_backoff_ms = ?, multiplier = ?, push_endpoint = ? WHERE name = ?",
        params![
            millis(subscription.ack_deadline),
            i64::from(policy.max_attempts),
            millis(policy.initial_backoff),
            millis(policy.max_backoff),
            policy.multiplier,
            subscription.push_endpoint.as_deref(),
            subscription.name.as_str(),
        ],
    )?;
    let updated = Subscription {
        created_at: existing.created_at,
        ..subscription
    };
    let wake = vec![updated.name.to_string()];
    Ok((updated, wake))
}

pub fn delete_subscription(conn: &Connection, name: &Name) -> Result<(), StoreError> {
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
    Ok(())
}

pub(super) fn find_subscription(
    conn: &Connection,
    name: &Name,
) -> Result<Option<Subscription>, StoreError> {
    let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE name = ?");
    query_one(conn, &sql, [name.as_str()], |row| rows::subscription(row))
}

fn subscriptions_of_topic(conn: &Connection, topic: &str) -> Result<Vec<String>, StoreError> {
    query_all(
        conn,
        "SELECT name FROM subscriptions WHERE topic = ? ORDER BY name",
        [topic],
        |row| Ok(row.get(0)?),
    )
}

pub fn insert_message(
    conn: &Connection,
    message: NewMessage,
) -> Result<(InsertOutcome, Wake), StoreError> {
    let headers = headers_to_json(&message.headers);
    let existing = query_one(
        conn,
        "SELECT id, topic, payload, headers, state FROM messages WHERE producer = ? AND key = ?",
        [message.producer.as_str(), message.key.as_str()],
        |row| {
            let id: String = row.get("id")?;
            let same = row.get_ref("topic")?.as_str()? == message.topic.as_str()
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
        return Ok((outcome, Vec::new()));
    }

    let subscriptions = subscriptions_of_topic(conn, message.topic.as_str())?;
    if subscriptions.is_empty() {
        return Err(rules::no_subscription(&message.topic));
    }
    let now = message.now.as_millis();
    let (state, next_check_at, decided_at) = if message.publish {
        (MessageState::Confirmed, None, Some(now))
    } else {
        let check_at = message.now.plus(message.check_after).as_millis();
        (MessageState::Prepared, Some(check_at), None)
    };
    // A Publish is routed in the same transaction; `routed` is written with the row rather
    // than by a second UPDATE (which would rewrite the payload again).
    let routed = message.publish.then_some(subscriptions.len() as i64);
    execute(
        conn,
        "INSERT INTO messages (id, producer, topic, key, payload, headers, state, \
         deliver_after_ms, created_at, updated_at, decided_at, next_check_at, routed) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            message.id.to_string(),
            message.producer.as_str(),
            message.topic.as_str(),
            message.key.as_str(),
            message.payload,
            headers,
            state.as_str(),
            millis(message.deliver_after),
            now,
            now,
            decided_at,
            next_check_at,
            routed,
        ],
    )?;
    let wake = if message.publish {
        route(
            conn,
            message.id,
            message.topic.as_str(),
            subscriptions,
            message.now.plus(message.deliver_after),
            message.now,
        )?
    } else {
        Vec::new()
    };
    let outcome = InsertOutcome {
        message_id: message.id,
        state,
        created: true,
    };
    Ok((outcome, wake))
}

/// Creates one PENDING delivery per current subscription of the topic (`subscriptions`, read
/// in this transaction), due at `due`. The caller records their number as `routed` (0:
/// unrouted) in its own write of the message.
fn route(
    conn: &Connection,
    id: MessageId,
    topic: &str,
    subscriptions: Vec<String>,
    due: Timestamp,
    now: Timestamp,
) -> Result<Wake, StoreError> {
    execute(
        conn,
        "INSERT INTO deliveries (subscription, message_id, state, next_attempt_at, updated_at) \
         SELECT name, ?, 'PENDING', ?, ? FROM subscriptions WHERE topic = ?",
        params![id.to_string(), due.as_millis(), now.as_millis(), topic],
    )?;
    if subscriptions.is_empty() {
        tracing::warn!(message_id = %id, topic, "confirmed message has no subscription: unrouted");
    }
    Ok(subscriptions)
}

/// Finds a message's id, topic, state and delivery delay by id or producer key.
fn locate(
    conn: &Connection,
    message: &MessageRef,
) -> Result<(MessageId, String, MessageState, Duration), StoreError> {
    let decode = |row: &Row<'_>| {
        let id: String = row.get("id")?;
        let state: String = row.get("state")?;
        let deliver_after: i64 = row.get("deliver_after_ms")?;
        Ok((
            rows::message_id(&id)?,
            row.get("topic")?,
            rows::message_state(&state)?,
            Duration::from_millis(u64::try_from(deliver_after).unwrap_or(0)),
        ))
    };
    let found = match message {
        MessageRef::Id(id) => query_one(
            conn,
            "SELECT id, topic, state, deliver_after_ms FROM messages WHERE id = ?",
            [id.to_string()],
            decode,
        )?,
        MessageRef::ProducerKey { producer, key } => query_one(
            conn,
            "SELECT id, topic, state, deliver_after_ms FROM messages WHERE producer = ? AND key = ?",
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
) -> Result<(MessageState, Wake), StoreError> {
    let (id, topic, current, deliver_after) = locate(conn, message)?;
    let target = match decide_transition(current, decision) {
        Transition::To(target) => target,
        Transition::AlreadyThere(state) => return Ok((state, Vec::new())),
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
         routed = COALESCE(?, routed) WHERE id = ? AND state = ?",
        params![
            target.as_str(),
            now.as_millis(),
            now.as_millis(),
            subscriptions.as_ref().map(|s| s.len() as i64),
            id.to_string(),
            current.as_str(),
        ],
    )?;
    if changed == 0 {
        return Err(StoreError::internal(
            "message changed under the single writer",
        ));
    }
    let wake = match subscriptions {
        Some(subscriptions) => route(
            conn,
            id,
            &topic,
            subscriptions,
            now.plus(deliver_after),
            now,
        )?,
        None => Vec::new(),
    };
    Ok((target, wake))
}

pub fn register_checker(
    conn: &Connection,
    checker: CheckerRegistration,
    now: Timestamp,
) -> Result<(), StoreError> {
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
    Ok(())
}

pub fn lease(
    conn: &Connection,
    subscription: &Subscription,
    max: u32,
    now: Timestamp,
) -> Result<Vec<LeasedDelivery>, StoreError> {
    let lease_expires_at = now.plus(subscription.ack_deadline);
    let due = query_all(
        conn,
        "SELECT d.message_id, d.attempts, d.generation, m.producer, m.topic, m.key, m.payload, \
         m.headers, m.decided_at FROM deliveries d JOIN messages m ON m.id = d.message_id \
         WHERE d.subscription = ? AND d.state = 'PENDING' AND d.next_attempt_at <= ? \
         ORDER BY d.next_attempt_at LIMIT ?",
        params![subscription.name.as_str(), now.as_millis(), i64::from(max)],
        |row| {
            let message_id: String = row.get("message_id")?;
            let attempts: i64 = row.get("attempts")?;
            let generation: i64 = row.get("generation")?;
            let headers: String = row.get("headers")?;
            let published_at: Option<i64> = row.get("decided_at")?;
            let delivery = LeasedDelivery {
                receipt: Receipt {
                    message_id: rows::message_id(&message_id)?,
                    generation: u32::try_from(generation + 1).map_err(StoreError::internal)?,
                    subscription: subscription.name.clone(),
                },
                topic: Name::from_trusted(row.get("topic")?),
                producer: Name::from_trusted(row.get("producer")?),
                key: crate::domain::MessageKey::from_trusted(row.get("key")?),
                payload: row.get("payload")?,
                headers: rows::headers_from_json(&headers)?,
                attempt: u32::try_from(attempts + 1).map_err(StoreError::internal)?,
                published_at: Timestamp::from_millis(published_at.unwrap_or_default()),
                lease_expires_at,
            };
            Ok((message_id, attempts, generation, delivery))
        },
    )?;
    let mut leased = Vec::with_capacity(due.len());
    for (message_id, attempts, generation, delivery) in due {
        execute(
            conn,
            "UPDATE deliveries SET state = 'LEASED', attempts = ?, generation = ?, \
             lease_expires_at = ?, next_attempt_at = NULL, updated_at = ? \
             WHERE subscription = ? AND message_id = ? AND state = 'PENDING' AND generation = ?",
            params![
                attempts + 1,
                generation + 1,
                lease_expires_at.as_millis(),
                now.as_millis(),
                subscription.name.as_str(),
                message_id,
                generation,
            ],
        )?;
        leased.push(delivery);
    }
    Ok(leased)
}

/// The state, generation and attempts of a delivery, if it exists.
fn delivery_lease(
    conn: &Connection,
    receipt: &Receipt,
) -> Result<Option<(DeliveryState, u32, u32)>, StoreError> {
    query_one(
        conn,
        "SELECT state, generation, attempts FROM deliveries WHERE subscription = ? AND message_id = ?",
        [
            receipt.subscription.as_str(),
            &receipt.message_id.to_string(),
        ],
        |row| rows::lease_state(row),
    )
}

pub fn ack(
    conn: &Connection,
    receipts: &[Receipt],
    now: Timestamp,
) -> Result<Vec<AckStatus>, StoreError> {
    let mut statuses = Vec::with_capacity(receipts.len());
    for receipt in receipts {
        let current = delivery_lease(conn, receipt)?;
        let verdict = classify_ack(current.map(|(s, g, _)| (s, g)), receipt.generation);
        let status = match verdict {
            AckVerdict::Acknowledge => {
                execute(
                    conn,
                    "UPDATE deliveries SET state = 'ACKED', lease_expires_at = NULL, \
                     next_attempt_at = NULL, updated_at = ? \
                     WHERE subscription = ? AND message_id = ? AND generation = ? \
                     AND state <> 'ACKED'",
                    params![
                        now.as_millis(),
                        receipt.subscription.as_str(),
                        receipt.message_id.to_string(),
                        i64::from(receipt.generation),
                    ],
                )?;
                AckStatus::Ok
            }
            AckVerdict::AlreadyAcked => AckStatus::Ok,
            AckVerdict::LeaseLost => AckStatus::LeaseLost,
            AckVerdict::NotFound => AckStatus::NotFound,
        };
        statuses.push(status);
    }
    Ok(statuses)
}

/// The current lease of `receipt`, or the error its holder should see.
fn held_lease(conn: &Connection, receipt: &Receipt) -> Result<(LeaseCheck, u32), StoreError> {
    rules::held_lease(delivery_lease(conn, receipt)?, receipt)
}

/// Moves a leased delivery to PENDING at `plan`'s time or to DEAD, guarded by its generation.
pub(super) fn release(
    conn: &Connection,
    receipt: &Receipt,
    plan: RedeliveryPlan,
    error: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let (state, next_attempt_at) = match plan {
        RedeliveryPlan::RetryAt(at) => (DeliveryState::Pending, Some(at.as_millis())),
        RedeliveryPlan::Dead => (DeliveryState::Dead, None),
    };
    let changed = execute(
        conn,
        "UPDATE deliveries SET state = ?, next_attempt_at = ?, lease_expires_at = NULL, \
         last_error = ?, updated_at = ? \
         WHERE subscription = ? AND message_id = ? AND generation = ? AND state = 'LEASED'",
        params![
            state.as_str(),
            next_attempt_at,
            error,
            now.as_millis(),
            receipt.subscription.as_str(),
            receipt.message_id.to_string(),
            i64::from(receipt.generation),
        ],
    )?;
    Ok(changed == 1)
}

pub fn nack(
    conn: &Connection,
    receipt: &Receipt,
    delay: Option<Duration>,
    now: Timestamp,
) -> Result<(Option<RedeliveryPlan>, Wake), StoreError> {
    let (check, attempts) = held_lease(conn, receipt)?;
    if check != LeaseCheck::Held {
        // already released by this receipt: an idempotent repeat
        return Ok((None, Vec::new()));
    }
    let subscription = find_subscription(conn, &receipt.subscription)?
        .ok_or_else(|| rules::subscription_not_found(&receipt.subscription))?;
    let plan = plan_redelivery(
        &subscription.retry_policy,
        attempts,
        now,
        delay,
        random_jitter(),
    );
    if !release(conn, receipt, plan, rules::NACKED, now)? {
        return Ok((None, Vec::new()));
    }
    Ok((Some(plan), vec![receipt.subscription.to_string()]))
}

pub fn extend_lease(
    conn: &Connection,
    receipt: &Receipt,
    extension: Duration,
    now: Timestamp,
) -> Result<Timestamp, StoreError> {
    let (check, _) = held_lease(conn, receipt)?;
    if let LeaseCheck::Released(current) = check {
        return Err(StoreError::LeaseLost { current });
    }
    let lease_expires_at = now.plus(extension);
    execute(
        conn,
        "UPDATE deliveries SET lease_expires_at = ?, updated_at = ? \
         WHERE subscription = ? AND message_id = ? AND generation = ? AND state = 'LEASED'",
        params![
            lease_expires_at.as_millis(),
            now.as_millis(),
            receipt.subscription.as_str(),
            receipt.message_id.to_string(),
            i64::from(receipt.generation),
        ],
    )?;
    Ok(lease_expires_at)
}

pub fn reject(
    conn: &Connection,
    receipt: &Receipt,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (check, _) = held_lease(conn, receipt)?;
    let error = rules::rejected(reason);
    match check {
        LeaseCheck::Released(DeliveryState::Dead) => Ok(()),
        // Unleased again after an expiry or Nack, not leased by anyone since: still rejectable.
        LeaseCheck::Released(_) | LeaseCheck::Held => {
            execute(
                conn,
                "UPDATE deliveries SET state = 'DEAD', next_attempt_at = NULL, \
                 lease_expires_at = NULL, last_error = ?, updated_at = ? \
                 WHERE subscription = ? AND message_id = ? AND generation = ? \
                 AND state IN ('LEASED', 'PENDING')",
                params![
                    error,
                    now.as_millis(),
                    receipt.subscription.as_str(),
                    receipt.message_id.to_string(),
                    i64::from(receipt.generation),
                ],
            )?;
            Ok(())
        }
        LeaseCheck::Lost(_) | LeaseCheck::NotFound => {
            unreachable!("held_lease returns these as errors")
        }
    }
}

pub fn expire_leases(
    conn: &Connection,
    now: Timestamp,
) -> Result<(ExpiredLeases, Wake), StoreError> {
    let expired = query_all(
        conn,
        "SELECT d.subscription, d.message_id, d.attempts, d.generation, s.max_attempts, \
         s.initial_backoff_ms, s.max_backoff_ms, s.multiplier \
         FROM deliveries d JOIN subscriptions s ON s.name = d.subscription \
         WHERE d.state = 'LEASED' AND d.lease_expires_at <= ? ORDER BY d.lease_expires_at LIMIT ?",
        params![now.as_millis(), rules::EXPIRY_BATCH],
        |row| {
            let subscription: String = row.get("subscription")?;
            let message_id: String = row.get("message_id")?;
            let attempts: i64 = row.get("attempts")?;
            let generation: i64 = row.get("generation")?;
            let policy = rows::retry_policy(row)?;
            Ok((subscription, message_id, attempts, generation, policy))
        },
    )?;
    let mut ended = ExpiredLeases::default();
    let mut wake = Vec::new();
    for (subscription, message_id, attempts, generation, policy) in expired {
        let receipt = Receipt {
            message_id: rows::message_id(&message_id)?,
            generation: u32::try_from(generation).map_err(StoreError::internal)?,
            subscription: Name::from_trusted(subscription.clone()),
        };
        let attempts = u32::try_from(attempts).map_err(StoreError::internal)?;
        let plan = plan_redelivery(&policy, attempts, now, None, random_jitter());
        if release(conn, &receipt, plan, rules::LEASE_EXPIRED, now)? {
            ended.count(&subscription, plan == RedeliveryPlan::Dead);
            if !wake.contains(&subscription) {
                wake.push(subscription);
            }
        }
    }
    Ok((ended, wake))
}

pub fn redrive(
    conn: &Connection,
    subscription: &Name,
    message_ids: &[MessageId],
    now: Timestamp,
) -> Result<u64, StoreError> {
    if find_subscription(conn, subscription)?.is_none() {
        return Err(rules::subscription_not_found(subscription));
    }
    const REDRIVE: &str = "UPDATE deliveries SET state = 'PENDING', attempts = 0, \
         next_attempt_at = ?, lease_expires_at = NULL, updated_at = ? \
         WHERE subscription = ? AND state = 'DEAD'";
    if message_ids.is_empty() {
        return execute(
            conn,
            REDRIVE,
            params![now.as_millis(), now.as_millis(), subscription.as_str()],
        );
    }
    let ids: Vec<String> = message_ids.iter().map(ToString::to_string).collect();
    let ids = serde_json::to_string(&ids).map_err(StoreError::internal)?;
    execute(
        conn,
        &format!("{REDRIVE} AND message_id IN (SELECT value FROM json_each(?))"),
        params![now.as_millis(), now.as_millis(), subscription.as_str(), ids],
    )
}
