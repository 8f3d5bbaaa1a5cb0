//! Write operations, each inside the caller's transaction (READ COMMITTED). Unlike SQLite's
//! single writer, other replicas write at the same time, so every read that a write depends
//! on locks its rows first (`FOR UPDATE`, or `FOR UPDATE SKIP LOCKED` for claims that may
//! take any due row), and every UPDATE still names the state and generation it expects.
//! Locks are taken in key order where one transaction takes several, so two never deadlock.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};
use uuid::Uuid;

use super::rows::{self, Columns, SUBSCRIPTION_COLUMNS, headers_to_json, millis};
use crate::domain::{
    AckVerdict, Decision, DeliveryState, LeaseCheck, MessageId, MessageKey, MessageRef,
    MessageState, Name, Receipt, RedeliveryPlan, Subscription, Timestamp, Transition, classify_ack,
    decide as decide_transition, plan_redelivery, random_jitter,
};
use crate::store::{
    AckStatus, CheckerRegistration, ExpiredLeases, InsertOutcome, LeasedDelivery, NewMessage,
    StoreError, rules,
};

/// Subscriptions whose waiters should wake once the write commits.
pub type Wake = Vec<String>;

/// How often a write that lost a race to a concurrent delete looks again.
const RACE_ATTEMPTS: usize = 3;

