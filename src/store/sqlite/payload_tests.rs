//! Payloads live in a table of their own (migration 0011): written once, read back whole, and
//! deleted with their message, so retention leaves none behind.

use std::time::Duration;

use rusqlite::Connection;

use super::test_database::TestDatabase;
use crate::domain::Timestamp;
use crate::store::Batch;
use crate::store::Store;
use crate::store::conformance::helpers::{SUB, TOPIC, publish, subscription};

fn payload_rows(conn: &Connection) -> i64 {
    conn.query_row("SELECT COUNT(*) FROM message_payloads", [], |row| {
        row.get(0)
    })
    .unwrap()
}

#[tokio::test]
async fn a_payload_is_written_once_and_leaves_with_its_message() {
    let TestDatabase { store, conn, .. } = &TestDatabase::open().await;
    let now = Timestamp::now();
    let sub = subscription(SUB, TOPIC, 5, now);
    store.create_subscription(sub.clone()).await.unwrap();

    let id = publish(store, "kept-apart", now).await;
    // The same Prepare again is answered from the stored payload, not written twice.
    publish(store, "kept-apart", now).await;
    assert_eq!(payload_rows(conn), 1);
    let leased = store.lease(&sub, Batch::messages(1), now).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].receipt.message_id, id);
    assert!(
        !leased[0].payload.is_empty(),
        "the lease reads the payload back"
    );

    store.ack(&[leased[0].receipt.clone()], now).await.unwrap();
    let far = now.plus(Duration::from_secs(3_600));
    assert_eq!(store.delete_final_messages(far, 10).await.unwrap(), 1);
    assert_eq!(payload_rows(conn), 0, "retention deletes the payload too");
}
