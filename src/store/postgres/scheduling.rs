//! The scheduler's queries on PostgreSQL: claiming and recording check-backs, recording failed
//! pushes, and deleting final messages. Several replicas run these loops at once: claims and
//! sweeps skip rows another transaction holds (`FOR UPDATE SKIP LOCKED`), and single-row
//! compare-and-sets lock their row, so no two replicas check, record or delete the same thing.

use std::time::Duration;

use sqlx::PgConnection;

use super::rows::{self, Columns};
use super::{events, leases, ops};
use crate::domain::{
    DeliveryState, DueCheck, MessageId, MessageRef, MessageState, Receipt, RedeliveryPlan,
    Subscription, Timestamp, plan_redelivery, random_jitter,
};
use crate::store::history::{DecidedBy, EventKind, NewEvent};
use crate::store::{CheckRecorded, CheckVerdict, Effects, StoreError, Written};

/// Claims due checks: the same statement that picks them moves their `next_check_at` to
/// `now + hold`, skipping messages another replica is claiming or deciding right now.
pub async fn claim_due_checks(
    conn: &mut PgConnection,
    now: Timestamp,
    limit: u32,
    hold: Duration,
) -> Written<Vec<DueCheck>> {
    let claimed = sqlx::query(
        "WITH due AS MATERIALIZED ( \
           SELECT id, next_check_at FROM messages \
           WHERE state = 'PREPARED' AND next_check_at <= $1 \
           ORDER BY next_check_at, id LIMIT $2 \
           FOR NO KEY UPDATE SKIP LOCKED), \
         claimed AS ( \
           UPDATE messages m SET next_check_at = $3 FROM due \
           WHERE m.id = due.id AND m.state = 'PREPARED' \
           RETURNING m.id, m.producer, m.topic, m.key, m.headers, m.created_at, \
             m.check_attempts, m.traceparent, m.tracestate, due.next_check_at AS due_at) \
         SELECT claimed.*, c.endpoint, c.timeout_ms FROM claimed \
         LEFT JOIN checkers c ON c.producer = claimed.producer \
         ORDER BY claimed.due_at, claimed.id",
    )
    // Planned with this call's values: a generic plan guesses a large LIMIT and hashes
    // the whole table instead of fetching the claimed rows by key.
    .persistent(false)
    .bind(now.as_millis())
    .bind(i64::from(limit))
    .bind(now.plus(hold).as_millis())
    .fetch_all(&mut *conn)
    .await?;
    let claimed = claimed
        .iter()
        .map(rows::due_check)
        .collect::<Result<_, StoreError>>()?;
    Ok((claimed, Effects::none()))
}

