//! Every conversion between proto and domain types, and every request check. Handlers (and the
//! callbacks, which send deliveries and checks out) call one function here per request and get
//! validated domain values back, or a [`RequestError`] that lists every problem of the request
//! at once (not just the first), so a client can fix them all in one round trip.

mod admin;
mod checks;
mod consumer;
mod durations;
mod messages;
mod scalars;
mod states;
mod subscriptions;

pub use admin::{
    DeadLetterAction, discard_dead_letters, error_filter, list_deliveries,
    list_deliveries_response, list_messages, list_messages_response, redrive, redrive_rate,
    resolve, stats, topic_filter,
};
pub use checks::{LimitViolation, RequestError};
pub use consumer::{
    AckParams, ExtendLeaseParams, LeaseTarget, MAX_BATCH, NackParams, ReceiveParams, RejectParams,
    ack, ack_response, delivery, extend_lease, extend_lease_response, nack, receive, reject,
};
pub use durations::{optional_time, timestamp};
pub use messages::{
    MessageFields, message, new_message, prepare_response, publish_response, register_checker,
};
pub use scalars::{message_ref, name};
pub use states::message_state;
pub use subscriptions::{SubscriptionSpec, create_subscription, subscription, update_subscription};

#[cfg(test)]
mod test_support {
    use super::RequestError;

    pub fn seconds(seconds: i64) -> Option<prost_types::Duration> {
        Some(prost_types::Duration { seconds, nanos: 0 })
    }

    /// The fields a request was refused for, in the order they were reported.
    pub fn fields(error: RequestError) -> Vec<String> {
        match error {
            RequestError::Invalid(violations) => violations.into_iter().map(|v| v.field).collect(),
            RequestError::OverLimit(limits) => panic!("expected field violations, got {limits:?}"),
        }
    }
}
