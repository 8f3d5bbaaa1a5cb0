//! Lanes on SQLite: the shared statements of `store::lanes`, run on the single writer (which
//! is all the serialization a lane needs).

use std::sync::LazyLock;

use rusqlite::{Connection, params};

use super::ops::{execute, query_all};
use crate::domain::{MessageId, Name, OrderingKey, Timestamp};
use crate::store::lanes;
use crate::store::sql::for_sqlite;
use crate::store::{Effects, StoreError};

static ROUTE_KEYED: LazyLock<String> = LazyLock::new(|| for_sqlite(lanes::ROUTE_KEYED));
static PROMOTE: LazyLock<String> = LazyLock::new(|| for_sqlite(lanes::PROMOTE));

/// Routes a message with an ordering key (see [`lanes::ROUTE_KEYED`]) and lets each lane it
/// joined go on; returns the subscriptions routed to.
pub fn route_keyed(
    conn: &Connection,
    id: MessageId,
    topic: &str,
    key: &OrderingKey,
    due: Timestamp,
    now: Timestamp,
) -> Result<Vec<Name>, StoreError> {
    let routed = query_all(
        conn,
        &ROUTE_KEYED,
        params![
            id.to_string(),
            due.as_millis(),
            now.as_millis(),
            key.as_str(),
            topic
        ],
        |row| {
            let subscription: String = row.get(0)?;
            let lane_seq: Option<i64> = row.get(1)?;
            Ok((subscription, lane_seq.is_some()))
        },
    )?;
    let joined = routed
        .iter()
        .filter(|(_, in_lane)| *in_lane)
        .map(|(subscription, _)| (subscription.as_str(), Some(key.as_str())));
    // What it made due needs no wake-up of its own: the caller wakes every routed subscription.
    let _ = advance(conn, &lanes::distinct_lanes(joined), now)?;
    Ok(routed
        .into_iter()
        .map(|(subscription, _)| Name::from_trusted(subscription))
        .collect())
}

/// Makes the next delivery of each lane due where nothing of the lane is in flight any more.
pub fn advance(
    conn: &Connection,
    lanes: &[(String, String)],
    now: Timestamp,
) -> Result<Effects, StoreError> {
    let mut due = Vec::new();
    for (subscription, key) in lanes {
        if execute(conn, &PROMOTE, params![subscription, key, now.as_millis()])? > 0 {
            due.push(Name::from_trusted(subscription.clone()));
        }
    }
    Ok(Effects::due(due))
}
