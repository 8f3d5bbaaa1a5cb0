//! The one write path of the PostgreSQL backend: a call (timeout, retries) that begins a
//! transaction, runs one operation of `ops` or `scheduling`, queues the notifications that
//! must commit with it, commits, and then applies its effects (this replica's waiters woken,
//! the other replicas told of due deliveries).

use std::future::Future;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;

use sqlx::{Connection, PgConnection};

use super::PostgresStore;
use super::batcher::{Batcher, Limits};
use super::calls::Calls;
use super::notify;
use crate::store::{Effects, StoreError, Written};

/// A future borrowing the transaction it runs in.
pub type TxFuture<'t, T> = Pin<Box<dyn Future<Output = T> + Send + 't>>;

/// The transaction an operation runs in, for as long as `'t`. The second lifetime is the
/// caller's: it tells the compiler that whatever the operation borrows from the caller (a
/// receipt, a name) outlives the transaction, which a plain `for<'t> Fn(&'t mut _)` bound
/// cannot say.
pub struct Tx<'t, 'caller> {
    connection: &'t mut PgConnection,
    _caller: PhantomData<&'t &'caller ()>,
}

impl<'t> Tx<'t, '_> {
    /// The transaction's connection, for the rest of `'t`.
    pub fn into_connection(self) -> &'t mut PgConnection {
        self.connection
    }
}

impl Deref for Tx<'_, '_> {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.connection
    }
}

impl DerefMut for Tx<'_, '_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.connection
    }
}

/// How an operation commits.
#[derive(Clone, Copy)]
enum Commit {
    /// In a transaction of its own, with the notifications of its effects.
    Transaction,
    /// By itself: the operation is one statement, and sends whatever notifications it needs
    /// within it (a round trip each for BEGIN and COMMIT is what the hot paths cannot spare).
    Statement,
}

impl PostgresStore {
    /// Runs `operation` in a transaction of its own (see the module's doc).
    pub(super) async fn write<'caller, T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'t> Fn(Tx<'t, 'caller>) -> TxFuture<'t, Written<T>> + Sync,
    {
        self.run_write(Commit::Transaction, operation).await
    }

    /// Runs `operation`, a single statement, on its own (see [`Commit::Statement`]).
    pub(super) async fn write_statement<'caller, T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'t> Fn(Tx<'t, 'caller>) -> TxFuture<'t, Written<T>> + Sync,
    {
        self.run_write(Commit::Statement, operation).await
    }

    async fn run_write<'caller, T, F>(&self, commit: Commit, operation: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'t> Fn(Tx<'t, 'caller>) -> TxFuture<'t, Written<T>> + Sync,
    {
        let operation = &operation;
        let written = self
            .calls
            .call(move |slot| async move {
                let mut connection = slot.connect().await?;
                match commit {
                    Commit::Statement => operation(Tx::of(&mut connection)).await,
                    Commit::Transaction => {
                        let mut tx = connection.begin().await?;
                        let (value, effects) = operation(Tx::of(&mut tx)).await?;
                        notify::queue(&mut tx, &effects).await?;
                        tx.commit().await?;
                        Ok((value, effects))
                    }
                }
            })
            .await;
        match written {
            Ok((value, effects)) => {
                self.apply(&effects);
                Ok(value)
            }
            Err(error) => {
                if matches!(error, StoreError::Unavailable(_)) {
                    // A call cut short (a timeout after the commit) may still have changed
                    // subscriptions: read them again rather than trust the copy.
                    self.subscriptions.changed();
                }
                Err(error)
            }
        }
    }

    /// What a committed write changed: waiters on this replica woken, and on the others
    /// through the due announcer; the copy of the subscriptions marked stale. New leases and
    /// Prepares are announced to the other replicas by `lease` and `insert_message`
    /// themselves (debounced, and only when the lease statement did not carry the
    /// announcement already).
    pub(super) fn apply(&self, effects: &Effects) {
        effects.wake(&self.wakeups);
        self.due_announcer.announce(&effects.due);
        if effects.subscriptions_changed {
            self.subscriptions.changed();
        }
    }
}

impl<'t> Tx<'t, '_> {
    pub(super) fn of(connection: &'t mut PgConnection) -> Self {
        Self {
            connection,
            _caller: PhantomData,
        }
    }
}

/// Most batches of one kind in flight at once. One: calls that arrive while it runs wait and
/// leave together in the next, so on a busy server PostgreSQL runs fewer, larger statements
/// (the other kinds' batches, leases and Acks keep its cores busy meanwhile). On the 2-core
/// test machine two in flight made smaller batches that cost more CPU per message:
/// Prepare + Confirm at 64 producers 2,879–3,026 msg/s against 3,477–3,785 with one, and
/// confirm-to-delivery p99 at 1,700 msg/s 31–33 ms against 24–29 (docs/performance-log.md).
const BATCHES_IN_FLIGHT: usize = 1;
/// Most calls one batch writes.
const BATCH_ITEMS: usize = 256;
/// Most payload and header bytes one batch sends: 64 messages of 1 KiB. A cap of 12 KiB was
/// set when sqlx 0.9.0 left TCP_NODELAY off (transact-rs/sqlx#4335; fixed in 0.9.1) and a
/// statement larger than a TLS record waited 40 ms for a delayed ACK; with one batch in
/// flight, 12 KiB batches left PostgreSQL most of its per-statement work (Publish at 64
/// producers 3,257–4,118 msg/s against 6,158–6,687 with 64 KiB), and 128 KiB measured no
/// faster.
const BATCH_BYTES: usize = 64 * 1024;

type BatchFuture<'a, D> = TxFuture<'a, Result<Vec<Option<D>>, StoreError>>;

/// A batcher that writes each batch with `write` (one statement, committing by itself), as
/// one call (timeout, retries) of `calls`.
pub(super) fn batched<I, D>(
    calls: &Calls,
    size: fn(&I) -> usize,
    write: for<'a> fn(&'a mut PgConnection, &'a [I]) -> BatchFuture<'a, D>,
) -> Batcher<I, D>
where
    I: Send + Sync + 'static,
    D: Send + 'static,
{
    let calls = calls.clone();
    let limits = Limits {
        items: BATCH_ITEMS,
        bytes: BATCH_BYTES,
        size,
    };
    Batcher::new(BATCHES_IN_FLIGHT, limits, move |items: Vec<I>| {
        let calls = calls.clone();
        async move {
            let items = &items;
            calls
                .call(move |slot| async move { write(&mut *slot.connect().await?, items).await })
                .await
        }
    })
}
