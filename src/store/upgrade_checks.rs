//! What both backends' upgrade tests check after moving final moments out of `messages`
//! (SQLite's migration 0009, PostgreSQL's 0010): the same three old messages, and retention
//! finding exactly the final ones, oldest first.

use crate::domain::Timestamp;
use crate::store::Store;

/// Messages as the old schema held them: id and `final_at` (cancelled and final then, or
/// confirmed and not final yet: `None`).
pub const OLD_MESSAGES: [(&str, Option<i64>); 3] = [
    ("01900000-0000-7000-8000-000000000001", Some(1_000)),
    ("01900000-0000-7000-8000-000000000002", Some(5_000)),
    ("01900000-0000-7000-8000-000000000003", None),
];

/// The state an old message of [`OLD_MESSAGES`] was in.
pub fn old_state(final_at: Option<i64>) -> &'static str {
    if final_at.is_some() {
        "CANCELLED"
    } else {
        "CONFIRMED"
    }
}

/// Checks that the upgraded `store` holds the final moments of [`OLD_MESSAGES`].
pub async fn assert_final_moments_kept(store: &impl Store) {
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
