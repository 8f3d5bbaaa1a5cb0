//! How replicas tell each other what a write changed: PostgreSQL notifications, one channel
//! per kind, turned back into [`Notification`]s by every replica's listener. A changed
//! subscriptions table is told by the writing transaction (so only if it commits); due
//! deliveries and new deadlines right after the commit (`announce`).

use sqlx::PgConnection;

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

/// Queues the notifications of `effects` that must commit with the write: a changed
/// subscriptions table, which PostgreSQL sends to every listener when (and only if) the
/// transaction commits. Due deliveries and new deadlines are announced after the commit
/// (`announce`).
pub async fn queue(conn: &mut PgConnection, effects: &Effects) -> Result<(), StoreError> {
    if effects.subscriptions_changed {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(SUBSCRIPTIONS)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
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
