//! Upgrades of databases written by an earlier schema keep what those databases hold.

use sqlx::{Connection, PgConnection};

use super::PostgresStore;
use super::connect::MIGRATOR;
use crate::config::PostgresConfig;
use crate::store::testing::TestDatabase;
use crate::store::upgrade_checks::{OLD_MESSAGES, assert_final_moments_kept, old_state};
use crate::wakeups::Wakeups;

/// The last migration before final moments moved to `final_messages`.
const BEFORE_FINAL_MESSAGES: i64 = 9;

#[tokio::test]
async fn final_moments_move_to_their_own_table_and_retention_still_finds_them() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut old = PgConnection::connect(database.url()).await.unwrap();
    MIGRATOR
        .run_direct(Some(BEFORE_FINAL_MESSAGES), &mut old, false)
        .await
        .unwrap();
    for (id, final_at) in OLD_MESSAGES {
        sqlx::query(
            "INSERT INTO messages (id, producer, topic, key, payload, headers, state, \
             deliver_after_ms, created_at, updated_at, final_at) \
             VALUES ($1::uuid, 'shop', 'orders', $1, '\\x00', '{}', $2, 0, 1, 1, $3)",
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
    let store = PostgresStore::open(
        database.url(),
        &PostgresConfig::default(),
        Wakeups::default(),
    )
    .await
    .unwrap();
    assert_final_moments_kept(&store).await;
}
