use std::collections::BTreeMap;
use std::fmt;

use super::{
    DeliveryState, DeliveryStatus, MessageId, MessageKey, Name, OrderingKey, Quoted, Timestamp,
};

/// Message headers, kept sorted so equal maps serialize (and compare) identically.
pub type Headers = BTreeMap<String, String>;

/// Persisted state of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageState {
    Prepared,
    Confirmed,
    Cancelled,
    Unresolved,
}

impl MessageState {
    pub const ALL: [MessageState; 4] = [
        Self::Prepared,
        Self::Confirmed,
        Self::Cancelled,
        Self::Unresolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prepared => "PREPARED",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
            Self::Unresolved => "UNRESOLVED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == value)
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Confirmed | Self::Cancelled)
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A final decision on a prepared message, from the producer, its checker or an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Commit,
    Rollback,
}

impl Decision {
    pub fn target(self) -> MessageState {
        match self {
            Self::Commit => MessageState::Confirmed,
            Self::Rollback => MessageState::Cancelled,
        }
    }
}

/// What a decision does to a message in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The message moves to this state.
    To(MessageState),
    /// The message is already in the decided state: an idempotent repeat.
    AlreadyThere(MessageState),
    /// The decision contradicts the message's final state.
    Contradicts(MessageState),
}

/// The message state machine for decisions: PREPARED and UNRESOLVED accept either decision;
/// final states accept only the decision that made them.
pub fn decide(current: MessageState, decision: Decision) -> Transition {
    let target = decision.target();
    match current {
        MessageState::Prepared | MessageState::Unresolved => Transition::To(target),
        final_state if final_state == target => Transition::AlreadyThere(final_state),
        final_state => Transition::Contradicts(final_state),
    }
}

/// Where a message stands as a whole (CheckStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageOutcome {
    Prepared,
    Cancelled,
    Unresolved,
    Delivering,
    Delivered,
    DeadLettered,
}

/// Derives the outcome from the message state and its deliveries' states. A confirmed message
/// without deliveries (unrouted) stays DELIVERING: it reached nobody.
pub fn outcome(
    state: MessageState,
    deliveries: impl IntoIterator<Item = DeliveryState>,
) -> MessageOutcome {
    match state {
        MessageState::Prepared => MessageOutcome::Prepared,
        MessageState::Cancelled => MessageOutcome::Cancelled,
        MessageState::Unresolved => MessageOutcome::Unresolved,
        MessageState::Confirmed => {
            let (mut any, mut open, mut dead) = (false, false, false);
            for delivery in deliveries {
                any = true;
                match delivery {
                    DeliveryState::Pending | DeliveryState::Leased => open = true,
                    // A discarded delivery was given up like a dead one, for good.
                    DeliveryState::Dead | DeliveryState::Discarded => dead = true,
                    DeliveryState::Acked => {}
                }
            }
            if !any || open {
                MessageOutcome::Delivering
            } else if dead {
                MessageOutcome::DeadLettered
            } else {
                MessageOutcome::Delivered
            }
        }
    }
}

/// Names a message by id or by producer key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageRef {
    Id(MessageId),
    ProducerKey { producer: Name, key: MessageKey },
}

impl fmt::Display for MessageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "message {id}"),
            Self::ProducerKey { producer, key } => {
                write!(
                    f,
                    "message with producer {producer} and key {}",
                    Quoted(key.as_str())
                )
            }
        }
    }
}

/// A message as stored, without its payload, with the status of each delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub id: MessageId,
    pub producer: Name,
    pub topic: Name,
    pub key: MessageKey,
    pub ordering_key: OrderingKey,
    pub headers: Headers,
    pub payload_bytes: u64,
    pub state: MessageState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub check_attempts: u32,
    pub next_check_at: Option<Timestamp>,
    pub last_check_error: Option<String>,
    pub deliveries: Vec<DeliveryStatus>,
}

impl MessageRecord {
    pub fn outcome(&self) -> MessageOutcome {
        outcome(self.state, self.deliveries.iter().map(|d| d.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_states_accept_both_decisions() {
        for state in [MessageState::Prepared, MessageState::Unresolved] {
            assert_eq!(
                decide(state, Decision::Commit),
                Transition::To(MessageState::Confirmed)
            );
            assert_eq!(
                decide(state, Decision::Rollback),
                Transition::To(MessageState::Cancelled)
            );
        }
    }

    #[test]
    fn final_states_repeat_or_contradict() {
        assert_eq!(
            decide(MessageState::Confirmed, Decision::Commit),
            Transition::AlreadyThere(MessageState::Confirmed)
        );
        assert_eq!(
            decide(MessageState::Cancelled, Decision::Commit),
            Transition::Contradicts(MessageState::Cancelled)
        );
        assert_eq!(
            decide(MessageState::Confirmed, Decision::Rollback),
            Transition::Contradicts(MessageState::Confirmed)
        );
    }

    #[test]
    fn outcome_follows_deliveries() {
        use DeliveryState::*;
        let confirmed = MessageState::Confirmed;
        assert_eq!(outcome(confirmed, []), MessageOutcome::Delivering);
        assert_eq!(
            outcome(confirmed, [Acked, Pending]),
            MessageOutcome::Delivering
        );
        assert_eq!(
            outcome(confirmed, [Acked, Acked]),
            MessageOutcome::Delivered
        );
        assert_eq!(
            outcome(confirmed, [Acked, Dead]),
            MessageOutcome::DeadLettered
        );
        assert_eq!(
            outcome(confirmed, [Leased, Dead]),
            MessageOutcome::Delivering
        );
        assert_eq!(
            outcome(MessageState::Unresolved, []),
            MessageOutcome::Unresolved
        );
    }
}