/// Records check number `attempt` as a compare-and-set on `state = PREPARED AND
/// check_attempts = attempt - 1`, under the message's row lock: a racing Confirm, Cancel,
/// Resolve or another replica's record of the same attempt either happened before (and this
/// answers Stale) or waits for this one.
pub async fn record_check(
    conn: &mut PgConnection,
    message_id: MessageId,
    attempt: u32,
    verdict: &CheckVerdict,
    now: Timestamp,
) -> Written<CheckRecorded> {
    let row =
        sqlx::query("SELECT state, check_attempts FROM messages WHERE id = $1 FOR NO KEY UPDATE")
            .bind(message_id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| StoreError::NotFound(MessageRef::Id(message_id).to_string()))?;
    let state = rows::message_state(&row.text("state")?)?;
    let previous = i64::from(attempt) - 1;
    if state != MessageState::Prepared || row.int("check_attempts")? != previous {
        return Ok((CheckRecorded::Stale(state), Effects::none()));
    }
    const GUARD: &str = "WHERE id = $1 AND state = 'PREPARED' AND check_attempts = $2";
    events::record(conn, &NewEvent::check(message_id, attempt, verdict, now)).await?;
    match verdict {
        CheckVerdict::Decided(decision) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE messages SET check_attempts = $3, last_check_error = NULL {GUARD}"
            )))
            .bind(message_id.as_uuid())
            .bind(previous)
            .bind(i64::from(attempt))
            .execute(&mut *conn)
            .await?;
            // Exactly what the producer's Confirm or Cancel does, routing included.
            let message = MessageRef::Id(message_id);
            let ((state, _), effects) =
                ops::decide_as(conn, &message, *decision, DecidedBy::Checker, now).await?;
            Ok((CheckRecorded::Applied(state), effects))
        }
        CheckVerdict::RetryAt { at, error } => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE messages SET check_attempts = $3, next_check_at = $4, \
                 last_check_error = $5, updated_at = $6 {GUARD}"
            )))
            .bind(message_id.as_uuid())
            .bind(previous)
            .bind(i64::from(attempt))
            .bind(at.as_millis())
            .bind(error)
            .bind(now.as_millis())
            .execute(&mut *conn)
            .await?;
            // The check loop may be sleeping until the claim's hold, after `at`.
            let effects = Effects::check_due(*at);
            Ok((CheckRecorded::Applied(MessageState::Prepared), effects))
        }
        CheckVerdict::GiveUp { error } => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE messages SET state = 'UNRESOLVED', check_attempts = $3, \
                 next_check_at = NULL, last_check_error = $4, updated_at = $5 {GUARD}"
            )))
            .bind(message_id.as_uuid())
            .bind(previous)
            .bind(i64::from(attempt))
            .bind(error)
            .bind(now.as_millis())
            .execute(&mut *conn)
            .await?;
            let state = MessageState::Unresolved;
            Ok((CheckRecorded::Applied(state), Effects::none()))
        }
    }
}

/// Ends a lease after a failed push, as a compare-and-set on the lease's state and generation
/// under the delivery's row lock.
pub async fn fail_delivery(
    conn: &mut PgConnection,
    subscription: &Subscription,
    receipt: &Receipt,
    error: &str,
    now: Timestamp,
) -> Written<Option<RedeliveryPlan>> {
    let row = sqlx::query(
        "SELECT state, generation, attempts FROM deliveries \
         WHERE subscription = $1 AND message_id = $2 FOR UPDATE",
    )
    .bind(receipt.subscription.as_str())
    .bind(receipt.message_id.as_uuid())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok((None, Effects::none())); // deleted with its subscription meanwhile
    };
    let (state, generation, attempts) = rows::lease_state(&row)?;
    if state != DeliveryState::Leased || generation != receipt.generation {
        return Ok((None, Effects::none()));
    }
    let plan = plan_redelivery(
        &subscription.retry_policy,
        attempts,
        now,
        None,
        random_jitter(),
    );
    match leases::release(conn, receipt, plan, (EventKind::PushFailed, error), now).await? {
        Some(effects) => Ok((Some(plan), effects)),
        None => Ok((None, Effects::none())),
    }
}

/// Deletes up to `limit` messages final since `cutoff`, oldest first, with their final
/// moments; their deliveries go with them (foreign key). Messages another replica is deleting
/// right now are skipped.
pub async fn delete_final_messages(
    conn: &mut PgConnection,
    cutoff: Timestamp,
    limit: u32,
) -> Written<u64> {
    let deleted = sqlx::query(
        "WITH doomed AS MATERIALIZED ( \
           SELECT message_id FROM final_messages WHERE final_at <= $1 \
           ORDER BY final_at, message_id LIMIT $2 FOR UPDATE SKIP LOCKED), \
         forgotten AS ( \
           DELETE FROM final_messages f USING doomed WHERE f.message_id = doomed.message_id \
           RETURNING f.message_id) \
         DELETE FROM messages m USING forgotten WHERE m.id = forgotten.message_id",
    )
    // Planned with this call's values: a generic plan guesses a large LIMIT and hashes
    // the whole table instead of fetching the claimed rows by key.
    .persistent(false)
    .bind(cutoff.as_millis())
    .bind(i64::from(limit))
    .execute(&mut *conn)
    .await?;
    Ok((deleted.rows_affected(), Effects::none()))
}
