//! Lanes on PostgreSQL: the shared statements of `store::lanes`, each run after taking the
//! lane's lock. Replicas write a lane concurrently; the transaction-scoped advisory lock makes
//! them take turns, and under READ COMMITTED each statement after the lock sees what the
//! previous holder committed. So a confirm that joins a lane and an ack that empties it
//! cannot miss each other, and places in a lane follow commit order.

use sqlx::PgConnection;

use crate::domain::{MessageId, Name, OrderingKey, Timestamp};
use crate::store::lanes;
use crate::store::{Effects, StoreError};

/// Locks each lane (in the order given: `lanes::distinct_lanes` sorts them) until the
/// transaction ends. Two lanes may share a lock when their hashes collide; they then only
/// take turns.
async fn lock(conn: &mut PgConnection, lanes: &[(String, String)]) -> Result<(), StoreError> {
    if lanes.is_empty() {
        return Ok(());
    }
    let (subscriptions, keys): (Vec<&str>, Vec<&str>) = lanes
        .iter()
        .map(|(subscription, key)| (subscription.as_str(), key.as_str()))
        .unzip();
    sqlx::query(
        "SELECT count(pg_advisory_xact_lock(hashtextextended(l.subscription || E'\\n' || l.key, 0))) \
         FROM unnest($1::text[], $2::text[]) AS l(subscription, key)",
    )
    .bind(&subscriptions)
    .bind(&keys)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Routes a message with an ordering key (see [`lanes::ROUTE_KEYED`]) to the subscriptions
/// `targets` of its topic (share-locked by the caller), `ordered` among them, and lets each
/// lane it joined go on; returns the subscriptions routed to.
pub async fn route_keyed(
    conn: &mut PgConnection,
    id: MessageId,
    (topic, key): (&Name, &OrderingKey),
    ordered: &[String],
    due: Timestamp,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let lanes = lanes::distinct_lanes(ordered.iter().map(|s| (s.as_str(), key.lane())));
    lock(conn, &lanes).await?;
    let routed: Vec<(String, Option<i64>)> = sqlx::query_as(lanes::ROUTE_KEYED)
        .bind(id.as_uuid())
        .bind(due.as_millis())
        .bind(now.as_millis())
        .bind(key.as_str())
        .bind(topic.as_str())
        .fetch_all(&mut *conn)
        .await?;
    // What it made due needs no wake-up of its own: the caller wakes every routed subscription.
    let _ = promote(conn, &lanes, now).await?;
    Ok(routed
        .into_iter()
        .map(|(subscription, _)| subscription)
        .collect())
}

/// Makes the next delivery of each lane due where nothing of the lane is in flight any more.
pub async fn advance(
    conn: &mut PgConnection,
    lanes: &[(String, String)],
    now: Timestamp,
) -> Result<Effects, StoreError> {
    lock(conn, lanes).await?;
    promote(conn, lanes, now).await
}

async fn promote(
    conn: &mut PgConnection,
    lanes: &[(String, String)],
    now: Timestamp,
) -> Result<Effects, StoreError> {
    let mut due = Vec::new();
    for (subscription, key) in lanes {
        let promoted = sqlx::query(lanes::PROMOTE)
            .bind(subscription)
            .bind(key)
            .bind(now.as_millis())
            .execute(&mut *conn)
            .await?;
        if promoted.rows_affected() > 0 {
            due.push(Name::from_trusted(subscription.clone()));
        }
    }
    Ok(Effects::due(due))
}
