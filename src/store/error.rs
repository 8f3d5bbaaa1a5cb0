use crate::domain::{DeliveryState, MessageState};

/// What can go wrong in a store call. Each variant maps to one gRPC code in `api::status`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// A transition the message state machine forbids.
    #[error("message is {current}")]
    MessageConflict { current: MessageState },
    /// The receipt no longer holds the lease, or the delivery is final.
    #[error("lease lost: the delivery is {current} under a newer lease or final")]
    LeaseLost { current: DeliveryState },
    /// Any other rule broken by the request (no subscription on the topic, topic change...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The database cannot be reached (connection refused or lost, pool timeout).
    #[error("the store is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("{0}")]
    Unsupported(String),
    /// A bug or corrupt data; the cause goes to the log, never to the client.
    #[error("store failure")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }
}

impl From<sqlx::Error> for StoreError {
    /// Connection-level failures mean the database is away (retry); the rest are bugs. A
    /// protocol error is a connection that broke mid-exchange (a cut link answering garbage to
    /// the TLS request, say), not a bug in a query.
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(error),
            sqlx::Error::Database(ref db) if is_unavailable_code(db.code().as_deref()) => {
                Self::Unavailable(error)
            }
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    /// The SQLite writer's errors: busy or locked (another process holds the database) means
    /// retry later; the rest are bugs.
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Self::Unavailable(sqlx::Error::Io(std::io::Error::other(error)))
            }
            _ => Self::Internal(Box::new(error)),
        }
    }
}

impl From<rusqlite::types::FromSqlError> for StoreError {
    fn from(error: rusqlite::types::FromSqlError) -> Self {
        Self::Internal(Box::new(error))
    }
}

/// SQLSTATE classes of PostgreSQL (08 connection, 57P0x shutdown, 53 resources, 57014 a
/// statement cancelled by statement_timeout, 55P03 lock timeout, 40001/40P01 a transaction
/// aborted by a serialization conflict or deadlock) and SQLite's busy/locked codes:
/// transient, so clients should retry.
fn is_unavailable_code(code: Option<&str>) -> bool {
    match code {
        Some(code) => {
            code.starts_with("08")
                || code.starts_with("57P0")
                || code.starts_with("53")
                || matches!(code, "57014" | "55P03" | "40001" | "40P01")
                || code == "5"
                || code == "6"
                || code == "261"
                || code == "517"
        }
        None => false,
    }
}
