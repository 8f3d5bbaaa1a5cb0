//! What a consumer holds: a leased delivery with everything it needs, and how each Ack of a
//! receipt ended.

use super::{Headers, MessageKey, Name, OrderingKey, Receipt, Timestamp, TraceContext};

/// A delivery handed out by a lease, with everything a consumer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedDelivery {
    pub receipt: Receipt,
    pub topic: Name,
    pub producer: Name,
    pub key: MessageKey,
    pub ordering_key: OrderingKey,
    pub payload: Vec<u8>,
    pub headers: Headers,
    pub attempt: u32,
    pub published_at: Timestamp,
    pub lease_expires_at: Timestamp,
    /// The producer's trace, as stored with the message.
    pub trace: Option<TraceContext>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    Ok,
    LeaseLost,
    NotFound,
}