pub async fn create_subscription(
    conn: &mut PgConnection,
    subscription: &Subscription,
) -> Result<(Subscription, bool), StoreError> {
    let policy = &subscription.retry_policy;
    for _ in 0..RACE_ATTEMPTS {
        // Insert first: of two replicas creating the same name, exactly one inserts.
        let inserted = sqlx::query(
            "INSERT INTO subscriptions (name, topic, ack_deadline_ms, max_attempts, \
             initial_backoff_ms, max_backoff_ms, multiplier, push_endpoint, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (name) DO NOTHING",
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
        if inserted.rows_affected() == 1 {
            return Ok((subscription.clone(), true));
        }
        match find_subscription(conn, &subscription.name, false).await? {
            Some(existing) if existing.same_config(subscription) => return Ok((existing, false)),
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
) -> Result<(Subscription, Wake), StoreError> {
    let existing = find_subscription(conn, &subscription.name, true)
        .await?
        .ok_or_else(|| rules::subscription_not_found(&subscription.name))?;
    if existing.topic != subscription.topic {
        return Err(rules::topic_is_immutable(&existing.name, &existing.topic));
    }
    let policy = &subscription.retry_policy;
    sqlx::query(
        "UPDATE subscriptions SET ack_deadline_ms = $1, max_attempts = $2, \
         initial_backoff_ms = $3, max_backoff_ms = $4, multiplier = $5, push_endpoint = $6 \
         WHERE name = $7",
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
        ..subscription.clone()
    };
    let wake = vec![updated.name.to_string()];
    Ok((updated, wake))
}

pub async fn delete_subscription(conn: &mut PgConnection, name: &Name) -> Result<(), StoreError> {
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
    Ok(())
}

async fn find_subscription(
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
        "SELECT id, topic, payload, headers, state FROM messages WHERE producer = $1 AND key = $2",
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
) -> Result<(InsertOutcome, Wake), StoreError> {
    let headers = headers_to_json(&message.headers);
    if let Some(outcome) = existing_message(conn, message, &headers).await? {
        return Ok((outcome, Vec::new()));
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
    let (state, next_check_at, decided_at) = if message.publish {
        (MessageState::Confirmed, None, Some(now))
    } else {
        let check_at = message.now.plus(message.check_after).as_millis();
        (MessageState::Prepared, Some(check_at), None)
    };
    // Of two replicas inserting the same producer key at once, one inserts; the other waits
    // for it to commit, inserts nothing, and answers with the winner's message.
    let inserted = sqlx::query(
        "INSERT INTO messages (id, producer, topic, key, payload, headers, state, \
         deliver_after_ms, created_at, updated_at, decided_at, next_check_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
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
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        let outcome = existing_message(conn, message, &headers)
            .await?
            .ok_or_else(|| {
                // Inserted and deleted again in between: only retention deletes messages.
                StoreError::internal("a message with this producer key vanished while inserting")
            })?;
        return Ok((outcome, Vec::new()));
    }
    let wake = if message.publish {
        let due = message.now.plus(message.deliver_after);
        route(conn, message.id, &message.topic, due, message.now).await?
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
/// records how many there were (0: unrouted). The subscriptions are share-locked, so one
/// being deleted right now is either gone already or deleted after this commits, with its
/// deliveries.
async fn route(
    conn: &mut PgConnection,
    id: MessageId,
    topic: &Name,
    due: Timestamp,
    now: Timestamp,
) -> Result<Wake, StoreError> {
    let mut subscriptions: Vec<String> = sqlx::query_scalar(
        "WITH targets AS (SELECT name FROM subscriptions WHERE topic = $1 ORDER BY name FOR SHARE) \
         INSERT INTO deliveries (subscription, message_id, state, next_attempt_at, updated_at) \
         SELECT name, $2, 'PENDING', $3, $4 FROM targets RETURNING subscription",
    )
    .bind(topic.as_str())
    .bind(id.as_uuid())
    .bind(due.as_millis())
    .bind(now.as_millis())
    .fetch_all(&mut *conn)
    .await?;
    subscriptions.sort();
    sqlx::query("UPDATE messages SET routed = $1 WHERE id = $2")
        .bind(subscriptions.len() as i64)
        .bind(id.as_uuid())
        .execute(&mut *conn)
        .await?;
    if subscriptions.is_empty() {
        tracing::warn!(message_id = %id, %topic, "confirmed message has no subscription: unrouted");
    }
    Ok(subscriptions)
}

/// Finds and locks a message by id or producer key: its id, topic, state and delivery delay.
async fn locate(
    conn: &mut PgConnection,
    message: &MessageRef,
) -> Result<(MessageId, Name, MessageState, Duration), StoreError> {
    let query = match message {
        MessageRef::Id(id) => sqlx::query(
            "SELECT id, topic, state, deliver_after_ms FROM messages WHERE id = $1 \
             FOR NO KEY UPDATE",
        )
        .bind(id.as_uuid()),
        MessageRef::ProducerKey { producer, key } => sqlx::query(
            "SELECT id, topic, state, deliver_after_ms FROM messages \
             WHERE producer = $1 AND key = $2 FOR NO KEY UPDATE",
        )
        .bind(producer.as_str())
        .bind(key.as_str()),
    };
    let row = query
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(message.to_string()))?;
    Ok((
        row.id("id")?,
        Name::from_trusted(row.text("topic")?),
        rows::message_state(&row.text("state")?)?,
        Duration::from_millis(u64::try_from(row.int("deliver_after_ms")?).unwrap_or(0)),
    ))
}

pub async fn decide(
    conn: &mut PgConnection,
    message: &MessageRef,
    decision: Decision,
    now: Timestamp,
) -> Result<(MessageState, Wake), StoreError> {
    // The row lock makes a racing Confirm, Cancel, Resolve or check result wait and then see
    // this decision: exactly one of them moves the message.
    let (id, topic, current, deliver_after) = locate(conn, message).await?;
    let target = match decide_transition(current, decision) {
        Transition::To(target) => target,
        Transition::AlreadyThere(state) => return Ok((state, Vec::new())),
        Transition::Contradicts(current) => return Err(StoreError::MessageConflict { current }),
    };
    let changed = sqlx::query(
        "UPDATE messages SET state = $1, updated_at = $2, decided_at = $2, next_check_at = NULL \
         WHERE id = $3 AND state = $4",
    )
    .bind(target.as_str())
    .bind(now.as_millis())
    .bind(id.as_uuid())
    .bind(current.as_str())
    .execute(&mut *conn)
    .await?;
    if changed.rows_affected() == 0 {
        return Err(StoreError::internal("message changed under its row lock"));
    }
    let wake = if target == MessageState::Confirmed {
        route(conn, id, &topic, now.plus(deliver_after), now).await?
    } else {
        Vec::new()
    };
    Ok((target, wake))
}

pub async fn register_checker(
    conn: &mut PgConnection,
    checker: &CheckerRegistration,
    now: Timestamp,
) -> Result<(), StoreError> {
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
    Ok(())
}

/// Claims up to `max` due deliveries in one statement. Rows another transaction holds (a
/// replica leasing, acking or expiring them right now) are skipped, not waited for; the rows
/// it claims stay locked until it commits, and the UPDATE finds them by primary key and the
/// generation it locked, so no two replicas ever lease the same delivery. (Matching on
/// `state` there instead let the planner, on a table without statistics yet, look each row
/// up through the due index, reading every pending row of the subscription per claimed row.)
///
/// One statement, so it commits on its own. With `announce`, it also tells the other
/// replicas that this one made leases (an empty payload), if it made any.
pub async fn lease(
    conn: &mut PgConnection,
    subscription: &Subscription,
    max: u32,
    now: Timestamp,
    announce: bool,
) -> Result<Vec<LeasedDelivery>, StoreError> {
    let lease_expires_at = now.plus(subscription.ack_deadline);
    let claimed = sqlx::query(
        "WITH due AS MATERIALIZED ( \
           SELECT subscription, message_id, generation, next_attempt_at FROM deliveries \
           WHERE subscription = $1 AND state = 'PENDING' AND next_attempt_at <= $2 \
           ORDER BY next_attempt_at, message_id LIMIT $3 \
           FOR UPDATE SKIP LOCKED) \
         UPDATE deliveries d SET state = 'LEASED', attempts = d.attempts + 1, \
           generation = d.generation + 1, lease_expires_at = $4, next_attempt_at = NULL, \
           updated_at = $2 \
         FROM due JOIN messages m ON m.id = due.message_id \
         WHERE d.subscription = due.subscription AND d.message_id = due.message_id \
           AND d.generation = due.generation \
         RETURNING d.message_id, d.attempts, d.generation, due.next_attempt_at AS due_at, \
           m.producer, m.topic, m.key, m.payload, m.headers, m.decided_at, \
           CASE WHEN $5 THEN pg_notify($6, $7) END AS announced",
    )
    // Planned with this call's values: a generic plan guesses a large LIMIT and hashes
    // the whole table instead of fetching the claimed rows by key.
    .persistent(false)
    .bind(subscription.name.as_str())
    .bind(now.as_millis())
    .bind(i64::from(max))
    .bind(lease_expires_at.as_millis())
    .bind(announce)
    .bind(super::CHANNEL)
    // One per leased row; PostgreSQL sends identical notifications of a transaction once.
    .bind(super::DEADLINES_CHANGED)
    .fetch_all(&mut *conn)
    .await?;
    let mut leased = Vec::with_capacity(claimed.len());
    for row in &claimed {
        let leased_delivery = LeasedDelivery {
            receipt: Receipt {
                message_id: row.id("message_id")?,
                generation: u32::try_from(row.int("generation")?).map_err(StoreError::internal)?,
                subscription: subscription.name.clone(),
            },
            topic: Name::from_trusted(row.text("topic")?),
            producer: Name::from_trusted(row.text("producer")?),
            key: MessageKey::from_trusted(row.text("key")?),
            payload: row.try_get("payload")?,
            headers: rows::headers_from_json(&row.text("headers")?)?,
            attempt: u32::try_from(row.int("attempts")?).map_err(StoreError::internal)?,
            published_at: Timestamp::from_millis(row.opt_int("decided_at")?.unwrap_or_default()),
            lease_expires_at,
        };
        leased.push((row.int("due_at")?, leased_delivery));
    }
    // RETURNING has no order: hand them out oldest due first, as SQLite does.
    leased.sort_by(|(a_due, a), (b_due, b)| {
        (a_due, a.receipt.message_id).cmp(&(b_due, b.receipt.message_id))
    });
    Ok(leased.into_iter().map(|(_, delivery)| delivery).collect())
}

/// Locks one delivery and returns its state, generation and attempts, if it exists.
async fn lock_delivery(
    conn: &mut PgConnection,
    receipt: &Receipt,
) -> Result<Option<(DeliveryState, u32, u32)>, StoreError> {
    let row = sqlx::query(
        "SELECT state, generation, attempts FROM deliveries \
         WHERE subscription = $1 AND message_id = $2 FOR UPDATE",
    )
    .bind(receipt.subscription.as_str())
    .bind(receipt.message_id.as_uuid())
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(rows::lease_state).transpose()
}

type DeliveryKey = (String, MessageId);

/// Acks a batch of receipts in one statement. It locks every named delivery in key order
/// (two batches never deadlock), then the messages those acks may finish, in id order
/// (`courier_mark_final_if_done` locks them; acks of one message on two subscriptions queue up
/// instead of deadlocking), then acks each delivery its receipt still holds. Each receipt is
/// judged in the caller's order against the states it locked, as the UPDATE judged it.
pub async fn ack(
    conn: &mut PgConnection,
    receipts: &[Receipt],
    now: Timestamp,
) -> Result<Vec<AckStatus>, StoreError> {
    if receipts.is_empty() {
        return Ok(Vec::new());
    }
    let subscriptions: Vec<&str> = receipts.iter().map(|r| r.subscription.as_str()).collect();
    let ids: Vec<Uuid> = receipts.iter().map(|r| r.message_id.as_uuid()).collect();
    let generations: Vec<i64> = receipts.iter().map(|r| i64::from(r.generation)).collect();
    let locked = sqlx::query(
        "WITH acks AS ( \
           SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[]) \
             AS a(subscription, message_id, generation)), \
         held AS ( \
           SELECT d.subscription, d.message_id, d.state, d.generation, d.attempts \
           FROM deliveries d \
           WHERE (d.subscription, d.message_id) IN (SELECT subscription, message_id FROM acks) \
           ORDER BY d.subscription, d.message_id FOR UPDATE), \
         finishing AS ( \
           SELECT id FROM messages WHERE id IN ( \
             SELECT h.message_id FROM held h JOIN acks a \
               ON a.subscription = h.subscription AND a.message_id = h.message_id \
             WHERE h.state <> 'ACKED' AND h.generation = a.generation) \
           ORDER BY id FOR NO KEY UPDATE), \
         acked AS ( \
           UPDATE deliveries d SET state = 'ACKED', lease_expires_at = NULL, \
             next_attempt_at = NULL, updated_at = $4 \
           FROM acks a \
           WHERE d.subscription = a.subscription AND d.message_id = a.message_id \
             AND d.generation = a.generation AND d.state <> 'ACKED' \
             AND (SELECT count(*) FROM finishing) >= 0 \
           RETURNING d.message_id) \
         SELECT subscription, message_id, state, generation, attempts FROM held",
    )
    .bind(&subscriptions)
    .bind(&ids)
    .bind(&generations)
    .bind(now.as_millis())
    .fetch_all(&mut *conn)
    .await?;
    let mut current: HashMap<DeliveryKey, (DeliveryState, u32)> = HashMap::new();
    for row in &locked {
        let (state, generation, _) = rows::lease_state(row)?;
        current.insert(
            (row.text("subscription")?, row.id("message_id")?),
            (state, generation),
        );
    }
    let statuses = receipts
        .iter()
        .map(|receipt| {
            let key = (receipt.subscription.to_string(), receipt.message_id);
            match classify_ack(current.get(&key).copied(), receipt.generation) {
                AckVerdict::Acknowledge => {
                    current.insert(key, (DeliveryState::Acked, receipt.generation));
                    AckStatus::Ok
                }
                AckVerdict::AlreadyAcked => AckStatus::Ok,
                AckVerdict::LeaseLost => AckStatus::LeaseLost,
                AckVerdict::NotFound => AckStatus::NotFound,
            }
        })
        .collect();
    Ok(statuses)
}

/// Moves a leased delivery to PENDING at `plan`'s time or to DEAD, guarded by its generation.
async fn release(
    conn: &mut PgConnection,
    receipt: &Receipt,
    plan: RedeliveryPlan,
    error: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let (state, next_attempt_at) = plan_columns(plan);
    let changed = sqlx::query(
        "UPDATE deliveries SET state = $1, next_attempt_at = $2, lease_expires_at = NULL, \
         last_error = $3, updated_at = $4 \
         WHERE subscription = $5 AND message_id = $6 AND generation = $7 AND state = 'LEASED'",
    )
    .bind(state.as_str())
    .bind(next_attempt_at)
    .bind(error)
    .bind(now.as_millis())
    .bind(receipt.subscription.as_str())
    .bind(receipt.message_id.as_uuid())
    .bind(i64::from(receipt.generation))
    .execute(&mut *conn)
    .await?;
    Ok(changed.rows_affected() == 1)
}

fn plan_columns(plan: RedeliveryPlan) -> (DeliveryState, Option<i64>) {
    match plan {
        RedeliveryPlan::RetryAt(at) => (DeliveryState::Pending, Some(at.as_millis())),
        RedeliveryPlan::Dead => (DeliveryState::Dead, None),
    }
}

pub async fn nack(
    conn: &mut PgConnection,
    receipt: &Receipt,
    delay: Option<Duration>,
    now: Timestamp,
) -> Result<(Option<RedeliveryPlan>, Wake), StoreError> {
    let (check, attempts) = rules::held_lease(lock_delivery(conn, receipt).await?, receipt)?;
    if check != LeaseCheck::Held {
        // already released by this receipt: an idempotent repeat
        return Ok((None, Vec::new()));
    }
    let subscription = find_subscription(conn, &receipt.subscription, false)
        .await?
        .ok_or_else(|| rules::subscription_not_found(&receipt.subscription))?;
    let plan = plan_redelivery(
        &subscription.retry_policy,
        attempts,
        now,
        delay,
        random_jitter(),
    );
    if !release(conn, receipt, plan, rules::NACKED, now).await? {
        return Ok((None, Vec::new()));
    }
    Ok((Some(plan), vec![receipt.subscription.to_string()]))
}

pub async fn extend_lease(
    conn: &mut PgConnection,
    receipt: &Receipt,
    extension: Duration,
    now: Timestamp,
) -> Result<Timestamp, StoreError> {
    let (check, _) = rules::held_lease(lock_delivery(conn, receipt).await?, receipt)?;
    if let LeaseCheck::Released(current) = check {
        return Err(StoreError::LeaseLost { current });
    }
    let lease_expires_at = now.plus(extension);
    sqlx::query(
        "UPDATE deliveries SET lease_expires_at = $1, updated_at = $2 \
         WHERE subscription = $3 AND message_id = $4 AND generation = $5 AND state = 'LEASED'",
    )
    .bind(lease_expires_at.as_millis())
    .bind(now.as_millis())
    .bind(receipt.subscription.as_str())
    .bind(receipt.message_id.as_uuid())
    .bind(i64::from(receipt.generation))
    .execute(&mut *conn)
    .await?;
    Ok(lease_expires_at)
}

pub async fn reject(
    conn: &mut PgConnection,
    receipt: &Receipt,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (check, _) = rules::held_lease(lock_delivery(conn, receipt).await?, receipt)?;
    if check == LeaseCheck::Released(DeliveryState::Dead) {
        return Ok(());
    }
    // Held, or unleased again after an expiry or Nack and not leased by anyone since: still
    // rejectable.
    sqlx::query(
        "UPDATE deliveries SET state = 'DEAD', next_attempt_at = NULL, lease_expires_at = NULL, \
         last_error = $1, updated_at = $2 \
         WHERE subscription = $3 AND message_id = $4 AND generation = $5 \
           AND state IN ('LEASED', 'PENDING')",
    )
    .bind(rules::rejected(reason))
    .bind(now.as_millis())
    .bind(receipt.subscription.as_str())
    .bind(receipt.message_id.as_uuid())
    .bind(i64::from(receipt.generation))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Ends up to [`rules::EXPIRY_BATCH`] expired leases. The sweep locks the leases it ends and
/// skips those another transaction holds (an Ack in flight, another replica's sweep); its
/// UPDATE re-checks state and generation, so a lease acked or renewed meanwhile stays alone.
pub async fn expire_leases(
    conn: &mut PgConnection,
    now: Timestamp,
) -> Result<(ExpiredLeases, Wake), StoreError> {
    let expired = sqlx::query(
        "SELECT d.subscription, d.message_id, d.attempts, d.generation, s.max_attempts, \
         s.initial_backoff_ms, s.max_backoff_ms, s.multiplier \
         FROM deliveries d JOIN subscriptions s ON s.name = d.subscription \
         WHERE d.state = 'LEASED' AND d.lease_expires_at <= $1 \
         ORDER BY d.lease_expires_at LIMIT $2 FOR UPDATE OF d SKIP LOCKED",
    )
    // Planned with this call's values: a generic plan guesses a large LIMIT and hashes
    // the whole table instead of fetching the claimed rows by key.
    .persistent(false)
    .bind(now.as_millis())
    .bind(rules::EXPIRY_BATCH)
    .fetch_all(&mut *conn)
    .await?;
    if expired.is_empty() {
        return Ok((ExpiredLeases::default(), Vec::new()));
    }
    let mut plans = ExpiryPlans::default();
    for row in &expired {
        plans.push(row, now)?;
    }
    let ended: Vec<(String, String)> = sqlx::query_as(
        "UPDATE deliveries d SET state = e.state, next_attempt_at = e.next_attempt_at, \
         lease_expires_at = NULL, last_error = $6, updated_at = $7 \
         FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::text[], $5::bigint[]) \
           AS e(subscription, message_id, generation, state, next_attempt_at) \
         WHERE d.subscription = e.subscription AND d.message_id = e.message_id \
           AND d.generation = e.generation AND d.state = 'LEASED' \
         RETURNING d.subscription, d.state",
    )
    .bind(&plans.subscriptions)
    .bind(&plans.ids)
    .bind(&plans.generations)
    .bind(&plans.states)
    .bind(&plans.next_attempt_at)
    .bind(rules::LEASE_EXPIRED)
    .bind(now.as_millis())
    .fetch_all(&mut *conn)
    .await?;
    // RETURNING answers the rows this UPDATE changed, with their new state.
    let mut outcome = ExpiredLeases::default();
    let mut wake: Wake = Vec::with_capacity(ended.len());
    for (subscription, state) in ended {
        outcome.count(&subscription, state == DeliveryState::Dead.as_str());
        wake.push(subscription);
    }
    wake.sort();
    wake.dedup();
    Ok((outcome, wake))
}

/// Where each expired lease goes, as columns for one bulk UPDATE.
#[derive(Default)]
struct ExpiryPlans {
    subscriptions: Vec<String>,
    ids: Vec<Uuid>,
    generations: Vec<i64>,
    states: Vec<&'static str>,
    next_attempt_at: Vec<Option<i64>>,
}

impl ExpiryPlans {
    fn push(&mut self, row: &PgRow, now: Timestamp) -> Result<(), StoreError> {
        let policy = rows::retry_policy(row)?;
        let attempts = u32::try_from(row.int("attempts")?).map_err(StoreError::internal)?;
        let plan = plan_redelivery(&policy, attempts, now, None, random_jitter());
        let (state, next_attempt_at) = plan_columns(plan);
        self.subscriptions.push(row.text("subscription")?);
        self.ids.push(row.id("message_id")?.as_uuid());
        self.generations.push(row.int("generation")?);
        self.states.push(state.as_str());
        self.next_attempt_at.push(next_attempt_at);
        Ok(())
    }
}

pub async fn redrive(
    conn: &mut PgConnection,
    subscription: &Name,
    message_ids: &[MessageId],
    now: Timestamp,
) -> Result<u64, StoreError> {
    if find_subscription(conn, subscription, false)
        .await?
        .is_none()
    {
        return Err(rules::subscription_not_found(subscription));
    }
    let sql = "UPDATE deliveries SET state = 'PENDING', attempts = 0, next_attempt_at = $1, \
               lease_expires_at = NULL, updated_at = $1 WHERE subscription = $2 AND state = 'DEAD'";
    let result = if message_ids.is_empty() {
        sqlx::query(sql)
            .bind(now.as_millis())
            .bind(subscription.as_str())
            .execute(&mut *conn)
            .await?
    } else {
        let ids: Vec<Uuid> = message_ids.iter().map(MessageId::as_uuid).collect();
        sqlx::query(AssertSqlSafe(format!("{sql} AND message_id = ANY($3)")))
            .bind(now.as_millis())
            .bind(subscription.as_str())
            .bind(ids)
            .execute(&mut *conn)
            .await?
    };
    Ok(result.rows_affected())
}
