//! Store calls on the pool: each bounded by the call timeout, run again when PostgreSQL
//! aborted its transaction for a deadlock or serialization conflict, and given a connection
//! that is closed rather than returned when the call was abandoned mid-flight.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::sync::Notify;

use super::error::{is_conflict, timed_out};
use crate::store::StoreError;

/// Attempts of a transaction that PostgreSQL aborted for a deadlock or a serialization
/// conflict: both are safe to run again from the start.
const TRANSACTION_ATTEMPTS: u32 = 3;

#[derive(Clone)]
pub struct Calls {
    pool: PgPool,
    /// Longest a store call may take before it answers Unavailable, so a database that stops
    /// answering (a cut network) cannot hang callers.
    timeout: Duration,
    /// Tells the listener to check its connection now: a call just found the database away.
    check_listener: Arc<Notify>,
}

impl Calls {
    /// The pool itself, for tests that hold connections outside any call.
    #[cfg(test)]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn new(pool: PgPool, timeout: Duration, check_listener: Arc<Notify>) -> Self {
        Self {
            pool,
            timeout,
            check_listener,
        }
    }

    /// Runs one call within the call timeout; runs it again (up to [`TRANSACTION_ATTEMPTS`])
    /// when PostgreSQL aborted its transaction for a deadlock or serialization conflict. The
    /// attempt takes its connection from the [`CallSlot`] it is given.
    pub async fn call<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut(CallSlot) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            let slot = CallSlot::new(self.pool.clone());
            let outcome = tokio::time::timeout(self.timeout, attempt(slot.clone())).await;
            slot.settle(outcome.is_ok());
            match outcome {
                Err(_) => break Err(timed_out(self.timeout)),
                Ok(Err(error)) if attempts < TRANSACTION_ATTEMPTS && is_conflict(&error) => {
                    tracing::debug!(error = %error, attempts, "transaction aborted; running it again");
                }
                Ok(result) => break result,
            }
        };
        if matches!(result, Err(StoreError::Unavailable(_))) {
            // The listener's connection may be just as dead, without knowing it yet.
            self.check_listener.notify_one();
        }
        result
    }
}

/// Where one call attempt gets its connection, and where the connection waits while the
/// call decides its fate. An attempt that ran to the end hands its connection back to the
/// pool. One cancelled mid-flight by the call timeout may have left it inside a message, and
/// sqlx tests a returned connection with a ping that has no timeout: on a dead network path
/// that ping, and the pool slot with it, would hang until TCP gives up. Such a connection is
/// closed instead, which sqlx bounds.
#[derive(Clone)]
pub struct CallSlot {
    pool: PgPool,
    parked: Arc<Mutex<Option<PoolConnection<Postgres>>>>,
}

impl CallSlot {
    fn new(pool: PgPool) -> Self {
        Self {
            pool,
            parked: Arc::default(),
        }
    }

    /// A connection for this attempt; parked in the slot when the attempt drops it.
    pub async fn connect(&self) -> Result<CallConnection, StoreError> {
        Ok(CallConnection {
            connection: Some(self.pool.acquire().await?),
            slot: self.clone(),
        })
    }

    /// Releases the parked connection: to the pool if the attempt finished, else closed.
    fn settle(&self, finished: bool) {
        let parked = self
            .parked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(mut connection) = parked
            && !finished
        {
            connection.close_on_drop();
        }
    }
}

pub struct CallConnection {
    connection: Option<PoolConnection<Postgres>>,
    slot: CallSlot,
}

impl Deref for CallConnection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.connection.as_ref().expect("present until dropped")
    }
}

impl DerefMut for CallConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.connection.as_mut().expect("present until dropped")
    }
}

impl Drop for CallConnection {
    fn drop(&mut self) {
        *self
            .slot
            .parked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = self.connection.take();
    }
}
