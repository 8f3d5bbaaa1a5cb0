//! Courier's Rust client.
//!
//! - [`Producer`]: Prepare, Confirm, Cancel, Publish, and the two-phase
//!   [`Producer::send`]; [`Outbox`] runs it over a sqlx transaction in the producer's own
//!   database and serves the [`OutboxChecker`] that answers Courier's check-back from it.
//! - [`Consumer`]: the pull loop (bounded concurrency, lease extension, Ack/Nack/Reject by
//!   the handler's result, graceful shutdown); [`Inbox`] makes a handler run once per message
//!   in the consumer's own database.
//! - [`PushReceiver`]: the Receiver service for push subscriptions; [`CallbackAuth`] checks
//!   that Check and Deliver calls come from Courier.
//! - Every call carries the current OpenTelemetry context as W3C `traceparent`/`tracestate`,
//!   and handlers run in the context a delivery carries ([`trace`]).
//!
//! The crate's README walks through a producer with an outbox and a consumer with an inbox.

mod callback_auth;
mod connection;
mod consumer;
mod handler;
mod inbox;
mod message;
mod outbox;
mod producer;
pub mod proto;
mod push;
mod sql;
pub mod trace;

pub use callback_auth::{CallbackAuth, JwksError};
pub use connection::{CallMetadata, Connection, ConnectionError, CourierChannel};
pub use consumer::Consumer;
pub use handler::{Handler, HandlerError};
pub use inbox::{DedupOn, Inbox, Processed};
pub use message::OutgoingMessage;
pub use outbox::{Outbox, OutboxChecker};
pub use producer::{Accepted, Confirmation, Producer, SendError, Sent};
pub use proto::{Decision, Delivery, MessageState};
pub use push::PushReceiver;
pub use sql::Backend;
