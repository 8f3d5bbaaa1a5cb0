//! What a committed write changed that someone may be waiting for, as a value. Every write
//! operation returns its result with its [`Effects`]; the backend's write path applies them in
//! one place once the write committed (PostgreSQL also tells the other replicas), so no
//! operation wakes anyone itself.

use crate::domain::{LeasedDelivery, Name, Timestamp};
use crate::store::StoreError;
use crate::wakeups::Wakeups;

/// What a write operation answers: its result and its effects.
pub type Written<T> = Result<(T, Effects), StoreError>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[must_use = "effects are applied by the write path once the write committed"]
pub struct Effects {
    /// Subscriptions some of whose deliveries became due (a confirm, a nack, an expired lease,
    /// a redrive, a changed policy): their long polls and the push loop wake. Sorted, once each.
    pub due: Vec<Name>,
    /// The earliest end among leases this write made: the lease-expiry loop may be sleeping
    /// past it.
    pub lease_ends_at: Option<Timestamp>,
    /// The earliest check-back this write scheduled: the check loop may be sleeping past it.
    pub check_due_at: Option<Timestamp>,
    /// Subscriptions were created, changed or deleted: copies of the table are stale.
    pub subscriptions_changed: bool,
}

impl Effects {
    /// Nothing anyone waits for changed.
    pub fn none() -> Self {
        Self::default()
    }

    /// Deliveries of these subscriptions became due.
    pub fn due(subscriptions: impl IntoIterator<Item = Name>) -> Self {
        let mut due: Vec<Name> = subscriptions.into_iter().collect();
        due.sort();
        due.dedup();
        Self {
            due,
            ..Self::default()
        }
    }

    /// A redrive made `redriven` dead deliveries of `subscription` due again.
    pub fn redriven(subscription: &Name, redriven: u64) -> Self {
        if redriven == 0 {
            Self::none()
        } else {
            Self::due([subscription.clone()])
        }
    }

    /// Leases were made that end at `at`.
    pub fn leased_until(at: Timestamp) -> Self {
        Self {
            lease_ends_at: Some(at),
            ..Self::default()
        }
    }

    /// These deliveries were just leased (one lease call: their leases end together).
    pub fn leased(deliveries: &[LeasedDelivery]) -> Self {
        deliveries
            .iter()
            .map(|delivery| Self::leased_until(delivery.lease_expires_at))
            .fold(Self::none(), Self::and)
    }

    /// A check-back of a PREPARED message falls due at `at`.
    pub fn check_due(at: Timestamp) -> Self {
        Self {
            check_due_at: Some(at),
            ..Self::default()
        }
    }

    /// The subscriptions table changed.
    pub fn subscriptions_changed() -> Self {
        Self {
            subscriptions_changed: true,
            ..Self::default()
        }
    }

    /// These effects and `other`'s.
    pub fn and(mut self, other: Effects) -> Self {
        self.due.extend(other.due);
        self.due.sort();
        self.due.dedup();
        self.lease_ends_at = earliest(self.lease_ends_at, other.lease_ends_at);
        self.check_due_at = earliest(self.check_due_at, other.check_due_at);
        self.subscriptions_changed |= other.subscriptions_changed;
        self
    }

    /// Wakes this process's waiters: the long polls and push loop of every due subscription,
    /// and the lease-expiry and check-back loops when new work is due before they planned to
    /// look.
    pub fn wake(&self, wakeups: &Wakeups) {
        for subscription in &self.due {
            wakeups.notify_subscription(subscription.as_str());
        }
        if !self.due.is_empty() {
            // Of the scheduler's loops only push cares about due deliveries (the lease-expiry
            // loop hears of leases through `lease_ends_at`).
            wakeups.notify_push();
        }
        if let Some(at) = self.lease_ends_at {
            wakeups.leases().due_at(at);
        }
        if let Some(at) = self.check_due_at {
            wakeups.checks().due_at(at);
        }
    }
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::from_trusted(text.to_owned())
    }

    #[test]
    fn combined_effects_keep_each_subscription_once_and_the_earliest_times() {
        let combined = Effects::due([name("b"), name("a")])
            .and(Effects::due([name("a")]))
            .and(Effects::leased_until(Timestamp::from_millis(20)))
            .and(Effects::leased_until(Timestamp::from_millis(10)))
            .and(Effects::check_due(Timestamp::from_millis(5)))
            .and(Effects::subscriptions_changed());
        assert_eq!(combined.due, vec![name("a"), name("b")]);
        assert_eq!(combined.lease_ends_at, Some(Timestamp::from_millis(10)));
        assert_eq!(combined.check_due_at, Some(Timestamp::from_millis(5)));
        assert!(combined.subscriptions_changed);
        assert_eq!(Effects::none().and(Effects::none()), Effects::none());
    }
}
