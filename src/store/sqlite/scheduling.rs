//! The scheduler's queries: claiming and recording check-backs, recording failed pushes, and
//! deleting final messages. Writes run on the writer's connection inside the group
//! transaction, like `ops`; their UPDATEs still name the state (and attempt or generation)
//! they expect, as every backend must. Reads use the pool.

use std::time::Duration;

use rusqlite::{Connection, params};
use sqlx::SqlitePool;

use super::ops::{self, Wake, execute, query_all, query_one};
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

pub fn claim_due_checks(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
    hold: Duration,
) -> Result<Vec<DueCheck>, StoreError> {
    let due = query_all(
        conn,
        "SELECT m.id, m.producer, m.topic, m.key, m.headers, m.created_at, m.check_attempts, \
         c.endpoint, c.timeout_ms FROM messages m LEFT JOIN checkers c ON c.producer = m.producer \
         WHERE m.state = 'PREPARED' AND m.next_check_at <= ? ORDER BY m.next_check_at LIMIT ?",
        params![now.as_millis(), i64::from(limit)],
        |row| {
            let id: String = row.get("id")?;
            let producer = Name::from_trusted(row.get("producer")?);
            let headers: String = row.get("headers")?;
            let check_attempts: i64 = row.get("check_attempts")?;
            let endpoint: Option<String> = row.get("endpoint")?;
            let timeout_ms: Option<i64> = row.get("timeout_ms")?;
            let checker = endpoint.map(|endpoint| CheckerRegistration {
                producer: producer.clone(),
                endpoint,
                timeout: Duration::from_millis(
                    timeout_ms.and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
                ),
            });
            let check = DueCheck {
                message_id: rows::message_id(&id)?,
                producer,
                topic: Name::from_trusted(row.get("topic")?),
                key: MessageKey::from_trusted(row.get("key")?),
                headers: rows::headers_from_json(&headers)?,
                prepared_at: Timestamp::from_millis(row.get("created_at")?),
                attempt: u32::try_from(check_attempts + 1).map_err(StoreError::internal)?,
                checker,
            };
            Ok((id, check))
        },
    )?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, claimed): (Vec<String>, Vec<DueCheck>) = due.into_iter().unzip();
    execute(
        conn,
        "UPDATE messages SET next_check_at = ? \
         WHERE id IN (SELECT value FROM json_each(?)) AND state = 'PREPARED'",
        params![now.plus(hold).as_millis(), id_list(&ids)?],
    )?;
    Ok(claimed)
}

pub fn record_check(
    conn: &Connection,
    message_id: MessageId,
    attempt: u32,
    verdict: CheckVerdict,
    now: Timestamp,
) -> Result<(CheckRecorded, Wake), StoreError> {
    let id = message_id.to_string();
    let (state, recorded) = query_one(
        conn,
        "SELECT state, check_attempts FROM messages WHERE id = ?",
        [&id],
        |row| {
            let state = rows::message_state(&row.get::<_, String>("state")?)?;
            let recorded: i64 = row.get("check_attempts")?;
            Ok((state, recorded))
        },
    )?
    .ok_or_else(|| StoreError::NotFound(MessageRef::Id(message_id).to_string()))?;
    let previous = i64::from(attempt) - 1;
    if state != MessageState::Prepared || recorded != previous {
        return Ok((CheckRecorded::Stale(state), Vec::new()));
    }
    // The guard is repeated in each UPDATE, as a backend without a single writer needs it.
    const GUARD: &str = "WHERE id = ? AND state = 'PREPARED' AND check_attempts = ?";
    match verdict {
        CheckVerdict::Decided(decision) => {
            execute(
                conn,
                &format!("UPDATE messages SET check_attempts = ?, last_check_error = NULL {GUARD}"),
                params![i64::from(attempt), id, previous],
            )?;
            // Exactly what the producer's Confirm or Cancel does, routing included.
            let (state, wake) = ops::decide(conn, &MessageRef::Id(message_id), decision, now)?;
            Ok((CheckRecorded::Applied(state), wake))
        }
        CheckVerdict::RetryAt { at, error } => {
            execute(
                conn,
                &format!(
                    "UPDATE messages SET check_attempts = ?, next_check_at = ?, \
                     last_check_error = ?, updated_at = ? {GUARD}"
                ),
                params![
                    i64::from(attempt),
                    at.as_millis(),
                    error,
                    now.as_millis(),
                    id,
                    previous
                ],
            )?;
            Ok((CheckRecorded::Applied(MessageState::Prepared), Vec::new()))
        }
        CheckVerdict::GiveUp { error } => {
            execute(
                conn,
                &format!(
                    "UPDATE messages SET state = 'UNRESOLVED', check_attempts = ?, \
                     next_check_at = NULL, last_check_error = ?, updated_at = ? {GUARD}"
                ),
                params![i64::from(attempt), error, now.as_millis(), id, previous],
            )?;
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

pub fn fail_delivery(
    conn: &Connection,
    subscription: &Subscription,
    receipt: &Receipt,
    error: &str,
    now: Timestamp,
) -> Result<(Option<RedeliveryPlan>, Wake), StoreError> {
    let found = query_one(
        conn,
        "SELECT state, generation, attempts FROM deliveries WHERE subscription = ? AND message_id = ?",
        [
            receipt.subscription.as_str(),
            &receipt.message_id.to_string(),
        ],
        |row| rows::lease_state(row),
    )?;
    let Some((state, generation, attempts)) = found else {
        return Ok((None, Vec::new())); // deleted with its subscription meanwhile
    };
    if state != DeliveryState::Leased || generation != receipt.generation {
        return Ok((None, Vec::new()));
    }
    let plan = plan_redelivery(
        &subscription.retry_policy,
        attempts,
        now,
        None,
        random_jitter(),
    );
    ops::release(conn, receipt, plan, error, now)?;
    Ok((Some(plan), vec![receipt.subscription.to_string()]))
}

pub fn delete_final_messages(
    conn: &Connection,
    cutoff: Timestamp,
    limit: u32,
) -> Result<u64, StoreError> {
    let ids: Vec<String> = query_all(
        conn,
        "SELECT id FROM messages WHERE final_at IS NOT NULL AND final_at <= ? \
         ORDER BY final_at LIMIT ?",
        params![cutoff.as_millis(), i64::from(limit)],
        |row| Ok(row.get(0)?),
    )?;
    if ids.is_empty() {
        return Ok(0);
    }
    let ids = id_list(&ids)?;
    execute(
        conn,
        "DELETE FROM deliveries WHERE message_id IN (SELECT value FROM json_each(?))",
        [&ids],
    )?;
    execute(
        conn,
        "DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?)) \
         AND final_at IS NOT NULL AND final_at <= ?",
        params![ids, cutoff.as_millis()],
    )
}

pub async fn oldest_final_at(pool: &SqlitePool) -> Result<Option<Timestamp>, StoreError> {
    let oldest: Option<i64> =
        sqlx::query_scalar("SELECT MIN(final_at) FROM messages WHERE final_at IS NOT NULL")
            .fetch_one(pool)
            .await?;
    Ok(oldest.map(Timestamp::from_millis))
}
