//! SQLite's error codes, sorted: busy or locked (another process holds the database) means
//! retry later; the rest are bugs.

use sqlx::error::DatabaseError;
use sqlx::sqlite::SqliteError;

use crate::store::StoreError;

/// A busy or locked database, as the read pool (sqlx) reports it.
pub fn is_transient(error: &(dyn DatabaseError + 'static)) -> bool {
    error.try_downcast_ref::<SqliteError>().is_some()
        // SQLITE_BUSY, SQLITE_LOCKED and their extended codes (BUSY_RECOVERY, LOCKED_SHAREDCACHE).
        && matches!(error.code().as_deref(), Some("5" | "6" | "261" | "517"))
}

impl From<rusqlite::Error> for StoreError {
    /// The writer's errors (rusqlite).
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Self::unavailable(error)
            }
            _ => Self::internal(error),
        }
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
