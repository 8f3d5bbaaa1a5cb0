use std::fmt;
use std::time::Duration;

use super::{MessageId, Name, OrderingKey, RetryPolicy, Timestamp, backoff};

/// State of one delivery (one per message and subscription).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    Pending,
    Leased,
    Acked,
    Dead,
    /// Ended for good by an operator (Admin/DiscardDeadLetters): never delivered again.
    Discarded,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 5] = [
        Self::Pending,
        Self::Leased,
        Self::Acked,
        Self::Dead,
        Self::Discarded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Leased => "LEASED",
            Self::Acked => "ACKED",
            Self::Dead => "DEAD",
            Self::Discarded => "DISCARDED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == value)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status of one delivery as reported by CheckStatus and ListDeliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryStatus {
    pub subscription: Name,
    pub message_id: MessageId,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub lease_expires_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// The lane the delivery is in (ordered subscriptions, keyed messages only).
    pub ordering_key: Option<OrderingKey>,
}

/// Names one lease: the delivery (subscription, message) and the lease generation. Encoded as
/// `<message id>:<generation>:<subscription>`; clients treat it as opaque.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt {
    pub message_id: MessageId,
    pub generation: u32,
    pub subscription: Name,
}

impl Receipt {
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.splitn(3, ':');
        let message_id = MessageId::parse(parts.next()?).ok()?;
        let generation = parts.next()?.parse().ok()?;
        let subscription = Name::parse("receipt", parts.next()?).ok()?;
        Some(Self {
            message_id,
            generation,
            subscription,
        })
    }
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.message_id, self.generation, self.subscription
        )
    }
}

/// What an Ack with a given receipt does to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckVerdict {
    /// Mark the delivery ACKED.
    Acknowledge,
    /// Already ACKED: answer OK, change nothing.
    AlreadyAcked,
    /// The delivery was leased again since this receipt was handed out.
    LeaseLost,
    /// No such lease.
    NotFound,
}

/// The ack rule: only the latest lease's receipt acks. It acks a leased delivery, and also one
/// that is unleased again after an expiry (PENDING or DEAD, not leased by anyone since);
/// repeating it on the ACKED delivery stays OK. An older receipt lost its lease even once the
/// newer holder acked: its holder must learn that its work was duplicated. A DISCARDED
/// delivery was ended by an operator and cannot be acked.
pub fn classify_ack(current: Option<(DeliveryState, u32)>, receipt_generation: u32) -> AckVerdict {
    let Some((state, generation)) = current else {
        return AckVerdict::NotFound;
    };
    match receipt_generation.cmp(&generation) {
        std::cmp::Ordering::Greater => AckVerdict::NotFound,
        std::cmp::Ordering::Less => AckVerdict::LeaseLost,
        std::cmp::Ordering::Equal => match state {
            DeliveryState::Acked => AckVerdict::AlreadyAcked,
            DeliveryState::Discarded => AckVerdict::LeaseLost,
            DeliveryState::Pending | DeliveryState::Leased | DeliveryState::Dead => {
                AckVerdict::Acknowledge
            }
        },
    }
}

/// Whether a receipt still holds the lease it names, for Nack, Reject and ExtendLease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseCheck {
    /// The receipt holds the current lease.
    Held,
    /// The lease was given up already in this state by this same receipt (an idempotent repeat).
    Released(DeliveryState),
    /// Another lease exists since, or the delivery is ACKED.
    Lost(DeliveryState),
    NotFound,
}

pub fn check_lease(current: Option<(DeliveryState, u32)>, receipt_generation: u32) -> LeaseCheck {
    let Some((state, generation)) = current else {
        return LeaseCheck::NotFound;
    };
    if receipt_generation > generation {
        return LeaseCheck::NotFound;
    }
    if receipt_generation < generation
        || matches!(state, DeliveryState::Acked | DeliveryState::Discarded)
    {
        return LeaseCheck::Lost(state);
    }
    match state {
        DeliveryState::Leased => LeaseCheck::Held,
        other => LeaseCheck::Released(other),
    }
}

/// Where a delivery goes after a failed attempt (Nack, lease expiry, push failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedeliveryPlan {
    /// PENDING again, due at this time.
    RetryAt(Timestamp),
    /// Out of attempts: DEAD.
    Dead,
}

/// The retry rule: after `attempt` (1-based) failed, retry after `delay` if given, else the
/// policy's backoff; once `attempt` reaches `max_attempts` the delivery is dead.
pub fn plan_redelivery(
    policy: &RetryPolicy,
    attempt: u32,
    failed_at: Timestamp,
    delay: Option<Duration>,
    jitter: f64,
) -> RedeliveryPlan {
    if attempt >= policy.max_attempts {
        return RedeliveryPlan::Dead;
    }
    let wait = delay.unwrap_or_else(|| backoff(policy, attempt, jitter));
    RedeliveryPlan::RetryAt(failed_at.plus(wait))
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryState::*;

    #[test]
    fn receipts_round_trip_and_reject_garbage() {
        let receipt = Receipt {
            message_id: MessageId::new(),
            generation: 7,
            subscription: Name::parse("s", "billing.v2").unwrap(),
        };
        assert_eq!(Receipt::parse(&receipt.to_string()), Some(receipt));
        assert_eq!(Receipt::parse("nonsense"), None);
        assert_eq!(Receipt::parse("not-a-uuid:1:sub"), None);
    }

    #[test]
    fn ack_rules() {
        assert_eq!(classify_ack(Some((Leased, 2)), 2), AckVerdict::Acknowledge);
        assert_eq!(classify_ack(Some((Pending, 2)), 2), AckVerdict::Acknowledge);
        assert_eq!(classify_ack(Some((Leased, 3)), 2), AckVerdict::LeaseLost);
        assert_eq!(classify_ack(Some((Acked, 2)), 2), AckVerdict::AlreadyAcked);
        // A stale receipt learns its work was duplicated, whether or not the newer lease acked.
        assert_eq!(classify_ack(Some((Acked, 3)), 2), AckVerdict::LeaseLost);
        assert_eq!(classify_ack(Some((Discarded, 2)), 2), AckVerdict::LeaseLost);
        assert_eq!(classify_ack(Some((Leased, 1)), 2), AckVerdict::NotFound);
        assert_eq!(classify_ack(None, 1), AckVerdict::NotFound);
    }

    #[test]
    fn lease_checks() {
        assert_eq!(check_lease(Some((Leased, 2)), 2), LeaseCheck::Held);
        assert_eq!(
            check_lease(Some((Pending, 2)), 2),
            LeaseCheck::Released(Pending)
        );
        assert_eq!(check_lease(Some((Leased, 3)), 2), LeaseCheck::Lost(Leased));
        assert_eq!(check_lease(Some((Acked, 2)), 2), LeaseCheck::Lost(Acked));
        assert_eq!(check_lease(None, 2), LeaseCheck::NotFound);
    }

    #[test]
    fn redelivery_dies_at_max_attempts() {
        let policy = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            multiplier: 2.0,
        };
        let now = Timestamp::from_millis(1_000_000);
        assert_eq!(
            plan_redelivery(&policy, 1, now, None, 0.0),
            RedeliveryPlan::RetryAt(now.plus(Duration::from_secs(1)))
        );
        assert_eq!(
            plan_redelivery(&policy, 2, now, Some(Duration::from_millis(5)), 0.0),
            RedeliveryPlan::RetryAt(now.plus(Duration::from_millis(5)))
        );
        assert_eq!(
            plan_redelivery(&policy, 3, now, None, 0.0),
            RedeliveryPlan::Dead
        );
    }
}
