//! Write operations. Each runs on the writer's connection inside the group transaction, so it
//! reads the current state and writes its change without any other writer in between; the
//! UPDATEs still name the state (and generation) they expect, as every backend must.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Row, SqliteConnection};

use super::rows::{self, SUBSCRIPTION_COLUMNS, headers_to_json, millis};
use crate::domain::{
    AckVerdict, Decision, DeliveryState, LeaseCheck, MessageId, MessageRef, MessageState, Name,
    Receipt, RedeliveryPlan, Subscription, Timestamp, Transition, classify_ack,
    decide as decide_transition, plan_redelivery, random_jitter,
};
use crate::store::{
    AckStatus, CheckerRegistration, InsertOutcome, LeasedDelivery, NewMessage, StoreError, rules,
};

/// Subscriptions whose waiters should wake once the write commits.
pub type Wake = Vec<String>;

pub async fn create_subscription(
    conn: &mut SqliteConnection,
    subscription: Subscription,
) -> Result<(Subscription, bool), StoreError> {
    if let Some(existing) = find_subscription(conn, &subscription.name).await? {
        return if existing.same_config(&subscription) {
            Ok((existing, false))
        } else {
            Err(rules::subscription_conflict(&subscription.name))
        };
    }
    let policy = &subscription.retry_policy;
    sqlx::query(
        "INSERT INTO subscriptions (name, topic, ack_deadline_ms, max_attempts, \
         initial_backoff_ms, max_backoff_ms, multiplier, push_endpoint, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .execute(&mut *conn)
    .await?;
    Ok((subscription, true))
}

pub async fn update_subscription(
    conn: &mut SqliteConnection,
    subscription: Subscription,
) -> Result<(Subscription, Wake), StoreError> {
    let existing = find_subscription(conn, &subscription.name)
        .await?
        .ok_or_else(|| rules::subscription_not_found(&subscription.name))?;
    if existing.topic != subscription.topic {
        return Err(rules::topic_is_immutable(&existing.name, &existing.topic));
    }
    let policy = &subscription.retry_policy;
    sqlx::query(
        "UPDATE subscriptions SET ack_deadline_ms = ?, max_attempts = ?, initial_backoff_ms = ?, \
         max_backoff_ms = ?, multiplier = ?, push_endpoint = ? WHERE name = ?",
    )
    .bind(millis(subscription.ack_deadline))
    .bind(i64::from(policy.max_attempts))
    .bind(millis(policy.initial_backoff))
    .bind(millis(policy.max_backoff))
    .bind(policy.multiplier)
    .bind(subscription.push_endpoint.as_deref())
    .bind(subscription.name.as_str())
    .execute(&mut *conn)
    .await?;
    let updated = Subscription {
        created_at: existing.created_at,
        ..subscription
    };
    let wake = vec![updated.name.to_string()];
    Ok((updated, wake))
}

pub async fn delete_subscription(
    conn: &mut SqliteConnection,
    name: &Name,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM deliveries WHERE subscription = ?")
        .bind(name.as_str())
        .execute(&mut *conn)
        .await?;
    let deleted = sqlx::query("DELETE FROM subscriptions WHERE name = ?")
        .bind(name.as_str())
        .execute(&mut *conn)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(rules::subscription_not_found(name));
    }
    Ok(())
}

async fn find_subscription(
    conn: &mut SqliteConnection,
    name: &Name,
) -> Result<Option<Subscription>, StoreError> {
    let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE name = ?");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(rows::subscription).transpose()
}

async fn subscriptions_of_topic(
    conn: &mut SqliteConnection,
    topic: &str,
) -> Result<Vec<String>, StoreError> {
    let names = sqlx::query_scalar("SELECT name FROM subscriptions WHERE topic = ? ORDER BY name")
        .bind(topic)
        .fetch_all(&mut *conn)
        .await?;
    Ok(names)
}

