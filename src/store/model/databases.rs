//! Databases for the sequences. Creating one is slow (PostgreSQL: about a second with its
//! migrations, more than a whole sequence), so sequences share one: each empties it through
//! the Store itself when it ends, and proves it empty. A sequence that failed leaves its
//! database behind and the next gets a fresh one, so shrinking never meets leftovers.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;

use super::state::Model;
use crate::domain::{Decision, MessageRef, MessageState, Name, Timestamp};
use crate::store::StatsScope;
use crate::store::conformance::TestStore;

pub type Open = fn() -> Pin<Box<dyn Future<Output = Option<TestStore>>>>;

pub struct Databases {
    open: Open,
    clean: RefCell<Option<TestStore>>,
}

impl Databases {
    pub fn new(open: Open) -> Self {
        Self {
            open,
            clean: RefCell::new(None),
        }
    }

    /// An empty database: the one the last sequence emptied, or a new one (None when the
    /// backend's tests skip).
    pub async fn take(&self) -> Option<TestStore> {
        let clean = self.clean.borrow_mut().take();
        match clean {
            Some(test) => Some(test),
            None => (self.open)().await,
        }
    }

    /// Empties the database a sequence passed on and keeps it for the next one.
    pub async fn give_back(&self, test: TestStore, model: &Model) -> Result<(), String> {
        empty(&test, model).await?;
        *self.clean.borrow_mut() = Some(test);
        Ok(())
    }
}

/// Settles every open message, deletes every subscription (and so every delivery), deletes
/// every message by retention, then checks that nothing is left.
async fn empty(test: &TestStore, model: &Model) -> Result<(), String> {
    let store = test.store.as_ref();
    let fail = |e| format!("emptying the database: {e:?}");
    for message in model.messages.iter().filter(|m| !m.deleted) {
        if matches!(
            message.state,
            MessageState::Prepared | MessageState::Unresolved
        ) {
            let by_id = MessageRef::Id(message.id);
            store
                .decide(&by_id, Decision::Rollback, model.now)
                .await
                .map_err(fail)?;
        }
    }
    for name in model.subscriptions.keys() {
        let name = Name::from_trusted(name.clone());
        store.delete_subscription(&name).await.map_err(fail)?;
    }
    // Final at the deletes (wall-clock time on SQLite): any cutoff will do.
    let cutoff = Timestamp::from_millis(i64::MAX);
    while store
        .delete_final_messages(cutoff, 10_000)
        .await
        .map_err(fail)?
        > 0
    {}
    let stats = store
        .stats(model.now, StatsScope::Full)
        .await
        .map_err(fail)?;
    let left = (
        stats.topics.len(),
        stats.subscriptions.len(),
        store.next_check_due().await.map_err(fail)?,
        store.next_lease_expiry().await.map_err(fail)?,
        store.oldest_final_at().await.map_err(fail)?,
    );
    if left != (0, 0, None, None, None) {
        return Err(format!("emptying the database left {stats:?}"));
    }
    Ok(())
}
