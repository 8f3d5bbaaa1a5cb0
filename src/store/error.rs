use crate::domain::{DeliveryState, MessageState};

/// Any error a store call can carry as its cause: a database driver's, a timeout, a stopped
/// writer. Kept whole for the log; clients never see it.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

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
    /// The database cannot be reached right now (connection refused or lost, a timeout, a busy
    /// lock, a stopped writer): the caller may retry.
    #[error("the store is unavailable")]
    Unavailable(#[source] Cause),
    /// The configuration names a store Courier cannot open (a bad `database_url`). Only
    /// opening a store answers it.
    #[error("{0}")]
    InvalidConfig(String),
    /// A bug or corrupt data; the cause goes to the log, never to the client.
    #[error("store failure")]
    Internal(#[source] Cause),
}

impl StoreError {
    pub fn internal(error: impl Into<Cause>) -> Self {
        Self::Internal(error.into())
    }

    pub fn unavailable(error: impl Into<Cause>) -> Self {
        Self::Unavailable(error.into())
    }

    /// The database driver's error behind an Unavailable or Internal answer, if that is what
    /// it carries.
    pub fn sqlx_cause(&self) -> Option<&sqlx::Error> {
        match self {
            Self::Unavailable(cause) | Self::Internal(cause) => cause.downcast_ref(),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    /// Connection-level failures mean the database is away (retry); a database error is
    /// sorted by the backend that raised it; the rest are bugs. A protocol error is a
    /// connection that broke mid-exchange (a cut link answering garbage to the TLS request,
    /// say), not a bug in a query.
    fn from(error: sqlx::Error) -> Self {
        let transient = match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                super::postgres::error::is_transient(db.as_ref())
                    || super::sqlite::error::is_transient(db.as_ref())
            }
            _ => false,
        };
        if transient {
            Self::unavailable(error)
        } else {
            Self::internal(error)
        }
    }
}