pub async fn insert_message(
    conn: &mut SqliteConnection,
    message: NewMessage,
) -> Result<(InsertOutcome, Wake), StoreError> {
    let existing = sqlx::query(
        "SELECT id, topic, payload, headers, state FROM messages WHERE producer = ? AND key = ?",
    )
    .bind(message.producer.as_str())
    .bind(message.key.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let headers = headers_to_json(&message.headers);
    if let Some(row) = existing {
        let id: String = row.try_get("id")?;
        let same = row.try_get::<String, _>("topic")? == message.topic.as_str()
            && row.try_get::<Vec<u8>, _>("payload")? == message.payload
            && row.try_get::<String, _>("headers")? == headers;
        if !same {
            return Err(rules::key_conflict(
                &message.producer,
                &message.key,
                rows::message_id(&id)?,
            ));
        }
        let state: String = row.try_get("state")?;
        let outcome = InsertOutcome {
            message_id: rows::message_id(&id)?,
            state: rows::message_state(&state)?,
            created: false,
        };
        return Ok((outcome, Vec::new()));
    }

    let subscriptions = subscriptions_of_topic(conn, message.topic.as_str()).await?;
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
    sqlx::query(
        "INSERT INTO messages (id, producer, topic, key, payload, headers, state, \
         deliver_after_ms, created_at, updated_at, decided_at, next_check_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(message.id.to_string())
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
    .execute(&mut *conn)
    .await?;
    let wake = if message.publish {
        route(
            conn,
            message.id,
            message.topic.as_str(),
            message.now.plus(message.deliver_after),
            message.now,
        )
        .await?
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

/// Creates one PENDING delivery per current subscription of the topic, due at `due`, and
/// records how many there were (0: unrouted).
async fn route(
    conn: &mut SqliteConnection,
    id: MessageId,
    topic: &str,
    due: Timestamp,
    now: Timestamp,
) -> Result<Wake, StoreError> {
    let subscriptions = subscriptions_of_topic(conn, topic).await?;
    let id_text = id.to_string();
    sqlx::query(
        "INSERT INTO deliveries (subscription, message_id, state, next_attempt_at, updated_at) \
         SELECT name, ?, 'PENDING', ?, ? FROM subscriptions WHERE topic = ?",
    )
    .bind(&id_text)
    .bind(due.as_millis())
    .bind(now.as_millis())
    .bind(topic)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE messages SET routed = ? WHERE id = ?")
        .bind(subscriptions.len() as i64)
        .bind(&id_text)
        .execute(&mut *conn)
        .await?;
    if subscriptions.is_empty() {
        tracing::warn!(message_id = %id, topic, "confirmed message has no subscription: unrouted");
    }
    Ok(subscriptions)
}

/// Finds a message's id, topic, state and delivery delay by id or producer key.
async fn locate(
    conn: &mut SqliteConnection,
    message: &MessageRef,
) -> Result<(MessageId, String, MessageState, Duration), StoreError> {
    let query = match message {
        MessageRef::Id(id) => {
            sqlx::query("SELECT id, topic, state, deliver_after_ms FROM messages WHERE id = ?")
                .bind(id.to_string())
        }
        MessageRef::ProducerKey { producer, key } => sqlx::query(
            "SELECT id, topic, state, deliver_after_ms FROM messages WHERE producer = ? AND key = ?",
        )
        .bind(producer.as_str())
        .bind(key.as_str()),
    };
    let row = query
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(message.to_string()))?;
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let deliver_after: i64 = row.try_get("deliver_after_ms")?;
    Ok((
        rows::message_id(&id)?,
        row.try_get("topic")?,
        rows::message_state(&state)?,
        Duration::from_millis(u64::try_from(deliver_after).unwrap_or(0)),
    ))
}

pub async fn decide(
    conn: &mut SqliteConnection,
    message: &MessageRef,
    decision: Decision,
    now: Timestamp,
) -> Result<(MessageState, Wake), StoreError> {
    let (id, topic, current, deliver_after) = locate(conn, message).await?;
    let target = match decide_transition(current, decision) {
        Transition::To(target) => target,
        Transition::AlreadyThere(state) => return Ok((state, Vec::new())),
        Transition::Contradicts(current) => return Err(StoreError::MessageConflict { current }),
    };
    let changed = sqlx::query(
        "UPDATE messages SET state = ?, updated_at = ?, decided_at = ?, next_check_at = NULL \
         WHERE id = ? AND state = ?",
    )
    .bind(target.as_str())
    .bind(now.as_millis())
    .bind(now.as_millis())
    .bind(id.to_string())
    .bind(current.as_str())
    .execute(&mut *conn)
    .await?;
    if changed.rows_affected() == 0 {
        return Err(StoreError::internal(
            "message changed under the single writer",
        ));
    }
    let wake = if target == MessageState::Confirmed {
        route(conn, id, &topic, now.plus(deliver_after), now).await?
    } else {
        Vec::new()
    };
    Ok((target, wake))
}

pub async fn register_checker(
    conn: &mut SqliteConnection,
    checker: CheckerRegistration,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO checkers (producer, endpoint, timeout_ms, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (producer) DO UPDATE SET endpoint = excluded.endpoint, \
         timeout_ms = excluded.timeout_ms, updated_at = excluded.updated_at",
    )
    .bind(checker.producer.as_str())
    .bind(&checker.endpoint)
    .bind(millis(checker.timeout))
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn lease(
    conn: &mut SqliteConnection,
    subscription: &Subscription,
    max: u32,
    now: Timestamp,
) -> Result<Vec<LeasedDelivery>, StoreError> {
    let due = sqlx::query(
        "SELECT d.message_id, d.attempts, d.generation, m.producer, m.topic, m.key, m.payload, \
         m.headers, m.decided_at FROM deliveries d JOIN messages m ON m.id = d.message_id \
         WHERE d.subscription = ? AND d.state = 'PENDING' AND d.next_attempt_at <= ? \
         ORDER BY d.next_attempt_at LIMIT ?",
    )
    .bind(subscription.name.as_str())
    .bind(now.as_millis())
    .bind(i64::from(max))
    .fetch_all(&mut *conn)
    .await?;
    let lease_expires_at = now.plus(subscription.ack_deadline);
    let mut leased = Vec::with_capacity(due.len());
    for row in due {
        let message_id: String = row.try_get("message_id")?;
        let attempts: i64 = row.try_get("attempts")?;
        let generation: i64 = row.try_get("generation")?;
        sqlx::query(
            "UPDATE deliveries SET state = 'LEASED', attempts = ?, generation = ?, \
             lease_expires_at = ?, next_attempt_at = NULL, updated_at = ? \
             WHERE subscription = ? AND message_id = ? AND state = 'PENDING' AND generation = ?",
        )
        .bind(attempts + 1)
        .bind(generation + 1)
        .bind(lease_expires_at.as_millis())
        .bind(now.as_millis())
        .bind(subscription.name.as_str())
        .bind(&message_id)
        .bind(generation)
        .execute(&mut *conn)
        .await?;
        let headers: String = row.try_get("headers")?;
        let published_at: Option<i64> = row.try_get("decided_at")?;
        leased.push(LeasedDelivery {
            receipt: Receipt {
                message_id: rows::message_id(&message_id)?,
                generation: u32::try_from(generation + 1).map_err(StoreError::internal)?,
                subscription: subscription.name.clone(),
            },
            topic: Name::from_trusted(row.try_get("topic")?),
            producer: Name::from_trusted(row.try_get("producer")?),
            key: crate::domain::MessageKey::from_trusted(row.try_get("key")?),
            payload: row.try_get("payload")?,
            headers: rows::headers_from_json(&headers)?,
            attempt: u32::try_from(attempts + 1).map_err(StoreError::internal)?,
            published_at: Timestamp::from_millis(published_at.unwrap_or_default()),
            lease_expires_at,
        });
    }
    Ok(leased)
}

/// The state, generation and attempts of a delivery, if it exists.
async fn delivery_lease(
    conn: &mut SqliteConnection,
    receipt: &Receipt,
) -> Result<Option<(DeliveryState, u32, u32)>, StoreError> {
    let row = sqlx::query(
        "SELECT state, generation, attempts FROM deliveries WHERE subscription = ? AND message_id = ?",
    )
    .bind(receipt.subscription.as_str())
    .bind(receipt.message_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(rows::lease_state).transpose()
}

pub async fn ack(
    conn: &mut SqliteConnection,
    receipts: &[Receipt],
    now: Timestamp,
) -> Result<Vec<AckStatus>, StoreError> {
    let mut statuses = Vec::with_capacity(receipts.len());
    for receipt in receipts {
        let current = delivery_lease(conn, receipt).await?;
        let verdict = classify_ack(current.map(|(s, g, _)| (s, g)), receipt.generation);
        let status = match verdict {
            AckVerdict::Acknowledge => {
                sqlx::query(
                    "UPDATE deliveries SET state = 'ACKED', lease_expires_at = NULL, \
                     next_attempt_at = NULL, updated_at = ? \
                     WHERE subscription = ? AND message_id = ? AND generation = ? AND state <> 'ACKED'",
                )
                .bind(now.as_millis())
                .bind(receipt.subscription.as_str())
                .bind(receipt.message_id.to_string())
                .bind(i64::from(receipt.generation))
                .execute(&mut *conn)
                .await?;
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
async fn held_lease(
    conn: &mut SqliteConnection,
    receipt: &Receipt,
) -> Result<(LeaseCheck, u32), StoreError> {
    rules::held_lease(delivery_lease(conn, receipt).await?, receipt)
}

/// Moves a leased delivery to PENDING at `plan`'s time or to DEAD, guarded by its generation.
async fn release(
    conn: &mut SqliteConnection,
    receipt: &Receipt,
    plan: RedeliveryPlan,
    error: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let (state, next_attempt_at) = match plan {
        RedeliveryPlan::RetryAt(at) => (DeliveryState::Pending, Some(at.as_millis())),
        RedeliveryPlan::Dead => (DeliveryState::Dead, None),
    };
    let changed = sqlx::query(
        "UPDATE deliveries SET state = ?, next_attempt_at = ?, lease_expires_at = NULL, \
         last_error = ?, updated_at = ? \
         WHERE subscription = ? AND message_id = ? AND generation = ? AND state = 'LEASED'",
    )
    .bind(state.as_str())
    .bind(next_attempt_at)
    .bind(error)
    .bind(now.as_millis())
    .bind(receipt.subscription.as_str())
    .bind(receipt.message_id.to_string())
    .bind(i64::from(receipt.generation))
    .execute(&mut *conn)
    .await?;
    Ok(changed.rows_affected() == 1)
}

pub async fn nack(
    conn: &mut SqliteConnection,
    receipt: &Receipt,
    delay: Option<Duration>,
    now: Timestamp,
) -> Result<Wake, StoreError> {
    let (check, attempts) = held_lease(conn, receipt).await?;
    if check != LeaseCheck::Held {
        return Ok(Vec::new()); // already released by this receipt: an idempotent repeat
    }
    let subscription = find_subscription(conn, &receipt.subscription)
        .await?
        .ok_or_else(|| rules::subscription_not_found(&receipt.subscription))?;
    let plan = plan_redelivery(
        &subscription.retry_policy,
        attempts,
        now,
        delay,
        random_jitter(),
    );
    release(conn, receipt, plan, rules::NACKED, now).await?;
    Ok(vec![receipt.subscription.to_string()])
}

pub async fn extend_lease(
    conn: &mut SqliteConnection,
    receipt: &Receipt,
    extension: Duration,
    now: Timestamp,
) -> Result<Timestamp, StoreError> {
    let (check, _) = held_lease(conn, receipt).await?;
    if let LeaseCheck::Released(current) = check {
        return Err(StoreError::LeaseLost { current });
    }
    let lease_expires_at = now.plus(extension);
    sqlx::query(
        "UPDATE deliveries SET lease_expires_at = ?, updated_at = ? \
         WHERE subscription = ? AND message_id = ? AND generation = ? AND state = 'LEASED'",
    )
    .bind(lease_expires_at.as_millis())
    .bind(now.as_millis())
    .bind(receipt.subscription.as_str())
    .bind(receipt.message_id.to_string())
    .bind(i64::from(receipt.generation))
    .execute(&mut *conn)
    .await?;
    Ok(lease_expires_at)
}

pub async fn reject(
    conn: &mut SqliteConnection,
    receipt: &Receipt,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (check, _) = held_lease(conn, receipt).await?;
    let error = rules::rejected(reason);
    match check {
        LeaseCheck::Released(DeliveryState::Dead) => Ok(()),
        // Unleased again after an expiry or Nack, not leased by anyone since: still rejectable.
        LeaseCheck::Released(_) | LeaseCheck::Held => {
            sqlx::query(
                "UPDATE deliveries SET state = 'DEAD', next_attempt_at = NULL, \
                 lease_expires_at = NULL, last_error = ?, updated_at = ? \
                 WHERE subscription = ? AND message_id = ? AND generation = ? \
                 AND state IN ('LEASED', 'PENDING')",
            )
            .bind(error)
            .bind(now.as_millis())
            .bind(receipt.subscription.as_str())
            .bind(receipt.message_id.to_string())
            .bind(i64::from(receipt.generation))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        LeaseCheck::Lost(_) | LeaseCheck::NotFound => {
            unreachable!("held_lease returns these as errors")
        }
    }
}

pub async fn expire_leases(
    conn: &mut SqliteConnection,
    now: Timestamp,
) -> Result<(u64, Wake), StoreError> {
    let expired = sqlx::query(
        "SELECT d.subscription, d.message_id, d.attempts, d.generation, s.max_attempts, \
         s.initial_backoff_ms, s.max_backoff_ms, s.multiplier \
         FROM deliveries d JOIN subscriptions s ON s.name = d.subscription \
         WHERE d.state = 'LEASED' AND d.lease_expires_at <= ? ORDER BY d.lease_expires_at LIMIT ?",
    )
    .bind(now.as_millis())
    .bind(rules::EXPIRY_BATCH)
    .fetch_all(&mut *conn)
    .await?;
    let mut ended = 0;
    let mut wake = Vec::new();
    for row in expired {
        let subscription: String = row.try_get("subscription")?;
        let message_id: String = row.try_get("message_id")?;
        let attempts: i64 = row.try_get("attempts")?;
        let generation: i64 = row.try_get("generation")?;
        let policy = rows::retry_policy(&row)?;
        let receipt = Receipt {
            message_id: rows::message_id(&message_id)?,
            generation: u32::try_from(generation).map_err(StoreError::internal)?,
            subscription: Name::from_trusted(subscription.clone()),
        };
        let attempts = u32::try_from(attempts).map_err(StoreError::internal)?;
        let plan = plan_redelivery(&policy, attempts, now, None, random_jitter());
        if release(conn, &receipt, plan, rules::LEASE_EXPIRED, now).await? {
            ended += 1;
            if !wake.contains(&subscription) {
                wake.push(subscription);
            }
        }
    }
    Ok((ended, wake))
}

pub async fn redrive(
    conn: &mut SqliteConnection,
    subscription: &Name,
    message_ids: &[MessageId],
    now: Timestamp,
) -> Result<u64, StoreError> {
    if find_subscription(conn, subscription).await?.is_none() {
        return Err(rules::subscription_not_found(subscription));
    }
    let sql = "UPDATE deliveries SET state = 'PENDING', attempts = 0, next_attempt_at = ?, \
               lease_expires_at = NULL, updated_at = ? WHERE subscription = ? AND state = 'DEAD'";
    let result = if message_ids.is_empty() {
        sqlx::query(sql)
            .bind(now.as_millis())
            .bind(now.as_millis())
            .bind(subscription.as_str())
            .execute(&mut *conn)
            .await?
    } else {
        let ids: Vec<String> = message_ids.iter().map(ToString::to_string).collect();
        let ids = serde_json::to_string(&ids).map_err(StoreError::internal)?;
        sqlx::query(AssertSqlSafe(format!(
            "{sql} AND message_id IN (SELECT value FROM json_each(?))"
        )))
        .bind(now.as_millis())
        .bind(now.as_millis())
        .bind(subscription.as_str())
        .bind(ids)
        .execute(&mut *conn)
        .await?
    };
    Ok(result.rows_affected())
}
