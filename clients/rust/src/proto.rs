//! The generated `courier.v1` messages, the Producer, Consumer and Admin clients, and the
//! Checker and Receiver servers.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated {
    tonic::include_proto!("courier.v1");
}

pub use generated::*;

/// A reference to a message by the id Courier gave it.
pub fn by_id(message_id: &str) -> Option<MessageRef> {
    Some(MessageRef {
        r#ref: Some(message_ref::Ref::MessageId(message_id.to_owned())),
    })
}

/// `std::time::Duration` as a `google.protobuf.Duration`.
pub fn duration(duration: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}
