//! Consumer-side write operations on SQLite: leasing, Ack, Nack, ExtendLease, Reject and
//! ending expired leases. Like `ops`, each runs on the writer's connection inside the group
//! transaction, and every UPDATE still names the state and generation it expects.

use std::time::Duration;

use rusqlite::{Connection, params};

use super::ops::{self, execute, find_subscription, query_all, query_one};
use super::rows::{self, Columns};
use super::{events, lanes};
use crate::domain::{
    AckStatus, AckVerdict, DeliveryState, LeaseCheck, LeasedDelivery, Name, Receipt,
    RedeliveryPlan, Subscription, Timestamp, classify_ack, plan_redelivery, random_jitter,
};
use crate::store::history::{EventKind, NewEvent};
use crate::store::lanes::distinct_lanes;
use crate::store::{Batch, Effects, ExpiredLeases, StoreError, Written, rules};

pub fn lease(
    conn: &Connection,
    subscription: &Subscription,
    batch: Batch,
    now: Timestamp,
) -> Written<Vec<LeasedDelivery>> {
    let lease_expires_at = now.plus(subscription.ack_deadline);
    let mut candidates = query_all(
        conn,
        &lease_candidates(batch.messages),
        params![
            rules::DELIVERY_ALLOWANCE,
            subscription.name.as_str(),
            now.as_millis(),
        ],
        |row| {
            let size = row.int("size")?;
            let delivery = rows::leased_delivery(row, &subscription.name, lease_expires_at)?;
            Ok((size, delivery))
        },
    )?;
    candidates.truncate(rules::fitting(
        candidates.iter().map(|(size, _)| *size),
        batch,
    ));
    let leased: Vec<LeasedDelivery> = candidates.into_iter().map(|(_, d)| d).collect();
    for delivery in &leased {
        execute(
            conn,
            "UPDATE deliveries SET state = 'LEASED', attempts = ?, generation = ?, \
             lease_expires_at = ?, next_attempt_at = NULL, updated_at = ? \
             WHERE subscription = ? AND message_id = ? AND state = 'PENDING' AND generation = ?",
            params![
                i64::from(delivery.attempt),
                i64::from(delivery.receipt.generation),
                lease_expires_at.as_millis(),
                now.as_millis(),
                subscription.name.as_str(),
                delivery.receipt.message_id.to_string(),
                i64::from(delivery.receipt.generation) - 1,
            ],
        )?;
    }
    let effects = Effects::leased(&leased);
    Ok((leased, effects))
}

/// The statement that finds up to `limit` due deliveries to lease (binds: the size allowance
/// per delivery, the subscription, now), each as it will be once leased: one more attempt,
/// the next generation.
///
/// The limit is written into the statement rather than bound: SQLite plans with a bound
/// LIMIT's value, so it prepares such a statement again every time the value is bound (every
/// call; that was 7 % of the writer thread). This way each batch size a consumer asks for is
/// prepared once and stays in the statement cache.
pub(super) fn lease_candidates(limit: u32) -> String {
    format!(
        "SELECT d.message_id, d.attempts + 1 AS attempts, d.generation + 1 AS generation, \
         m.producer, m.topic, m.key, m.ordering_key, p.payload, m.headers, m.decided_at, \
         m.traceparent, m.tracestate, \
         length(p.payload) + length(CAST(m.headers AS BLOB)) + length(CAST(m.key AS BLOB)) \
           + length(CAST(m.ordering_key AS BLOB)) + ? AS size \
         FROM deliveries d JOIN messages m ON m.id = d.message_id \
         JOIN message_payloads p ON p.id = m.payload_id \
         WHERE d.subscription = ? AND d.state = 'PENDING' AND d.next_attempt_at <= ? \
         ORDER BY d.next_attempt_at LIMIT {limit}"
    )
}

/// A delivery's state, generation and attempts, and its lane's key.
type LeaseAndLane = ((DeliveryState, u32, u32), Option<String>);

/// The lease of a delivery and its lane's key, if it exists.
fn delivery_lease(
    conn: &Connection,
    receipt: &Receipt,
) -> Result<Option<LeaseAndLane>, StoreError> {
    query_one(
        conn,
        "SELECT state, generation, attempts, ordering_key FROM deliveries \
         WHERE subscription = ? AND message_id = ?",
        [
            receipt.subscription.as_str(),
            &receipt.message_id.to_string(),
        ],
        |row| Ok((rows::lease_state(row)?, row.get("ordering_key")?)),
    )
}

