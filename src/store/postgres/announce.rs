//! Tells the other replicas that this one made leases or prepared messages, so their
//! lease-expiry and check-back loops look at the new deadlines: if this replica dies, they end
//! its leases about when they expire and run its first checks about when they are due, not at
//! their idle ceiling. Every Receive leases, and one notification per Receive would wake every
//! replica's scheduler each time, so announcements are debounced to one per [`INTERVAL`]. The
//! first lease statement of a window carries the announcement itself (`pg_notify` commits
//! with the leases, so even a replica killed right after has told the others); leases and
//! Prepares made later in the window are announced when it ends, best effort. That is enough:
//! a woken loop reads the earliest deadline from the database, so it finds every deadline made
//! since, announced or not, once it gets there. A lost announcement costs takeover latency,
//! never a delivery or a check.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::notify::DEADLINES;

/// Most often one replica announces new leases.
pub const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct LeaseAnnouncer {
    last: Mutex<Option<Instant>>,
    pending: AtomicBool,
    poke: Notify,
}

impl LeaseAnnouncer {
    /// Whether the lease transaction about to commit should carry an announcement (the first
    /// in its window); claims the window if so.
    pub fn claim(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(at) if at.elapsed() < INTERVAL => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }

    /// Whether a lease statement about to run should carry an announcement: none was sent in
    /// this window yet. Two statements that both ask may both announce, which is harmless.
    pub fn due(&self) -> bool {
        self.window_left().is_zero()
    }

    /// A lease statement carried an announcement and made leases: the window starts now.
    pub fn sent(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Leases committed without an announcement: announce them when the window ends.
    pub fn defer(&self) {
        self.pending.store(true, Ordering::SeqCst);
        self.poke.notify_one();
    }

    fn window_left(&self) -> Duration {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.map_or(Duration::ZERO, |at| INTERVAL.saturating_sub(at.elapsed()))
    }

    /// Sends the deferred announcements until `shutdown`.
    pub async fn run(&self, pool: PgPool, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.poke.notified() => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.window_left()) => {}
            }
            // If another lease transaction claimed the window meanwhile, its announcement
            // commits after these leases did, and covers them.
            if self.pending.swap(false, Ordering::SeqCst) && self.claim() {
                let sent = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(DEADLINES)
                    .execute(&pool)
                    .await;
                if let Err(error) = sent {
                    tracing::debug!(error = %error, "could not announce new leases to other replicas");
                }
            }
        }
    }
}
