//! Check-backs: the checker a producer registered, and a PREPARED message whose check is due.

use std::time::Duration;

use super::{Headers, MessageId, MessageKey, Name, Timestamp, TraceContext};

/// A checker endpoint registered by a producer.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckerRegistration {
    pub producer: Name,
    pub endpoint: String,
    pub timeout: Duration,
}

/// A PREPARED message whose check-back is due, claimed by `Store::claim_due_checks`.
#[derive(Debug, Clone, PartialEq)]
pub struct DueCheck {
    pub message_id: MessageId,
    pub producer: Name,
    pub topic: Name,
    pub key: MessageKey,
    pub headers: Headers,
    /// When the message was prepared.
    pub prepared_at: Timestamp,
    /// 1-based number of this check: the message's recorded check attempts plus one. The
    /// verdict is recorded against it (`Store::record_check`).
    pub attempt: u32,
    /// The checker the producer registered, if any, as of the claim.
    pub checker: Option<CheckerRegistration>,
    /// The producer's trace, as stored with the message.
    pub trace: Option<TraceContext>,
}
