//! The scheduler's queries: claiming and recording check-backs, recording failed pushes, and
//! deleting final messages. Writes run on the writer's connection inside the group
//! transaction, like `ops`; their UPDATEs still name the state (and attempt or generation)
//! they expect, as every backend must. Reads use the pool.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Row, SqliteConnection, SqlitePool};

use super::ops::{self, Wake};
use super::rows;
use crate::domain::{
    DeliveryState, MessageId, MessageKey, MessageRef, MessageState, Name, Receipt, RedeliveryPlan,
    Subscription, Timestamp, plan_redelivery, random_jitter,
};
use crate::store::{CheckRecorded, CheckVerdict, CheckerRegistration, DueCheck, StoreError};

/// A JSON array of ids, for `IN (SELECT value FROM json_each(?))`.
fn id_list(ids: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(ids).map_err(StoreError::internal)
}

pub async fn claim_due_checks(
    conn: &mut SqliteConnection,
    now: Timestamp,
    limit: u32,
    hold: Duration,
) -> Result<Vec<DueCheck>, StoreError> {
    let due = sqlx::query(
        "SELECT m.id, m.producer, m.topic, m.key, m.headers, m.created_at, m.check_attempts, \
         c.endpoint, c.timeout_ms FROM messages m LEFT JOIN checkers c ON c.producer = m.producer \
         WHERE m.state = 'PREPARED' AND m.next_check_at <= ? ORDER BY m.next_check_at LIMIT ?",
    )
    .bind(now.as_millis())
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let mut claimed = Vec::with_capacity(due.len());
    let mut ids = Vec::with_capacity(due.len());
    for row in &due {
        let id: String = row.try_get("id")?;
        let producer = Name::from_trusted(row.try_get("producer")?);
        let headers: String = row.try_get("headers")?;
        let check_attempts: i64 = row.try_get("check_attempts")?;
        let endpoint: Option<String> = row.try_get("endpoint")?;
        let timeout_ms: Option<i64> = row.try_get("timeout_ms")?;
        let checker = endpoint.map(|endpoint| CheckerRegistration {
            producer: producer.clone(),
            endpoint,
            timeout: Duration::from_millis(
                timeout_ms.and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
            ),
        });
        claimed.push(DueCheck {
            message_id: rows::message_id(&id)?,
            producer,
            topic: Name::from_trusted(row.try_get("topic")?),
            key: MessageKey::from_trusted(row.try_get("key")?),
            headers: rows::headers_from_json(&headers)?,
            prepared_at: Timestamp::from_millis(row.try_get("created_at")?),
            attempt: u32::try_from(check_attempts + 1).map_err(StoreError::internal)?,
            checker,
        });
        ids.push(id);
    }
    sqlx::query(
        "UPDATE messages SET next_check_at = ? \
         WHERE id IN (SELECT value FROM json_each(?)) AND state = 'PREPARED'",
    )
    .bind(now.plus(hold).as_millis())
    .bind(id_list(&ids)?)
    .execute(&mut *conn)
    .await?;
    Ok(claimed)
}

