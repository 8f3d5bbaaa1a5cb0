//! The statements a busy server runs most read the indexes written for them. Without
//! statistics SQLite's planner may choose another path (the primary key, which reads every
//! delivery a subscription ever had), and nothing but the time it takes would show it.

use rusqlite::Connection;

use super::leases::lease_candidates;
use super::ops::SUBSCRIPTIONS_OF_TOPIC;
use super::reads::SqliteDialect;
use super::test_database::TestDatabase;
use crate::store::reads::Dialect;
use crate::store::sql::BLOCKED_LANES;

/// The plan SQLite makes for `sql` on a database with every migration applied.
fn plan(conn: &Connection, sql: &str) -> String {
    let mut statement = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("the statement prepares");
    let binds = vec![rusqlite::types::Null; statement.parameter_count()];
    let rows = statement
        .query_map(rusqlite::params_from_iter(binds), |row| {
            row.get::<_, String>(3)
        })
        .expect("the plan is read");
    rows.map(|row| row.expect("a plan row"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn leases_read_the_pending_index_and_dead_letter_reads_the_dead_one() {
    let TestDatabase { conn, .. } = &TestDatabase::open().await;

    let lease = plan(conn, &lease_candidates(256));
    assert!(
        lease
            .contains("SEARCH d USING INDEX deliveries_due (subscription=? AND next_attempt_at<?)"),
        "{lease}"
    );
    let blocked = plan(conn, BLOCKED_LANES);
    assert!(blocked.contains("deliveries_dead"), "{blocked}");
    // A page of dead letters reads the dead, in message order, not every delivery kept.
    let dead = plan(conn, &SqliteDialect::dead_letters_sql());
    assert!(
        dead.contains("SEARCH d USING INDEX deliveries_dead (subscription=?)"),
        "{dead}"
    );
    assert!(!dead.contains("TEMP B-TREE"), "{dead}");
}

/// Every Prepare and Confirm reads its topic's subscriptions: from one index, in its order,
/// without a sort of its own.
#[tokio::test]
async fn subscriptions_of_a_topic_come_from_one_index_in_order() {
    let TestDatabase { conn, .. } = &TestDatabase::open().await;

    let subscriptions = plan(conn, SUBSCRIPTIONS_OF_TOPIC);
    assert!(
        subscriptions.contains("USING COVERING INDEX subscriptions_by_topic_and_name (topic=?)"),
        "{subscriptions}"
    );
    assert!(!subscriptions.contains("TEMP B-TREE"), "{subscriptions}");
}

/// The metrics scrape's counts read indexes of live rows only, never a table's every row.
#[tokio::test]
async fn live_counts_read_only_live_rows() {
    use crate::store::sql::{LIVE_DELIVERY_COUNTS, LIVE_MESSAGE_COUNTS, for_sqlite};
    let TestDatabase { conn, .. } = &TestDatabase::open().await;

    let messages = plan(conn, &for_sqlite(LIVE_MESSAGE_COUNTS));
    for index in [
        "messages_check_due",
        "messages_unresolved",
        "messages_unrouted",
    ] {
        assert!(messages.contains(index), "{messages}");
    }
    let deliveries = plan(conn, &for_sqlite(LIVE_DELIVERY_COUNTS));
    for index in [
        "deliveries_due (subscription=?)",
        "deliveries_leases",
        "deliveries_dead (subscription=?)",
        "deliveries_discarded (subscription=?)",
    ] {
        assert!(deliveries.contains(index), "{deliveries}");
    }
    assert!(!messages.contains("SCAN messages;"), "{messages}");
    assert!(!deliveries.contains("SCAN d;"), "{deliveries}");
}
