//! How replicas tell each other what a write changed: PostgreSQL notifications, one channel
//! per kind, turned back into [`Notification`]s by every replica's listener. Subscription
//! changes are sent by the writing transaction (so only if it commits); due deliveries by the
//! [`DueNotifier`], after the commit.

use std::collections::BTreeSet;
use std::sync::Mutex;

use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::Name;
use crate::store::{Effects, StoreError};

/// Deliveries of a subscription became due; the payload is the subscription's name.
pub const DUE: &str = "courier_due";
/// A replica made leases or prepared messages: other replicas' lease-expiry and check-back
/// loops look at the new deadlines, so they take over if that replica dies. No payload.
pub const DEADLINES: &str = "courier_deadlines";
/// The subscriptions table changed: replicas read their copy again. No payload.
pub const SUBSCRIPTIONS: &str = "courier_subscriptions";

/// Every channel a replica listens on.
pub const CHANNELS: [&str; 3] = [DUE, DEADLINES, SUBSCRIPTIONS];

/// What another replica's write changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    Due(Name),
    DeadlinesChanged,
    SubscriptionsChanged,
}

impl Notification {
    /// The notification sent on `channel` with `payload`; `None` for anything that is not
    /// Courier's.
    pub fn parse(channel: &str, payload: &str) -> Option<Self> {
        match channel {
            DUE => Name::parse("notification", payload).ok().map(Self::Due),
            DEADLINES => Some(Self::DeadlinesChanged),
            SUBSCRIPTIONS => Some(Self::SubscriptionsChanged),
            _ => None,
        }
    }
}

/// Queues the subscription change of `effects` in the current transaction: PostgreSQL sends
/// it to every listener when (and only if) it commits, so no replica keeps a stale copy of a
/// subscription past a committed change. Due deliveries go through the [`DueNotifier`] and
/// deadlines through `announce`.
pub async fn queue(conn: &mut PgConnection, effects: &Effects) -> Result<(), StoreError> {
    if effects.subscriptions_changed {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(SUBSCRIPTIONS)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Tells the other replicas which subscriptions have deliveries due, after the writes that
/// made them due committed. PostgreSQL lets one notifying transaction commit at a time (it
/// holds a lock on the notification queue from before its commit until the commit is flushed),
/// so notifications sent by the hot statements themselves made their commits, and WAL
/// flushes, take turns. Here they are not part of any write: one task sends what is queued in
/// one transaction, then what was queued meanwhile, each subscription once. This replica
/// wakes its own waiters at the commit (`Effects::wake`); a notification lost to a crash
/// costs the other replicas latency, never a delivery (they look again at their next due time).
#[derive(Default)]
pub struct DueNotifier {
    pending: Mutex<BTreeSet<Name>>,
    poke: Notify,
}

impl DueNotifier {
    /// Queues a notification for each subscription of `due`.
    pub fn queue(&self, due: &[Name]) {
        if due.is_empty() {
            return;
        }
        self.lock().extend(due.iter().cloned());
        self.poke.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<Name>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the queued notifications until `shutdown`.
    pub async fn run(&self, pool: PgPool, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.poke.notified() => {}
            }
            let due: Vec<String> = std::mem::take(&mut *self.lock())
                .iter()
                .map(Name::to_string)
                .collect();
            if due.is_empty() {
                continue;
            }
            let sent = sqlx::query("SELECT pg_notify($1, name) FROM unnest($2::text[]) AS name")
                .bind(DUE)
                .bind(&due)
                .execute(&pool)
                .await;
            if let Err(error) = sent {
                tracing::debug!(error = %error, "could not tell other replicas of due deliveries");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_told_apart_by_channel() {
        assert_eq!(
            Notification::parse(DUE, "orders"),
            Some(Notification::Due(Name::from_trusted("orders".into())))
        );
        assert_eq!(Notification::parse(DUE, ""), None);
        assert_eq!(
            Notification::parse(DEADLINES, ""),
            Some(Notification::DeadlinesChanged)
        );
        assert_eq!(
            Notification::parse(SUBSCRIPTIONS, ""),
            Some(Notification::SubscriptionsChanged)
        );
        assert_eq!(Notification::parse("someone_else", "orders"), None);
    }
}
