//! Courier's domain: validated names and ids, the message and delivery state machines, and the
//! retry backoff. Pure functions and types only; no I/O, no proto, no SQL.

mod backoff;
mod check;
mod delivery;
mod glob;
mod ids;
mod lease;
mod message;
mod names;
mod subscription;
mod text;
mod time;
mod trace;

pub use backoff::{JITTER, backoff, random_jitter};
pub use check::{CheckerRegistration, DueCheck};
pub use delivery::{
    AckVerdict, DeliveryState, DeliveryStatus, LeaseCheck, Receipt, RedeliveryPlan, check_lease,
    classify_ack, plan_redelivery,
};
pub use glob::glob_matches;
pub use ids::{MessageId, ParseIdError};
pub use lease::{AckStatus, LeasedDelivery};
pub use message::{
    Decision, Headers, MessageOutcome, MessageRecord, MessageRef, MessageState, Transition, decide,
    outcome,
};
pub use names::{FieldViolation, MessageKey, Name, OrderingKey};
pub use subscription::{DeadHeadPolicy, RetryPolicy, Subscription};
pub use text::{Quoted, storable_lossy, storable_text};
pub use time::Timestamp;
pub use trace::{
    MAX_TRACESTATE_BYTES, MAX_TRACESTATE_MEMBERS, TraceContext, TraceContextError, TraceParent,
    TraceState,
};
