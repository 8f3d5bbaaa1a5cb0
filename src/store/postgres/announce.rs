//! Tells the other replicas what this one did that they should look at, outside the writes
//! themselves.
//!
//! [`DueAnnouncer`]: deliveries became due (a Confirm, a Publish, a Nack, a redrive, an
//! expired lease), so the other replicas wake their long polls and push loops on those
//! subscriptions. Announced right after the write committed, not by the write: PostgreSQL
//! serializes the commits of every transaction that sends a notification (it holds a lock from
//! queueing the notification until after the commit's WAL flush), so a `pg_notify` inside each
//! Confirm batch made batches commit one after another instead of sharing WAL flushes. The
//! listener sends the announcements on its own connection (a notification alone needs no WAL
//! flush) and so can tell its own from other replicas' and ignore them: this replica's waiters
//! were woken at the commit already, and waking them again made them poll for nothing. At
//! most one announcement goes out per [`DUE_GAP`]; names that pile up meanwhile go out
//! together in the next.
//!
//! [`LeaseAnnouncer`]: this replica made leases or prepared messages, so the other replicas'
//! lease-expiry and check-back loops look at the new deadlines: if this replica dies, they end
//! its leases about when they expire and run its first checks about when they are due, not at
//! their idle ceiling. Every Receive leases, and one notification per Receive would wake every
//! replica's scheduler each time, so announcements are debounced to one per [`INTERVAL`]. The
//! first lease statement of a window carries the announcement itself (`pg_notify` commits
//! with the leases, so even a replica killed right after has told the others); leases and
//! Prepares made later in the window are announced when it ends, best effort. That is enough:
//! a woken loop reads the earliest deadline from the database, so it finds every deadline made
//! since, announced or not, once it gets there.
//!
//! Either way a lost announcement (this replica killed between its commit and the
//! announcement, or the database away) costs the other replicas latency, never a delivery or a
//! check: their waiters also look again at their next due time.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::notify::{DEADLINES, DUE};
use crate::domain::Name;

/// Most often one replica announces new leases.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Most often one replica announces due deliveries: what another replica's waiters may wait
/// longer than this one's.
pub const DUE_GAP: Duration = Duration::from_millis(5);

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

/// Subscriptions with new due deliveries, waiting to be announced to the other replicas by
/// the listener's connection (see the module's doc).
#[derive(Default)]
pub struct DueAnnouncer {
    pending: Mutex<BTreeSet<Name>>,
    last: Mutex<Option<Instant>>,
    poke: Notify,
}

impl DueAnnouncer {
    /// Deliveries of `subscriptions` became due in a write that committed.
    pub fn announce(&self, subscriptions: &[Name]) {
        if subscriptions.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for subscription in subscriptions {
            // Most calls find their subscription pending already: no copy of its name then.
            if !pending.contains(subscription) {
                pending.insert(subscription.clone());
            }
        }
        drop(pending);
        self.poke.notify_one();
    }

    /// The names to announce next, once some are pending and [`DUE_GAP`] has passed since the
    /// last announcement. Safe to cancel: names are taken only when answered.
    pub async fn next(&self) -> Vec<String> {
        loop {
            let poked = self.poke.notified();
            tokio::pin!(poked);
            poked.as_mut().enable();
            if self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
            {
                poked.await;
                continue;
            }
            let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(last) = last {
                tokio::time::sleep_until(last + DUE_GAP).await;
            }
            let taken =
                std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
            if !taken.is_empty() {
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                return taken
                    .into_iter()
                    .map(|name| name.as_str().to_owned())
                    .collect();
            }
        }
    }
}

/// Announces `names` (subscriptions with new due deliveries) on `conn`.
pub async fn send_due<'c, E>(conn: E, names: &[String]) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    sqlx::query("SELECT count(pg_notify($1, name)) FROM unnest($2::text[]) AS name")
        .bind(DUE)
        .bind(names)
        .execute(conn)
        .await
        .map(|_| ())
}
