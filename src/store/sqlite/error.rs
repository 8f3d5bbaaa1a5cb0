//! SQLite's error codes, sorted: busy or locked (another process holds the database) and a
//! full disk mean retry later; the rest are bugs.

use sqlx::error::DatabaseError;
use sqlx::sqlite::SqliteError;

use crate::store::StoreError;

/// A busy or locked database, or a full disk, as the read pool (sqlx) reports it.
pub fn is_transient(error: &(dyn DatabaseError + 'static)) -> bool {
    error.try_downcast_ref::<SqliteError>().is_some()
        // SQLITE_BUSY, SQLITE_LOCKED and their extended codes (BUSY_RECOVERY,
        // LOCKED_SHAREDCACHE), and SQLITE_FULL.
        && matches!(error.code().as_deref(), Some("5" | "6" | "261" | "517" | "13"))
}

/// Busy, locked, or the disk is full: the write may succeed later, so the client may retry.
fn is_transient_writer_error(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::DiskFull
        )
    )
}

impl From<rusqlite::Error> for StoreError {
    /// The writer's errors (rusqlite).
    fn from(error: rusqlite::Error) -> Self {
        if is_transient_writer_error(&error) {
            Self::unavailable(error)
        } else {
            Self::internal(error)
        }
    }
}

/// What each caller of a batch that did not commit is answered.
pub fn batch_not_committed(error: &rusqlite::Error) -> StoreError {
    let cause = format!("the batch holding this write did not commit: {error}");
    if is_transient_writer_error(error) {
        StoreError::unavailable(cause)
    } else {
        StoreError::internal(cause)
    }
}

impl From<rusqlite::types::FromSqlError> for StoreError {
    fn from(error: rusqlite::types::FromSqlError) -> Self {
        Self::internal(error)
    }
}

/// The writer thread is gone: nothing can be written until Courier restarts.
#[derive(Debug, thiserror::Error)]
#[error("the SQLite writer has stopped")]
pub struct WriterStopped;

pub fn writer_stopped() -> StoreError {
    StoreError::unavailable(WriterStopped)
}

/// `database_url` names no SQLite file Courier can use.
pub fn invalid_url(reason: impl std::fmt::Display) -> StoreError {
    StoreError::InvalidConfig(format!("database_url: {reason}"))
}
