//! A message's history beyond what its rows hold, written once for both backends.
//!
//! The rows say where a message is now: created, decided (and by whom), and per subscription
//! the state, attempts and last error of its delivery. What they overwrite is kept here as
//! events: every check-back answer, every failed delivery attempt (Nack, lease expiry, failed
//! push, Reject) and the operators' actions. A message that goes well writes none, so the hot
//! path (Prepare, Confirm, lease, Ack) costs nothing extra. Each event is written in the
//! transaction of the change it records, and only the newest [`EVENTS_PER_MESSAGE`] of a
//! message are kept ([`TRIM_EVENTS`] runs after each insert); retention deletes them with
//! their message.
//!
//! The statements use `$N` placeholders (SQLite reads them through `sql::for_sqlite`).

use crate::domain::{Decision, MessageId, Name, Receipt, RedeliveryPlan, Timestamp};
use crate::store::{CheckVerdict, StoreError};

/// How many events of one message are kept: the newest.
pub const EVENTS_PER_MESSAGE: i64 = 50;

/// Records one event: $1 message id, $2 time, $3 kind, $4 subscription, $5 attempt,
/// $6 outcome, $7 detail.
pub const INSERT_EVENT: &str = "\
INSERT INTO message_events (message_id, at, kind, subscription, attempt, outcome, detail) \
VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Keeps only the newest [`EVENTS_PER_MESSAGE`] events of message $1.
pub const TRIM_EVENTS: &str = "\
DELETE FROM message_events WHERE message_id = $1 AND seq < ( \
  SELECT MIN(seq) FROM (SELECT seq FROM message_events WHERE message_id = $1 \
  ORDER BY seq DESC LIMIT 50) newest)";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A check-back of the producer's Checker: its answer, or why there was none.
    Check,
    /// The consumer nacked the delivery.
    Nacked,
    /// The lease ran out before an ack.
    LeaseExpired,
    /// Pushing to the subscription's receiver failed.
    PushFailed,
    /// The consumer rejected the delivery.
    Rejected,
    /// An operator decided the message (Resolve).
    Resolved,
    /// An operator redrove the dead delivery.
    Redriven,
    /// An operator discarded the dead delivery.
    Discarded,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Check => "CHECK",
            Self::Nacked => "NACKED",
            Self::LeaseExpired => "LEASE_EXPIRED",
            Self::PushFailed => "PUSH_FAILED",
            Self::Rejected => "REJECTED",
            Self::Resolved => "RESOLVED",
            Self::Redriven => "REDRIVEN",
            Self::Discarded => "DISCARDED",
        }
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "CHECK" => Self::Check,
            "NACKED" => Self::Nacked,
            "LEASE_EXPIRED" => Self::LeaseExpired,
            "PUSH_FAILED" => Self::PushFailed,
            "REJECTED" => Self::Rejected,
            "RESOLVED" => Self::Resolved,
            "REDRIVEN" => Self::Redriven,
            "DISCARDED" => Self::Discarded,
            other => {
                return Err(StoreError::internal(format!(
                    "unknown message event kind {other:?}"
                )));
            }
        })
    }
}

/// Who moved a message out of PREPARED (or UNRESOLVED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// Its producer: Confirm, Cancel or Publish.
    Producer,
    /// The producer's Checker, asked by check-back.
    Checker,
    /// An operator's Resolve.
    Operator,
}

impl DecidedBy {
    /// The stored value: NULL for the producer, so the producer's own decisions (the hot path)
    /// write nothing extra.
    pub fn stored(self) -> Option<&'static str> {
        match self {
            Self::Producer => None,
            Self::Checker => Some("CHECKER"),
            Self::Operator => Some("OPERATOR"),
        }
    }

    pub fn from_stored(text: Option<&str>) -> Self {
        match text {
            Some("CHECKER") => Self::Checker,
            Some("OPERATOR") => Self::Operator,
            _ => Self::Producer,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Checker => "checker",
            Self::Operator => "operator",
        }
    }
}

/// One recorded event of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageEvent {
    pub at: Timestamp,
    pub kind: EventKind,
    /// The subscription of a delivery event.
    pub subscription: Option<Name>,
    /// The check or delivery attempt it ended.
    pub attempt: Option<u32>,
    /// CHECK: COMMIT, ROLLBACK, RETRY or GAVE_UP; delivery failures: RETRY or DEAD;
    /// RESOLVED: COMMIT or ROLLBACK.
    pub outcome: Option<String>,
    /// The error text, the consumer's reason, or who acted.
    pub detail: Option<String>,
}

/// How much of a payload a history carries: enough to show 64 KiB and tell that more exists.
pub const PAYLOAD_HEAD_BYTES: i64 = 64 * 1024 + 1;

