//! Consumer-side write operations on PostgreSQL, each inside the caller's transaction (or one
//! statement committing by itself): leasing, Ack, Nack, ExtendLease, Reject and ending
//! expired leases. Like `ops`, every read a write depends on locks its rows first, and every
//! UPDATE names the state and generation it expects or, in the lease and the Ack (functions of
//! migration 0015), the very row versions it locked.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::notify;
use super::ops::find_subscription;
use super::rows::{self, Columns};
use super::{events, lanes};
use crate::domain::{
    AckStatus, AckVerdict, DeliveryState, LeaseCheck, LeasedDelivery, MessageId, Name, Receipt,
    RedeliveryPlan, Subscription, Timestamp, classify_ack, plan_redelivery, random_jitter,
};
use crate::store::history::{EventKind, NewEvent};
use crate::store::lanes::distinct_lanes;
use crate::store::{Batch, Effects, ExpiredLeases, StoreError, Written, rules};

/// Claims up to `max` due deliveries in one statement (`courier_lease`, migration 0015, whose
/// plan is made once per connection and finds every row by key). Rows another transaction
/// holds (a replica leasing, acking or expiring them right now) are skipped, not waited for;
/// the rows it claims stay locked until it commits, so no two replicas ever lease the same
/// delivery.
///
/// The function answers the rows it claimed (with their messages) and, apart, the ids of the
/// rows its UPDATE changed: a claimed row whose new version the UPDATE could not see (changed
/// by a transaction that committed after the statement began) stays PENDING, and only rows in
/// both are handed out.
///
/// One statement, so it commits on its own. With `announce`, it also tells the other
/// replicas that this one made leases (`notify::DEADLINES`), if it made any.
pub async fn lease(
    conn: &mut PgConnection,
    subscription: &Subscription,
    batch: Batch,
    now: Timestamp,
    announce: bool,
) -> Written<Vec<LeasedDelivery>> {
    let lease_expires_at = now.plus(subscription.ack_deadline);
    let rows = sqlx::query("SELECT * FROM courier_lease($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .bind(subscription.name.as_str())
        .bind(subscription.topic.as_str())
        .bind(now.as_millis())
        .bind(i64::from(batch.messages))
        .bind(lease_expires_at.as_millis())
        .bind(announce)
        .bind(notify::DEADLINES)
        .bind(rules::DELIVERY_ALLOWANCE)
        .bind(i64::try_from(batch.bytes).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
    let mut updated = HashSet::with_capacity(rows.len() / 2);
    let mut claimed = Vec::with_capacity(rows.len() / 2);
    for row in &rows {
        if row.try_get::<bool, _>("leased")? {
            updated.insert(row.id("message_id")?);
        } else {
            claimed.push(row);
        }
    }
    let mut leased = Vec::with_capacity(claimed.len());
    for row in claimed {
        if updated.contains(&row.id("message_id")?) {
            let leased_delivery = rows::leased_delivery(row, &subscription.name, lease_expires_at)?;
            leased.push((row.int("due_at")?, leased_delivery));
        }
    }
    // A UNION has no order: hand them out oldest due first, as SQLite does.
    leased.sort_by(|(a_due, a), (b_due, b)| {
        (a_due, a.receipt.message_id).cmp(&(b_due, b.receipt.message_id))
    });
    let leased: Vec<LeasedDelivery> = leased.into_iter().map(|(_, delivery)| delivery).collect();
    let effects = Effects::leased(&leased);
    Ok((leased, effects))
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

/// Acks receipts at a time, in one statement (`courier_ack`, migration 0015, whose plan is
/// made once per connection and finds every row by key). It locks every named delivery in key
/// order (two batches never deadlock), then acks each delivery its receipt still holds; a
/// delivery in a lane only when asked to (the caller then lets the lane go on, in its
/// transaction). Answers every named delivery as it found it. The messages the acks finish are
/// locked after that, in id order, by the statement's trigger (`courier_final_on_done_rows`):
/// every lock on a delivery comes before every lock on a message, so acks of one message on
/// two subscriptions queue up instead of deadlocking. A delivery that changed while the
/// statement waited for its lock makes it fail as a serialization conflict, and the call runs
/// again (`calls::Calls`).
const ACK: &str = "SELECT * FROM courier_ack($1, $2, $3, $4, $5)";

/// The deliveries an [`ACK`] statement found, as it found them.
struct Held {
    current: HashMap<DeliveryKey, (DeliveryState, u32)>,
    lane_keys: HashMap<DeliveryKey, String>,
}

/// How the statement answered one receipt.
enum Judged {
    Answered(AckStatus),
    /// The receipt still held its delivery (in this lane, if any): the statement acked it,
    /// unless it is in a lane and the statement left lanes alone.
    Held {
        lane_key: Option<String>,
    },
}

/// Runs [`ACK`] for `receipts` at `now`; with `in_lanes`, deliveries in lanes too.
async fn ack_statement(
    conn: &mut PgConnection,
    receipts: &[&Receipt],
    now: Timestamp,
    in_lanes: bool,
) -> Result<Held, StoreError> {
    let mut subscriptions = Vec::with_capacity(receipts.len());
    let mut ids = Vec::with_capacity(receipts.len());
    let mut generations = Vec::with_capacity(receipts.len());
    for receipt in receipts {
        subscriptions.push(receipt.subscription.as_str());
        ids.push(receipt.message_id.as_uuid());
        generations.push(i64::from(receipt.generation));
    }
    let locked = sqlx::query(ACK)
        .bind(&subscriptions)
        .bind(&ids)
        .bind(&generations)
        .bind(now.as_millis())
        .bind(in_lanes)
        .fetch_all(&mut *conn)
        .await?;
    let mut held = Held {
        current: HashMap::with_capacity(locked.len()),
        lane_keys: HashMap::new(),
    };
    for row in &locked {
        let (state, generation, _) = rows::lease_state(row)?;
        let key = (row.text("subscription")?, row.id("message_id")?);
        if let Some(lane_key) = row.opt_text("ordering_key")? {
            held.lane_keys.insert(key.clone(), lane_key);
        }
        held.current.insert(key, (state, generation));
    }
    Ok(held)
}

impl Held {
    /// Judges `receipt` against the state the statement found, as its UPDATE did; receipts are
    /// judged in the order the statement got them, so a repeat sees the first one's ack.
    fn judge(&mut self, receipt: &Receipt, in_lanes: bool) -> Judged {
        let key = (receipt.subscription.to_string(), receipt.message_id);
        match classify_ack(self.current.get(&key).copied(), receipt.generation) {
            AckVerdict::Acknowledge => {
                let lane_key = self.lane_keys.get(&key).cloned();
                if lane_key.is_none() || in_lanes {
                    self.current
                        .insert(key, (DeliveryState::Acked, receipt.generation));
                }
                Judged::Held { lane_key }
            }
            AckVerdict::AlreadyAcked => Judged::Answered(AckStatus::Ok),
            AckVerdict::LeaseLost => Judged::Answered(AckStatus::LeaseLost),
            AckVerdict::NotFound => Judged::Answered(AckStatus::NotFound),
        }
    }
}

/// Acks a batch of receipts in one statement, then lets the lanes it ended heads of go on
/// (in the caller's transaction: the lane's lock and the promotion see the ack).
pub async fn ack(
    conn: &mut PgConnection,
    receipts: &[Receipt],
    now: Timestamp,
) -> Written<Vec<AckStatus>> {
    if receipts.is_empty() {
        return Ok((Vec::new(), Effects::none()));
    }
    let receipts_ref: Vec<&Receipt> = receipts.iter().collect();
    let mut held = ack_statement(conn, &receipts_ref, now, true).await?;
    let mut acked_in_lanes = Vec::new();
    let statuses = receipts
        .iter()
        .map(|receipt| match held.judge(receipt, true) {
            Judged::Answered(status) => status,
            Judged::Held { lane_key } => {
                if let Some(lane_key) = lane_key {
                    acked_in_lanes.push((receipt.subscription.as_str(), lane_key));
                }
                AckStatus::Ok
            }
        })
        .collect();
    let lanes = acked_in_lanes
        .iter()
        .map(|(subscription, key)| (*subscription, Some(key.as_str())));
    let effects = lanes::advance(conn, &distinct_lanes(lanes), now).await?;
    Ok((statuses, effects))
}

/// Bytes an Ack call adds to its batch's statement: per receipt the subscription's name, the
/// message id and the generation, each with its length.
pub fn ack_size((receipts, _): &(Vec<Receipt>, Timestamp)) -> usize {
    receipts
        .iter()
        .map(|receipt| receipt.subscription.as_str().len() + 36)
        .sum()
}

/// Acks the receipts of concurrent Ack calls (at the latest of their times) in one statement
/// that commits by itself, leaving deliveries in lanes alone: an ack of a lane's head must let
/// the lane go on in the same transaction. Answers each call's statuses, or `None` for a call
/// that named a delivery in a lane (the caller acks it again with [`ack`]: what this
/// statement acked of it then answers as acked already, which is the same answer). An
/// unordered ack makes nothing due: no effects.
pub async fn ack_batch(
    conn: &mut PgConnection,
    calls: &[(Vec<Receipt>, Timestamp)],
) -> Result<Vec<Option<Vec<AckStatus>>>, StoreError> {
    // One time for the batch, the latest of its calls: a time per receipt would make the
    // statement a fifth larger for nothing.
    let now = calls
        .iter()
        .map(|(_, now)| *now)
        .max()
        .unwrap_or_else(Timestamp::now);
    let receipts: Vec<&Receipt> = calls.iter().flat_map(|(receipts, _)| receipts).collect();
    let mut held = ack_statement(conn, &receipts, now, false).await?;
    Ok(calls
        .iter()
        .map(|(receipts, _)| {
            let mut statuses = Vec::with_capacity(receipts.len());
            let mut in_lane = false;
            for receipt in receipts {
                match held.judge(receipt, false) {
                    Judged::Answered(status) => statuses.push(status),
                    Judged::Held { lane_key: None } => statuses.push(AckStatus::Ok),
                    Judged::Held { lane_key: Some(_) } => in_lane = true,
                }
            }
            (!in_lane).then_some(statuses)
        })
        .collect())
}

/// See `Store::return_leases`: one statement for all of them.
pub async fn return_leases(
    conn: &mut PgConnection,
    leased: &[LeasedDelivery],
    now: Timestamp,
) -> Written<u64> {
    let mut subscriptions = Vec::with_capacity(leased.len());
    let mut ids = Vec::with_capacity(leased.len());
    let mut generations = Vec::with_capacity(leased.len());
    let mut due = Vec::with_capacity(leased.len());
    for delivery in leased {
        subscriptions.push(delivery.receipt.subscription.as_str());
        ids.push(delivery.receipt.message_id.as_uuid());
        generations.push(i64::from(delivery.receipt.generation));
        due.push(rules::due_again(delivery.published_at, now).as_millis());
    }
    let count = sqlx::query(
        "UPDATE deliveries d SET state = 'PENDING', attempts = d.attempts - 1, \
           next_attempt_at = r.due, lease_expires_at = NULL, updated_at = $5 \
         FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::bigint[]) \
           AS r(subscription, message_id, generation, due) \
         WHERE d.subscription = r.subscription AND d.message_id = r.message_id \
           AND d.generation = r.generation AND d.state = 'LEASED'",
    )
    .bind(&subscriptions)
    .bind(&ids)
    .bind(&generations)
    .bind(&due)
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let effects = if count > 0 {
        Effects::due(
            leased
                .iter()
                .map(|delivery| delivery.receipt.subscription.clone()),
        )
    } else {
        Effects::none()
    };
    Ok((count, effects))
}

/// Moves a leased delivery to PENDING at `plan`'s time or to DEAD, guarded by its generation.
/// Answers whether it moved it; a dead head lets its lane go on where the subscription skips
/// dead heads.
pub(super) async fn release(
    conn: &mut PgConnection,
    receipt: &Receipt,
    plan: RedeliveryPlan,
    (kind, error): (EventKind, &str),
    now: Timestamp,
) -> Result<Option<Effects>, StoreError> {
    let (state, next_attempt_at) = plan_columns(plan);
    let released: Option<(Option<String>, i64)> = sqlx::query_as(
        "UPDATE deliveries SET state = $1, next_attempt_at = $2, lease_expires_at = NULL, \
         last_error = $3, updated_at = $4 \
         WHERE subscription = $5 AND message_id = $6 AND generation = $7 AND state = 'LEASED' \
         RETURNING ordering_key, attempts",
    )
    .bind(state.as_str())
    .bind(next_attempt_at)
    .bind(error)
    .bind(now.as_millis())
    .bind(receipt.subscription.as_str())
    .bind(receipt.message_id.as_uuid())
    .bind(i64::from(receipt.generation))
    .fetch_optional(&mut *conn)
    .await?;
    let Some((lane_key, attempt)) = released else {
        return Ok(None);
    };
    let event = NewEvent::attempt_failed(receipt, kind, (attempt, plan), error, now)?;
    events::record(conn, &event).await?;
    let due = Effects::due([receipt.subscription.clone()]);
    Ok(Some(match plan {
        RedeliveryPlan::Dead => due.and(dead_in_lane(conn, receipt, lane_key, now).await?),
        RedeliveryPlan::RetryAt(_) => due,
    }))
}

/// A delivery of `receipt` went DEAD: its lane (if it is in one) goes on unless the
/// subscription blocks on a dead head.
async fn dead_in_lane(
    conn: &mut PgConnection,
    receipt: &Receipt,
    lane_key: Option<String>,
    now: Timestamp,
) -> Result<Effects, StoreError> {
    let lanes = distinct_lanes([(receipt.subscription.as_str(), lane_key.as_deref())]);
    lanes::advance(conn, &lanes, now).await
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
    error: &str,
    now: Timestamp,
) -> Written<Option<RedeliveryPlan>> {
    let (check, attempts) = rules::held_lease(lock_delivery(conn, receipt).await?, receipt)?;
    if check != LeaseCheck::Held {
        // already released by this receipt: an idempotent repeat
        return Ok((None, Effects::none()));
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
    match release(conn, receipt, plan, (EventKind::Nacked, error), now).await? {
        Some(effects) => Ok((Some(plan), effects)),
        None => Ok((None, Effects::none())),
    }
}

pub async fn extend_lease(
    conn: &mut PgConnection,
    receipt: &Receipt,
    extension: Duration,
    now: Timestamp,
) -> Written<Timestamp> {
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
    Ok((lease_expires_at, Effects::none()))
}

pub async fn reject(
    conn: &mut PgConnection,
    receipt: &Receipt,
    reason: &str,
    now: Timestamp,
) -> Written<()> {
    let (check, _) = rules::held_lease(lock_delivery(conn, receipt).await?, receipt)?;
    if check == LeaseCheck::Released(DeliveryState::Dead) {
        return Ok(((), Effects::none()));
    }
    // Held, or unleased again after an expiry or Nack and not leased by anyone since: still
    // rejectable.
    let error = rules::rejected(reason);
    let rejected: Option<(Option<String>, i64)> = sqlx::query_as(
        "UPDATE deliveries SET state = 'DEAD', next_attempt_at = NULL, lease_expires_at = NULL, \
         last_error = $1, updated_at = $2 \
         WHERE subscription = $3 AND message_id = $4 AND generation = $5 \
           AND state IN ('LEASED', 'PENDING') RETURNING ordering_key, attempts",
    )
    .bind(&error)
    .bind(now.as_millis())
    .bind(receipt.subscription.as_str())
    .bind(receipt.message_id.as_uuid())
    .bind(i64::from(receipt.generation))
    .fetch_optional(&mut *conn)
    .await?;
    let effects = match rejected {
        Some((lane_key, attempt)) => {
            let dead = (attempt, RedeliveryPlan::Dead);
            let event = NewEvent::attempt_failed(receipt, EventKind::Rejected, dead, &error, now)?;
            events::record(conn, &event).await?;
            dead_in_lane(conn, receipt, lane_key, now).await?
        }
        None => Effects::none(),
    };
    Ok(((), effects))
}

/// Ends up to [`rules::EXPIRY_BATCH`] expired leases. The sweep locks the leases it ends and
/// skips those another transaction holds (an Ack in flight, another replica's sweep); its
/// UPDATE re-checks state and generation, so a lease acked or renewed meanwhile stays alone.
pub async fn expire_leases(conn: &mut PgConnection, now: Timestamp) -> Written<ExpiredLeases> {
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
        return Ok((ExpiredLeases::default(), Effects::none()));
    }
    let mut plans = ExpiryPlans::default();
    for row in &expired {
        plans.push(row, now)?;
    }
    let ended: Vec<(String, String, Option<String>, Uuid, i64)> = sqlx::query_as(
        "UPDATE deliveries d SET state = e.state, next_attempt_at = e.next_attempt_at, \
         lease_expires_at = NULL, last_error = $6, updated_at = $7 \
         FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::text[], $5::bigint[]) \
           AS e(subscription, message_id, generation, state, next_attempt_at) \
         WHERE d.subscription = e.subscription AND d.message_id = e.message_id \
           AND d.generation = e.generation AND d.state = 'LEASED' \
         RETURNING d.subscription, d.state, d.ordering_key, d.message_id, d.attempts",
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
    let mut due = Vec::with_capacity(ended.len());
    let mut dead_in_lanes = Vec::new();
    let mut failures = Vec::with_capacity(ended.len());
    for (subscription, state, lane_key, message_id, attempt) in &ended {
        let dead = state == DeliveryState::Dead.as_str();
        let plan = match dead {
            true => RedeliveryPlan::Dead,
            false => RedeliveryPlan::RetryAt(now),
        };
        failures.push(NewEvent::delivery_failed(
            MessageId::from_uuid(*message_id),
            &Name::from_trusted(subscription.clone()),
            EventKind::LeaseExpired,
            (u32::try_from(*attempt).map_err(StoreError::internal)?, plan),
            rules::LEASE_EXPIRED,
            now,
        ));
        outcome.count(subscription, dead);
        due.push(Name::from_trusted(subscription.clone()));
        if dead {
            dead_in_lanes.push((subscription.as_str(), lane_key.as_deref()));
        }
    }
    events::record_all(conn, &failures).await?;
    let lanes = lanes::advance(conn, &distinct_lanes(dead_in_lanes), now).await?;
    Ok((outcome, Effects::due(due).and(lanes)))
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
