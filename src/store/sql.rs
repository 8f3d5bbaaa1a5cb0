//! SQL shared by both backends: plain text with no placeholders, and query builders whose
//! binds take each dialect's placeholders.

use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::domain::{MessageId, MessageOutcome};
use crate::store::{DeliveryQuery, MessageQuery};

/// Where a statement marks the index SQLite must read (a comment to PostgreSQL, which plans
/// from statistics), and that index. Without statistics SQLite's planner reads a
/// subscription's every delivery by primary key there instead: one lane promotion per Ack
/// would then cost as much as the whole backlog, and a page of dead letters as much as every
/// delivery the subscription still keeps.
const SQLITE_INDEXES: [(&str, &str); 8] = [
    ("/* lane index */", "INDEXED BY deliveries_lanes"),
    ("/* dead index */", "INDEXED BY deliveries_dead"),
    ("/* due index */", "INDEXED BY deliveries_due"),
    ("/* leases index */", "INDEXED BY deliveries_leases"),
    ("/* discarded index */", "INDEXED BY deliveries_discarded"),
    ("/* prepared index */", "INDEXED BY messages_check_due"),
    ("/* unresolved index */", "INDEXED BY messages_unresolved"),
    ("/* unrouted index */", "INDEXED BY messages_unrouted"),
];

/// `sql` in SQLite's dialect: numbered placeholders (`$3` becomes `?3`), and the index named
/// where the statement marks one ([`SQLITE_INDEXES`]).
pub fn for_sqlite(sql: &str) -> String {
    SQLITE_INDEXES
        .iter()
        .fold(sql.replace('$', "?"), |sql, (marker, index)| {
            sql.replace(marker, index)
        })
}

/// A WHERE condition on a delivery aliased `$d`: it is a DEAD head holding its lane, in a
/// subscription that blocks on one.
macro_rules! blocking_dead_head {
    ($d:literal) => {
        concat!(
            $d,
            ".state = 'DEAD' AND ",
            $d,
            ".ordering_key IS NOT NULL AND EXISTS (SELECT 1 FROM \
             subscriptions s WHERE s.name = ",
            $d,
            ".subscription AND s.dead_head = 'BLOCK')"
        )
    };
}

/// How many lanes a DEAD head holds, by subscription.
pub const BLOCKED_LANES: &str = concat!(
    "SELECT d.subscription, COUNT(DISTINCT d.ordering_key) AS lanes FROM deliveries d WHERE ",
    blocking_dead_head!("d"),
    " GROUP BY d.subscription"
);

/// The messages still in flight or waiting for an operator, by topic and state: PREPARED,
/// UNRESOLVED, and CONFIRMED with no subscription (state `UNROUTED`). Each is read through a
/// partial index holding only such messages, so the read takes time in proportion to them,
/// not to everything the database retains.
pub const LIVE_MESSAGE_COUNTS: &str = "\
    SELECT topic, 'PREPARED' AS state, COUNT(*) AS n FROM messages /* prepared index */ \
    WHERE state = 'PREPARED' GROUP BY topic \
    UNION ALL SELECT topic, 'UNRESOLVED', COUNT(*) FROM messages /* unresolved index */ \
    WHERE state = 'UNRESOLVED' GROUP BY topic \
    UNION ALL SELECT topic, 'UNROUTED', COUNT(*) FROM messages /* unrouted index */ \
    WHERE state = 'CONFIRMED' AND routed = 0 GROUP BY topic";

/// Messages that ended and are kept until retention removes them, by topic and state: a read
/// of every such row, for the operator's view only.
pub const RETAINED_MESSAGE_COUNTS: &str = "\
    SELECT topic, state, COUNT(*) AS n FROM messages \
    WHERE state IN ('CONFIRMED', 'CANCELLED') GROUP BY topic, state";

/// Every subscription with its deliveries in flight or waiting for an operator, and its
/// earliest pending due time; each count reads a partial index holding only deliveries in
/// that state (on both backends), never the subscription's every delivery.
pub const LIVE_DELIVERY_COUNTS: &str = "\
    SELECT s.name AS subscription, s.topic, \
    (SELECT COUNT(*) FROM deliveries d /* due index */ \
     WHERE d.subscription = s.name AND d.state = 'PENDING') AS pending, \
    (SELECT MIN(d.next_attempt_at) FROM deliveries d /* due index */ \
     WHERE d.subscription = s.name AND d.state = 'PENDING') AS first_due, \
    (SELECT COUNT(*) FROM deliveries d /* leases index */ \
     WHERE d.subscription = s.name AND d.state = 'LEASED') AS leased, \
    (SELECT COUNT(*) FROM deliveries d /* dead index */ \
     WHERE d.subscription = s.name AND d.state = 'DEAD') AS dead, \
    (SELECT COUNT(*) FROM deliveries d /* discarded index */ \
     WHERE d.subscription = s.name AND d.state = 'DISCARDED') AS discarded \
    FROM subscriptions s ORDER BY s.name";