pub async fn record_check(
    conn: &mut SqliteConnection,
    message_id: MessageId,
    attempt: u32,
    verdict: CheckVerdict,
    now: Timestamp,
) -> Result<(CheckRecorded, Wake), StoreError> {
    let id = message_id.to_string();
    let row = sqlx::query("SELECT state, check_attempts FROM messages WHERE id = ?")
        .bind(&id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(MessageRef::Id(message_id).to_string()))?;
    let state = rows::message_state(&row.try_get::<String, _>("state")?)?;
    let recorded: i64 = row.try_get("check_attempts")?;
    let previous = i64::from(attempt) - 1;
    if state != MessageState::Prepared || recorded != previous {
        return Ok((CheckRecorded::Stale(state), Vec::new()));
    }
    // The guard is repeated in each UPDATE, as a backend without a single writer needs it.
    const GUARD: &str = "WHERE id = ? AND state = 'PREPARED' AND check_attempts = ?";
    match verdict {
        CheckVerdict::Decided(decision) => {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE messages SET check_attempts = ?, last_check_error = NULL {GUARD}"
            )))
            .bind(i64::from(attempt))
            .bind(&id)
            .bind(previous)
            .execute(&mut *conn)
            .await?;
            // Exactly what the producer's Confirm or Cancel does, routing included.
            let (state, wake) =
                ops::decide(conn, &MessageRef::Id(message_id), decision, now).await?;
            Ok((CheckRecorded::Applied(state), wake))
        }
        CheckVerdict::RetryAt { at, error } => {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE messages SET check_attempts = ?, next_check_at = ?, last_check_error = ?, \
                 updated_at = ? {GUARD}"
            )))
            .bind(i64::from(attempt))
            .bind(at.as_millis())
            .bind(error)
            .bind(now.as_millis())
            .bind(&id)
            .bind(previous)
            .execute(&mut *conn)
            .await?;
            Ok((CheckRecorded::Applied(MessageState::Prepared), Vec::new()))
        }
        CheckVerdict::GiveUp { error } => {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE messages SET state = 'UNRESOLVED', check_attempts = ?, next_check_at = NULL, \
                 last_check_error = ?, updated_at = ? {GUARD}"
            )))
            .bind(i64::from(attempt))
            .bind(error)
            .bind(now.as_millis())
            .bind(&id)
            .bind(previous)
            .execute(&mut *conn)
            .await?;
            Ok((CheckRecorded::Applied(MessageState::Unresolved), Vec::new()))
        }
    }
}

pub async fn next_check_due(pool: &SqlitePool) -> Result<Option<Timestamp>, StoreError> {
    let due: Option<i64> =
        sqlx::query_scalar("SELECT MIN(next_check_at) FROM messages WHERE state = 'PREPARED'")
            .fetch_one(pool)
            .await?;
    Ok(due.map(Timestamp::from_millis))
}

pub async fn fail_delivery(
    conn: &mut SqliteConnection,
    subscription: &Subscription,
    receipt: &Receipt,
    error: &str,
    now: Timestamp,
) -> Result<(Option<RedeliveryPlan>, Wake), StoreError> {
    let row = sqlx::query(
        "SELECT state, generation, attempts FROM deliveries WHERE subscription = ? AND message_id = ?",
    )
    .bind(receipt.subscription.as_str())
    .bind(receipt.message_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok((None, Vec::new())); // deleted with its subscription meanwhile
    };
    let state = rows::delivery_state(&row.try_get::<String, _>("state")?)?;
    let generation: i64 = row.try_get("generation")?;
    if state != DeliveryState::Leased || generation != i64::from(receipt.generation) {
        return Ok((None, Vec::new()));
    }
    let attempts =
        u32::try_from(row.try_get::<i64, _>("attempts")?).map_err(StoreError::internal)?;
    let plan = plan_redelivery(
        &subscription.retry_policy,
        attempts,
        now,
        None,
        random_jitter(),
    );
    let (state, next_attempt_at) = match plan {
        RedeliveryPlan::RetryAt(at) => (DeliveryState::Pending, Some(at.as_millis())),
        RedeliveryPlan::Dead => (DeliveryState::Dead, None),
    };
    sqlx::query(
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
    .bind(generation)
    .execute(&mut *conn)
    .await?;
    Ok((Some(plan), vec![receipt.subscription.to_string()]))
}

pub async fn delete_final_messages(
    conn: &mut SqliteConnection,
    cutoff: Timestamp,
    limit: u32,
) -> Result<u64, StoreError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE final_at IS NOT NULL AND final_at <= ? \
         ORDER BY final_at LIMIT ?",
    )
    .bind(cutoff.as_millis())
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let ids = id_list(&ids)?;
    sqlx::query("DELETE FROM deliveries WHERE message_id IN (SELECT value FROM json_each(?))")
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    let deleted = sqlx::query(
        "DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?)) \
         AND final_at IS NOT NULL AND final_at <= ?",
    )
    .bind(&ids)
    .bind(cutoff.as_millis())
    .execute(&mut *conn)
    .await?;
    Ok(deleted.rows_affected())
}

pub async fn oldest_final_at(pool: &SqlitePool) -> Result<Option<Timestamp>, StoreError> {
    let oldest: Option<i64> =
        sqlx::query_scalar("SELECT MIN(final_at) FROM messages WHERE final_at IS NOT NULL")
            .fetch_one(pool)
            .await?;
    Ok(oldest.map(Timestamp::from_millis))
}
