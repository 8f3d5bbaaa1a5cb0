//! The scheduler's queries: claiming and recording check-backs, recording failed pushes, and
//! deleting final messages. Writes run on the writer's connection inside the group
//! transaction, like `ops`; their UPDATEs still name the state (and attempt or generation)
//! they expect, as every backend must. Reads use the pool.

use std::time::Duration;

use rusqlite::{Connection, params};

use super::ops::{self, execute, query_all, query_one};
use super::rows::{self, Columns};
use super::{events, leases};
use crate::domain::{
    DeliveryState, DueCheck, MessageId, MessageRef, MessageState, Receipt, RedeliveryPlan,
    Subscription, Timestamp, plan_redelivery, random_jitter,
};
use crate::store::history::{DecidedBy, EventKind, NewEvent};
use crate::store::{CheckRecorded, CheckVerdict, Effects, StoreError, Written};

/// A JSON array of ids, for `IN (SELECT value FROM json_each(?))`.
fn id_list(ids: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(ids).map_err(StoreError::internal)
}

pub fn claim_due_checks(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
    hold: Duration,
) -> Written<Vec<DueCheck>> {
    let due = query_all(
        conn,
        "SELECT m.id, m.producer, m.topic, m.key, m.headers, m.created_at, m.check_attempts, \
         m.traceparent, m.tracestate, \
         c.endpoint, c.timeout_ms FROM messages m LEFT JOIN checkers c ON c.producer = m.producer \
         WHERE m.state = 'PREPARED' AND m.next_check_at <= ? ORDER BY m.next_check_at LIMIT ?",
        params![now.as_millis(), i64::from(limit)],
        |row| Ok((row.text("id")?, rows::due_check(row)?)),
    )?;
    if due.is_empty() {
        return Ok((Vec::new(), Effects::none()));
    }
    let (ids, claimed): (Vec<String>, Vec<DueCheck>) = due.into_iter().unzip();
    execute(
        conn,
        "UPDATE messages SET next_check_at = ? \
         WHERE id IN (SELECT value FROM json_each(?)) AND state = 'PREPARED'",
        params![now.plus(hold).as_millis(), id_list(&ids)?],
    )?;
    Ok((claimed, Effects::none()))
}

pub fn record_check(
    conn: &Connection,
    message_id: MessageId,
    attempt: u32,
    verdict: CheckVerdict,
    now: Timestamp,
) -> Written<CheckRecorded> {
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
        return Ok((CheckRecorded::Stale(state), Effects::none()));
    }
    // The guard is repeated in each UPDATE, as a backend without a single writer needs it.
    const GUARD: &str = "WHERE id = ? AND state = 'PREPARED' AND check_attempts = ?";
    events::record(conn, &NewEvent::check(message_id, attempt, &verdict, now))?;
    match verdict {
        CheckVerdict::Decided(decision) => {
            execute(
                conn,
                &format!("UPDATE messages SET check_attempts = ?, last_check_error = NULL {GUARD}"),
                params![i64::from(attempt), id, previous],
            )?;
            // Exactly what the producer's Confirm or Cancel does, routing included.
            let message = MessageRef::Id(message_id);
            let ((state, _), effects) =
                ops::decide_as(conn, &message, decision, DecidedBy::Checker, now)?;
            Ok((CheckRecorded::Applied(state), effects))
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
            // The check loop may be sleeping until the claim's hold, after `at`.
            let effects = Effects::check_due(at);
            Ok((CheckRecorded::Applied(MessageState::Prepared), effects))
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
            let state = MessageState::Unresolved;
            Ok((CheckRecorded::Applied(state), Effects::none()))
        }
    }
}

pub fn fail_delivery(
    conn: &Connection,
    subscription: &Subscription,
    receipt: &Receipt,
    error: &str,
    now: Timestamp,
) -> Written<Option<RedeliveryPlan>> {
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
        return Ok((None, Effects::none())); // deleted with its subscription meanwhile
    };
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
    match leases::release(conn, receipt, plan, (EventKind::PushFailed, error), now)? {
        Some(effects) => Ok((Some(plan), effects)),
        None => Ok((None, Effects::none())),
    }
}

pub fn delete_final_messages(conn: &Connection, cutoff: Timestamp, limit: u32) -> Written<u64> {
    let ids: Vec<String> = query_all(
        conn,
        "SELECT message_id FROM final_messages WHERE final_at <= ? ORDER BY final_at LIMIT ?",
        params![cutoff.as_millis(), i64::from(limit)],
        |row| Ok(row.get(0)?),
    )?;
    if ids.is_empty() {
        return Ok((0, Effects::none()));
    }
    let ids = id_list(&ids)?;
    // What refers to the messages goes first.
    for table in ["deliveries", "message_events", "final_messages"] {
        execute(
            conn,
            &format!("DELETE FROM {table} WHERE message_id IN (SELECT value FROM json_each(?))"),
            [&ids],
        )?;
    }
    execute(
        conn,
        "DELETE FROM message_payloads WHERE id IN \
         (SELECT payload_id FROM messages WHERE id IN (SELECT value FROM json_each(?)))",
        [&ids],
    )?;
    let deleted = execute(
        conn,
        "DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))",
        [&ids],
    )?;
    Ok((deleted, Effects::none()))
}