/// Acknowledged deliveries kept until retention removes them, by subscription: a read of
/// every such row, for the operator's view only.
pub const RETAINED_DELIVERY_COUNTS: &str = "\
    SELECT subscription, COUNT(*) AS n FROM deliveries WHERE state = 'ACKED' \
    GROUP BY subscription";

/// The query of one ListMessages page, newest first, one row longer than the page so the
/// caller learns whether another follows. The backends differ only in their column list and
/// in how an id binds (`bind_id`).
pub fn message_page<DB, Id>(
    columns: &str,
    filter: &MessageQuery,
    bind_id: impl Fn(MessageId) -> Id,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Id: Encode<'t, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!("SELECT {columns} FROM messages m WHERE 1 = 1"));
    if let Some(topic) = &filter.topic {
        query.push(" AND m.topic = ").push_bind(topic.as_str());
    }
    if let Some(producer) = &filter.producer {
        query
            .push(" AND m.producer = ")
            .push_bind(producer.as_str());
    }
    if let Some(state) = filter.state {
        query.push(" AND m.state = ").push_bind(state.as_str());
    }
    if let Some(outcome) = filter.outcome {
        query.push(" AND ").push(outcome_condition(outcome));
    }
    if let Some(key) = &filter.key {
        query.push(" AND m.key = ").push_bind(key.as_str());
    }
    if let Some(from) = filter.created_from {
        query
            .push(" AND m.created_at >= ")
            .push_bind(from.as_millis());
    }
    if let Some(until) = filter.created_until {
        query
            .push(" AND m.created_at < ")
            .push_bind(until.as_millis());
    }
    if let Some(before) = filter.before {
        query.push(" AND m.id < ").push_bind(bind_id(before));
    }
    query
        .push(" ORDER BY m.id DESC LIMIT ")
        .push_bind(i64::from(filter.page_size) + 1);
    query
}

/// The query of one ListDeliveries page, oldest message first, one row longer than the page.
pub fn delivery_page<DB, Id>(
    columns: &str,
    filter: &DeliveryQuery,
    bind_id: impl Fn(MessageId) -> Id,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Id: Encode<'t, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!(
        "SELECT {columns} FROM deliveries d WHERE d.subscription = "
    ));
    query.push_bind(filter.subscription.as_str());
    if let Some(state) = filter.state {
        query.push(" AND d.state = ").push_bind(state.as_str());
    }
    if filter.blocking_only {
        query.push(concat!(" AND ", blocking_dead_head!("d")));
    }
    if let Some(after) = filter.after {
        query.push(" AND d.message_id > ").push_bind(bind_id(after));
    }
    query
        .push(" ORDER BY d.message_id LIMIT ")
        .push_bind(i64::from(filter.page_size) + 1);
    query
}

/// A WHERE condition on messages aliased `m` that holds when the message has `outcome`.
pub fn outcome_condition(outcome: MessageOutcome) -> &'static str {
    match outcome {
        MessageOutcome::Prepared => "m.state = 'PREPARED'",
        MessageOutcome::Cancelled => "m.state = 'CANCELLED'",
        MessageOutcome::Unresolved => "m.state = 'UNRESOLVED'",
        MessageOutcome::Delivering => {
            "m.state = 'CONFIRMED' AND (EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
             AND d.state IN ('PENDING', 'LEASED')) OR NOT EXISTS (SELECT 1 FROM deliveries d \
             WHERE d.message_id = m.id))"
        }
        MessageOutcome::Delivered => {
            "m.state = 'CONFIRMED' AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id) \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
             AND d.state <> 'ACKED')"
        }
        MessageOutcome::DeadLettered => {
            "m.state = 'CONFIRMED' AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id \
             AND d.state IN ('DEAD', 'DISCARDED')) AND NOT EXISTS (SELECT 1 FROM deliveries d \
             WHERE d.message_id = m.id AND d.state IN ('PENDING', 'LEASED'))"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_reads_numbered_placeholders_and_named_indexes() {
        assert_eq!(for_sqlite("a = $1 AND b = $12"), "a = ?1 AND b = ?12");
        assert_eq!(
            for_sqlite("FROM deliveries w /* lane index */ WHERE"),
            "FROM deliveries w INDEXED BY deliveries_lanes WHERE"
        );
        assert_eq!(
            for_sqlite("FROM deliveries d /* dead index */ JOIN"),
            "FROM deliveries d INDEXED BY deliveries_dead JOIN"
        );
    }
}
