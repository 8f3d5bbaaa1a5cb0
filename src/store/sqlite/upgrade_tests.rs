//! Upgrades of databases written by an earlier schema keep what those databases hold.

use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::{MIGRATOR, SqliteStore};
use crate::config::SqliteConfig;
use crate::domain::Timestamp;
use crate::store::Store;
use crate::wakeups::Wakeups;

/// The last migration before final moments moved to `final_messages`.
const BEFORE_FINAL_MESSAGES: i64 = 8;

/// A message of the old schema: cancelled and final at `final_at`, or confirmed and not final
/// yet (`None`).
async fn insert_old_message(conn: &mut sqlx::SqliteConnection, id: &str, final_at: Option<i64>) {
    let state = if final_at.is_some() {
        "CANCELLED"
    } else {
        "CONFIRMED"
    };
    sqlx::query(
        "INSERT INTO messages (id, producer, topic, key, payload, headers, state, \
         deliver_after_ms, created_at, updated_at, final_at) \
         VALUES (?, 'shop', 'orders', ?, x'00', '{}', ?, 0, 1, 1, ?)",
    )
    .bind(id)
    .bind(id)
    .bind(state)
    .bind(final_at)
    .execute(conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn final_moments_move_to_their_own_table_and_retention_still_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let mut old = SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    MIGRATOR
        .run_direct(Some(BEFORE_FINAL_MESSAGES), &mut old, false)
        .await
        .unwrap();
    let (older, newer, live) = (
        "01900000-0000-7000-8000-000000000001",
        "01900000-0000-7000-8000-000000000002",
        "01900000-0000-7000-8000-000000000003",
    );
    insert_old_message(&mut old, older, Some(1_000)).await;
    insert_old_message(&mut old, newer, Some(5_000)).await;
    insert_old_message(&mut old, live, None).await;
    old.close().await.unwrap();

    // Opening runs the migrations not yet applied.
    let store = SqliteStore::open(&url, &SqliteConfig::default(), Wakeups::default())
        .await
        .unwrap();
    assert_eq!(
        store.oldest_final_at().await.unwrap(),
        Some(Timestamp::from_millis(1_000))
    );
    assert_eq!(
        store
            .delete_final_messages(Timestamp::from_millis(2_000), 10)
            .await
            .unwrap(),
        1,
        "only the message final before the cutoff goes"
    );
    assert_eq!(
        store.oldest_final_at().await.unwrap(),
        Some(Timestamp::from_millis(5_000))
    );
    assert_eq!(
        store
            .delete_final_messages(Timestamp::from_millis(i64::MAX), 10)
            .await
            .unwrap(),
        1,
        "a message that never became final stays"
    );
    assert_eq!(store.oldest_final_at().await.unwrap(), None);
}
