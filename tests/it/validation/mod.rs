//! Bad input: every malformed request is refused with the documented code (INVALID_ARGUMENT
//! with a field violation naming the field, RESOURCE_EXHAUSTED for limits, NOT_FOUND for
//! unknown names), and the server keeps serving after each. One file per service.

mod admin;
mod consumer;
mod producer;
mod references;

/// A negative duration (`millis` below zero): well-formed protobuf that Courier refuses.
fn negative(millis: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: millis / 1000,
        nanos: ((millis % 1000) * 1_000_000) as i32,
    })
}

/// A day in seconds, for the limits stated in days.
const DAY: u64 = 24 * 3600;