pub fn ack(conn: &Connection, receipts: &[Receipt], now: Timestamp) -> Written<Vec<AckStatus>> {
    let mut statuses = Vec::with_capacity(receipts.len());
    let mut acked_in_lanes = Vec::new();
    for receipt in receipts {
        let id = receipt.message_id.to_string();
        // Read, judge, then write: under the single writer nothing changes in between. (One
        // UPDATE guarded by the states an Ack takes, `RETURNING` the lane key, cost SQLite two
        // temporary b-trees per receipt: one for the RETURNING rows, one for the IN list.)
        let found = delivery_lease(conn, receipt)?;
        let lease = found
            .as_ref()
            .map(|((state, generation, _), _)| (*state, *generation));
        let status = match classify_ack(lease, receipt.generation) {
            AckVerdict::Acknowledge => {
                let acked = execute(
                    conn,
                    "UPDATE deliveries SET state = 'ACKED', lease_expires_at = NULL, \
                     next_attempt_at = NULL, updated_at = ? \
                     WHERE subscription = ? AND message_id = ? AND generation = ?",
                    params![
                        now.as_millis(),
                        receipt.subscription.as_str(),
                        &id,
                        i64::from(receipt.generation),
                    ],
                )?;
                if acked != 1 {
                    return Err(StoreError::internal(
                        "delivery changed under the single writer",
                    ));
                }
                if let Some((_, Some(key))) = found {
                    acked_in_lanes.push((receipt.subscription.as_str(), key));
                }
                ops::mark_final_if_done(conn, &id, now)?;
                AckStatus::Ok
            }
            AckVerdict::AlreadyAcked => AckStatus::Ok,
            AckVerdict::LeaseLost => AckStatus::LeaseLost,
            AckVerdict::NotFound => AckStatus::NotFound,
        };
        statuses.push(status);
    }
    let lanes = distinct_lanes(
        acked_in_lanes
            .iter()
            .map(|(subscription, key)| (*subscription, Some(key.as_str()))),
    );
    let effects = lanes::advance(conn, &lanes, now)?;
    Ok((statuses, effects))
}

/// The current lease of `receipt`, or the error its holder should see.
fn held_lease(conn: &Connection, receipt: &Receipt) -> Result<(LeaseCheck, u32), StoreError> {
    rules::held_lease(
        delivery_lease(conn, receipt)?.map(|(lease, _)| lease),
        receipt,
    )
}

/// Moves a leased delivery to PENDING at `plan`'s time or to DEAD, guarded by its generation.
/// Answers whether it moved it; a dead head lets its lane go on where the subscription skips
/// dead heads.
pub(super) fn release(
    conn: &Connection,
    receipt: &Receipt,
    plan: RedeliveryPlan,
    (kind, error): (EventKind, &str),
    now: Timestamp,
) -> Result<Option<Effects>, StoreError> {
    let (state, next_attempt_at) = match plan {
        RedeliveryPlan::RetryAt(at) => (DeliveryState::Pending, Some(at.as_millis())),
        RedeliveryPlan::Dead => (DeliveryState::Dead, None),
    };
    let released = query_one(
        conn,
        "UPDATE deliveries SET state = ?, next_attempt_at = ?, lease_expires_at = NULL, \
         last_error = ?, updated_at = ? \
         WHERE subscription = ? AND message_id = ? AND generation = ? AND state = 'LEASED' \
         RETURNING ordering_key, attempts",
        params![
            state.as_str(),
            next_attempt_at,
            error,
            now.as_millis(),
            receipt.subscription.as_str(),
            receipt.message_id.to_string(),
            i64::from(receipt.generation),
        ],
        |row| Ok((row.get::<_, Option<String>>(0)?, row.get::<_, i64>(1)?)),
    )?;
    let Some((lane_key, attempt)) = released else {
        return Ok(None);
    };
    let event = NewEvent::attempt_failed(receipt, kind, (attempt, plan), error, now)?;
    events::record(conn, &event)?;
    let due = Effects::due([receipt.subscription.clone()]);
    Ok(Some(match plan {
        RedeliveryPlan::Dead => due.and(dead_in_lane(conn, receipt, lane_key, now)?),
        RedeliveryPlan::RetryAt(_) => due,
    }))
}

/// A delivery of `receipt` went DEAD: its lane (if it is in one) goes on unless the
/// subscription blocks on a dead head.
fn dead_in_lane(
    conn: &Connection,
    receipt: &Receipt,
    lane_key: Option<String>,
    now: Timestamp,
) -> Result<Effects, StoreError> {
    let lanes = distinct_lanes([(receipt.subscription.as_str(), lane_key.as_deref())]);
    lanes::advance(conn, &lanes, now)
}

