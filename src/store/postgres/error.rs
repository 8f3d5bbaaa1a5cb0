//! PostgreSQL's error codes, sorted: which mean "the database is away, retry" and which mean
//! "run the transaction again".

use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::postgres::PgDatabaseError;

use crate::store::StoreError;

/// SQLSTATE classes that are transient, so clients should retry: 08 connection, 57P0x
/// shutdown, 53 resources, 57014 a statement cancelled by statement_timeout, 55P03 lock
/// timeout, and 40001/40P01 a transaction aborted by a serialization conflict or deadlock.
pub fn is_transient(error: &(dyn DatabaseError + 'static)) -> bool {
    let Some(error) = error.try_downcast_ref::<PgDatabaseError>() else {
        return false;
    };
    let code = error.code();
    code.starts_with("08")
        || code.starts_with("57P0")
        || code.starts_with("53")
        || matches!(code, "57014" | "55P03")
        || is_conflict_code(code)
}

/// Deadlock and serialization failures: PostgreSQL rolled the transaction back and running it
/// again from the start is safe.
pub fn is_conflict(error: &StoreError) -> bool {
    match error.sqlx_cause() {
        Some(sqlx::Error::Database(db)) => db
            .try_downcast_ref::<PgDatabaseError>()
            .is_some_and(|db| is_conflict_code(db.code())),
        _ => false,
    }
}

fn is_conflict_code(code: &str) -> bool {
    matches!(code, "40001" | "40P01")
}

/// A call or connection attempt the database did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("the database did not answer within {}", humantime::format_duration(*.0))]
pub struct TimedOut(pub Duration);

pub fn timed_out(after: Duration) -> StoreError {
    StoreError::unavailable(TimedOut(after))
}

/// `database_url` does not parse as a PostgreSQL URL. The value is never quoted: it may hold
/// a password.
pub fn invalid_url() -> StoreError {
    StoreError::InvalidConfig(
        "database_url is not a valid PostgreSQL URL (the value is not shown; it may hold a password)"
            .into(),
    )
}
