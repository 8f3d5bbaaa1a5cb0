//! Upgrades of databases written by an earlier schema keep what those databases hold.

use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::{MIGRATOR, SqliteStore};
use crate::config::SqliteConfig;
use crate::domain::MessageId;
use crate::store::Store;
use crate::store::upgrade_checks::{OLD_MESSAGES, assert_final_moments_kept, old_state};
use crate::wakeups::Wakeups;

/// The last migration before final moments moved to `final_messages`.
const BEFORE_FINAL_MESSAGES: i64 = 8;

#[tokio::test]
async fn final_moments_and_payloads_move_to_their_own_tables_and_are_still_found() {
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
    for (id, final_at) in OLD_MESSAGES {
        sqlx::query(
            "INSERT INTO messages (id, producer, topic, key, payload, headers, state, \
             deliver_after_ms, created_at, updated_at, final_at) \
             VALUES (?1, 'shop', 'orders', ?1, CAST(?1 AS BLOB), '{}', ?2, 0, 1, 1, ?3)",
        )
        .bind(id)
        .bind(old_state(final_at))
        .bind(final_at)
        .execute(&mut old)
        .await
        .unwrap();
    }
    old.close().await.unwrap();

    // Opening runs the migrations not yet applied.
    let store = SqliteStore::open(&url, &SqliteConfig::default(), Wakeups::default())
        .await
        .unwrap();
    // Each payload (its message id's bytes here) moved to `message_payloads` (migration 0011).
    for (id, _) in OLD_MESSAGES {
        let history = store
            .message_history(MessageId::parse(id).unwrap())
            .await
            .unwrap();
        assert_eq!(history.payload_head, id.as_bytes());
    }
    assert_final_moments_kept(&store).await;
}