/// What a message's timeline needs beyond [`crate::domain::MessageRecord`].
#[derive(Debug, Clone, PartialEq)]
pub struct MessageHistory {
    /// The payload's first [`PAYLOAD_HEAD_BYTES`] bytes (all of it when shorter).
    pub payload_head: Vec<u8>,
    /// When it became CONFIRMED or CANCELLED, and who decided; `None` while undecided.
    pub decided: Option<(Timestamp, DecidedBy)>,
    /// Its kept events, oldest first.
    pub events: Vec<MessageEvent>,
    /// When each of its deliveries last changed (for an ACKED one: the Ack; for a LEASED one:
    /// the lease), by subscription.
    pub delivery_changes: Vec<(Name, Timestamp)>,
}

/// An event to record, for a message.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub message_id: MessageId,
    pub event: MessageEvent,
}

impl NewEvent {
    fn new(message_id: MessageId, at: Timestamp, kind: EventKind) -> Self {
        Self {
            message_id,
            event: MessageEvent {
                at,
                kind,
                subscription: None,
                attempt: None,
                outcome: None,
                detail: None,
            },
        }
    }

    /// Check number `attempt` concluded `verdict`.
    pub fn check(
        message_id: MessageId,
        attempt: u32,
        verdict: &CheckVerdict,
        at: Timestamp,
    ) -> Self {
        let (outcome, detail) = match verdict {
            CheckVerdict::Decided(decision) => (decision_name(*decision), None),
            CheckVerdict::RetryAt { error, .. } => ("RETRY", Some(error.clone())),
            CheckVerdict::GiveUp { error } => ("GAVE_UP", Some(error.clone())),
        };
        let mut new = Self::new(message_id, at, EventKind::Check);
        new.event.attempt = Some(attempt);
        new.event.outcome = Some(outcome.to_owned());
        new.event.detail = detail;
        new
    }

    /// Delivery attempt `attempt` of `subscription` failed (`kind`) with `error`, and `plan`
    /// says what came of it.
    pub fn delivery_failed(
        message_id: MessageId,
        subscription: &Name,
        kind: EventKind,
        (attempt, plan): (u32, RedeliveryPlan),
        error: &str,
        at: Timestamp,
    ) -> Self {
        let outcome = match plan {
            RedeliveryPlan::RetryAt(_) => "RETRY",
            RedeliveryPlan::Dead => "DEAD",
        };
        let mut new = Self::new(message_id, at, kind);
        new.event.subscription = Some(subscription.clone());
        new.event.attempt = Some(attempt);
        new.event.outcome = Some(outcome.to_owned());
        new.event.detail = Some(error.to_owned());
        new
    }

    /// The attempt (as the store counts it) of `receipt`'s delivery failed: its lease's message
    /// and subscription.
    pub fn attempt_failed(
        receipt: &Receipt,
        kind: EventKind,
        (attempt, plan): (i64, RedeliveryPlan),
        error: &str,
        at: Timestamp,
    ) -> Result<Self, StoreError> {
        let attempt = u32::try_from(attempt).map_err(StoreError::internal)?;
        Ok(Self::delivery_failed(
            receipt.message_id,
            &receipt.subscription,
            kind,
            (attempt, plan),
            error,
            at,
        ))
    }

    /// An operator (`operator`, as the audit log names them) decided the message.
    pub fn resolved(
        message_id: MessageId,
        decision: Decision,
        operator: &str,
        at: Timestamp,
    ) -> Self {
        let mut new = Self::new(message_id, at, EventKind::Resolved);
        new.event.outcome = Some(decision_name(decision).to_owned());
        new.event.detail = Some(operator.to_owned());
        new
    }

    /// An operator redrove or discarded the message's dead delivery of `subscription`.
    pub fn dead_letter_ended(
        message_id: MessageId,
        subscription: &Name,
        kind: EventKind,
        at: Timestamp,
    ) -> Self {
        let mut new = Self::new(message_id, at, kind);
        new.event.subscription = Some(subscription.clone());
        new
    }

    pub fn attempt(&self) -> Option<i64> {
        self.event.attempt.map(i64::from)
    }

    pub fn subscription(&self) -> Option<&str> {
        self.event.subscription.as_ref().map(Name::as_str)
    }
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Commit => "COMMIT",
        Decision::Rollback => "ROLLBACK",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_as_written() {
        for kind in [
            EventKind::Check,
            EventKind::Nacked,
            EventKind::LeaseExpired,
            EventKind::PushFailed,
            EventKind::Rejected,
            EventKind::Resolved,
            EventKind::Redriven,
            EventKind::Discarded,
        ] {
            assert_eq!(EventKind::parse(kind.as_str()).unwrap(), kind);
        }
        assert!(EventKind::parse("LOST").is_err());
    }

    #[test]
    fn the_trim_keeps_as_many_as_the_constant_says() {
        assert!(TRIM_EVENTS.contains(&format!("LIMIT {EVENTS_PER_MESSAGE})")));
    }

    #[test]
    fn the_producer_is_stored_as_nothing() {
        for by in [DecidedBy::Producer, DecidedBy::Checker, DecidedBy::Operator] {
            assert_eq!(DecidedBy::from_stored(by.stored()), by);
        }
        assert_eq!(DecidedBy::Producer.stored(), None);
    }
}