/// See `Store::return_leases`; `returned` pairs each receipt with its publish time.
pub fn return_leases(
    conn: &Connection,
    returned: &[(Receipt, Timestamp)],
    now: Timestamp,
) -> Written<u64> {
    let mut count = 0;
    let mut subscriptions = Vec::new();
    for (receipt, published_at) in returned {
        let changed = execute(
            conn,
            "UPDATE deliveries SET state = 'PENDING', attempts = attempts - 1, \
             next_attempt_at = ?, lease_expires_at = NULL, updated_at = ? \
             WHERE subscription = ? AND message_id = ? AND generation = ? AND state = 'LEASED'",
            params![
                rules::due_again(*published_at, now).as_millis(),
                now.as_millis(),
                receipt.subscription.as_str(),
                receipt.message_id.to_string(),
                i64::from(receipt.generation),
            ],
        )?;
        if changed > 0 {
            subscriptions.push(receipt.subscription.clone());
        }
        count += changed;
    }
    Ok((count, Effects::due(subscriptions)))
}

pub fn nack(
    conn: &Connection,
    receipt: &Receipt,
    delay: Option<Duration>,
    error: &str,
    now: Timestamp,
) -> Written<Option<RedeliveryPlan>> {
    let (check, attempts) = held_lease(conn, receipt)?;
    if check != LeaseCheck::Held {
        // already released by this receipt: an idempotent repeat
        return Ok((None, Effects::none()));
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
    match release(conn, receipt, plan, (EventKind::Nacked, error), now)? {
        Some(effects) => Ok((Some(plan), effects)),
        None => Ok((None, Effects::none())),
    }
}

pub fn extend_lease(
    conn: &Connection,
    receipt: &Receipt,
    extension: Duration,
    now: Timestamp,
) -> Written<Timestamp> {
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
    Ok((lease_expires_at, Effects::none()))
}

pub fn reject(conn: &Connection, receipt: &Receipt, reason: &str, now: Timestamp) -> Written<()> {
    let (check, _) = held_lease(conn, receipt)?;
    let error = rules::rejected(reason);
    match check {
        LeaseCheck::Released(DeliveryState::Dead) => Ok(((), Effects::none())),
        // Unleased again after an expiry or Nack, not leased by anyone since: still rejectable.
        LeaseCheck::Released(_) | LeaseCheck::Held => {
            let rejected = query_one(
                conn,
                "UPDATE deliveries SET state = 'DEAD', next_attempt_at = NULL, \
                 lease_expires_at = NULL, last_error = ?, updated_at = ? \
                 WHERE subscription = ? AND message_id = ? AND generation = ? \
                 AND state IN ('LEASED', 'PENDING') RETURNING ordering_key, attempts",
                params![
                    error,
                    now.as_millis(),
                    receipt.subscription.as_str(),
                    receipt.message_id.to_string(),
                    i64::from(receipt.generation),
                ],
                |row| Ok((row.get::<_, Option<String>>(0)?, row.get::<_, i64>(1)?)),
            )?;
            let effects = match rejected {
                Some((lane_key, attempt)) => {
                    let dead = (attempt, RedeliveryPlan::Dead);
                    let event =
                        NewEvent::attempt_failed(receipt, EventKind::Rejected, dead, &error, now)?;
                    events::record(conn, &event)?;
                    dead_in_lane(conn, receipt, lane_key, now)?
                }
                None => Effects::none(),
            };
            Ok(((), effects))
        }
        LeaseCheck::Lost(_) | LeaseCheck::NotFound => {
            unreachable!("held_lease returns these as errors")
        }
    }
}

pub fn expire_leases(conn: &Connection, now: Timestamp) -> Written<ExpiredLeases> {
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
    let mut effects = Effects::none();
    for (subscription, message_id, attempts, generation, policy) in expired {
        let receipt = Receipt {
            message_id: rows::message_id(&message_id)?,
            generation: u32::try_from(generation).map_err(StoreError::internal)?,
            subscription: Name::from_trusted(subscription.clone()),
        };
        let attempts = u32::try_from(attempts).map_err(StoreError::internal)?;
        let plan = plan_redelivery(&policy, attempts, now, None, random_jitter());
        if let Some(released) = release(
            conn,
            &receipt,
            plan,
            (EventKind::LeaseExpired, rules::LEASE_EXPIRED),
            now,
        )? {
            ended.count(&subscription, plan == RedeliveryPlan::Dead);
            effects = effects.and(released);
        }
    }
    Ok((ended, effects))
}
