//! Background work: lease expiry, check-back of prepared messages, push delivery, and
//! retention. Each loop sleeps until its next due time or a wake-up (never a fixed short
//! tick), does one pass, and stops on the cancellation token; a crash at any point loses
//! nothing, because every claim and lease runs out by itself and the work is done again. A pass
//! of every loop can also be run directly ([`Scheduler::run_once`]) so tests drive the
//! scheduler without sleeping.

mod checks;
mod lease_expiry;
mod push;
mod retention;
mod sleep;

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use checks::CheckCounts;
pub use push::PushCounts;

use crate::callbacks::Callbacks;
use crate::config::Config;
use crate::domain::Timestamp;
use crate::store::{Store, StoreError};
use crate::wakeups::Wakeups;

/// What one pass of every loop did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub leases_expired: u64,
    pub checks: CheckCounts,
    pub pushes: PushCounts,
    /// Final messages deleted after their retention.
    pub messages_deleted: u64,
}

/// The scheduler's loops over one store. Cloning shares the loops' state (slots, channels).
#[derive(Clone)]
pub struct Scheduler {
    store: Arc<dyn Store>,
    wakeups: Wakeups,
    checks: Arc<checks::CheckBack>,
    push: Arc<push::Dispatcher>,
    retention: Arc<retention::Retention>,
}

impl Scheduler {
    /// Checks and pushes go out through `callbacks`.
    pub fn new(
        store: Arc<dyn Store>,
        wakeups: Wakeups,
        config: &Config,
        callbacks: Arc<Callbacks>,
    ) -> Self {
        Self {
            checks: Arc::new(checks::CheckBack::new(
                store.clone(),
                wakeups.clone(),
                callbacks.clone(),
                &config.checks,
            )),
            push: Arc::new(push::Dispatcher::new(
                store.clone(),
                wakeups.clone(),
                callbacks,
                &config.push,
            )),
            retention: Arc::new(retention::Retention::new(
                store.clone(),
                config.retention.final_messages,
            )),
            store,
            wakeups,
        }
    }

    /// The store the scheduler works on (the server's own), for tools that inspect it.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs one pass of every loop as of `now`, waiting for every check and push it starts,
    /// and reports what it did. Order matters: leases expire first, checks run before pushes
    /// (so a COMMIT's deliveries go out in the same pass), retention last. Passing a `now`
    /// in the future steps through backoffs and retention without sleeping.
    pub async fn run_once(&self, now: Timestamp) -> Result<PassReport, StoreError> {
        Ok(PassReport {
            leases_expired: lease_expiry::pass(self.store.as_ref(), now).await?,
            checks: self.checks.pass(now).await?,
            pushes: self.push.pass(now).await?,
            messages_deleted: self.retention.pass(now).await?,
        })
    }

    /// Starts every loop on `tracker`; they (and the checks and pushes they started) stop
    /// when `shutdown` is cancelled.
    pub fn spawn(self, shutdown: CancellationToken, tracker: &TaskTracker) {
        tracker.spawn(lease_expiry::run(
            self.store.clone(),
            self.wakeups.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(self.checks.run(shutdown.clone(), tracker.clone()));
        tracker.spawn(self.push.run(shutdown.clone(), tracker.clone()));
        tracker.spawn(self.retention.run(shutdown));
    }
}

/// Takes up to `most` permits that are free right now, without waiting.
fn take_permits(semaphore: &Arc<Semaphore>, most: usize) -> Vec<OwnedSemaphorePermit> {
    let mut permits = Vec::new();
    while permits.len() < most {
        match semaphore.clone().try_acquire_owned() {
            Ok(permit) => permits.push(permit),
            Err(_) => break,
        }
    }
    permits
}

/// Longest error text stored as a message's `last_check_error` or a delivery's `last_error`:
/// a remote endpoint chooses what it answers, and it must not bloat the database.
const MAX_ERROR_BYTES: usize = 1024;

/// A remote endpoint's error as it is stored: clipped, and without the U+0000 PostgreSQL
/// cannot keep.
fn clip_error(error: String) -> String {
    let mut error = crate::domain::storable_lossy(error);
    if error.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
        error.push('…');
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_clipped_on_a_char_boundary() {
        let clipped = clip_error("é".repeat(1000));
        assert!(clipped.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
        assert!(clipped.ends_with('…'));
        assert_eq!(clip_error("short".into()), "short");
    }

    #[test]
    fn permits_are_taken_without_waiting() {
        let semaphore = Arc::new(Semaphore::new(3));
        let first = take_permits(&semaphore, 2);
        assert_eq!(first.len(), 2);
        assert_eq!(take_permits(&semaphore, 5).len(), 1);
        drop(first);
        assert_eq!(semaphore.available_permits(), 3);
    }
}
