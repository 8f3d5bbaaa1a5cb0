//! What requests may carry (`limits`) and what a subscription gets for the fields its creator
//! left unset (`subscriptions`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, duration_text, invalid};
use crate::domain::RetryPolicy;

/// Values that subscriptions take for fields their creator left unset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriptionDefaults {
    #[serde(with = "duration_text")]
    pub ack_deadline: Duration,
    pub max_attempts: u32,
    #[serde(with = "duration_text")]
    pub initial_backoff: Duration,
    #[serde(with = "duration_text")]
    pub max_backoff: Duration,
    pub multiplier: f64,
}

impl SubscriptionDefaults {
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
            multiplier: self.multiplier,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_headers: usize,
    /// Sum of the lengths of every header name and value.
    pub max_header_bytes: usize,
    /// Most bytes one Receive answers (ReceiveRequest.max_bytes may ask for less). The default
    /// keeps an answer within a default gRPC client's 4 MiB message limit.
    pub max_receive_bytes: u32,
    /// Calls of each kind in flight at once; one more is refused with RESOURCE_EXHAUSTED.
    pub in_flight: InFlightLimits,
    /// HTTP/2 streams (calls) one connection may have open at once; a client queues the rest.
    pub max_streams_per_connection: u32,
    /// Batches one subscription may have leased ahead on this replica while it has a backlog,
    /// for its next Receives (`lease_ahead`); 0 turns leasing ahead off.
    pub lease_ahead_batches: usize,
}

/// Default HTTP/2 streams per connection. Every call a server has taken off the wire but not
/// answered waits its turn for the CPU, refused or not: on a busy server a call's latency is
/// the calls outstanding over the calls answered per second, so the limit keeps that queue
/// with the client that made it. 100 is HTTP/2's recommended floor (RFC 9113 §6.5.2). At ten
/// times the load a two-core machine carries, over 16 connections: 1,024 answered a refused
/// call in 0.4 s at the median and carried 5,900 msg/s; 256, a refused call in 161 to 196 ms
/// at p99 and 15,000 to 17,000 msg/s; 100, in 33 to 60 ms and 17,000 to 20,000 msg/s.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 100;

/// Calls of each kind in flight at once, over every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InFlightLimits {
    /// Producer calls: Prepare, Confirm, Cancel, Publish, CheckStatus, RegisterChecker.
    pub produce: usize,
    /// Consumer.Receive calls, each possibly a long poll.
    pub receive: usize,
    /// Ack, Nack, ExtendLease and Reject calls.
    pub settle: usize,
    pub admin: usize,
    /// Producer and settle calls are also held to Little's law: past the first 64 of a kind
    /// in flight, at most (calls finished per second) x (the fastest call of the last 10 s +
    /// this) may be in flight, measured every 25 ms while the server is busy. An accepted call waits about
    /// this long at most; the rest are refused at once. `0s` turns it off.
    #[serde(with = "duration_text")]
    pub latency_target: Duration,
}

impl Default for InFlightLimits {
    fn default() -> Self {
        Self {
            produce: 2048,
            receive: 2048,
            settle: 2048,
            admin: 64,
            latency_target: Duration::from_millis(50),
        }
    }
}

impl Default for SubscriptionDefaults {
    fn default() -> Self {
        Self {
            ack_deadline: Duration::from_secs(30),
            max_attempts: 16,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            multiplier: 2.0,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1024 * 1024,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            max_receive_bytes: 4_000_000,
            in_flight: InFlightLimits::default(),
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
            lease_ahead_batches: 8,
        }
    }
}

impl SubscriptionDefaults {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(Duration::from_secs(1)..=Duration::from_secs(12 * 3600)).contains(&self.ack_deadline) {
            return invalid("subscriptions.ack_deadline", "must be between 1s and 12h");
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return invalid("subscriptions.max_attempts", "must be between 1 and 1000");
        }
        if self.initial_backoff.is_zero() {
            return invalid("subscriptions.initial_backoff", "must be more than 0");
        }
        if self.max_backoff < self.initial_backoff {
            return invalid(
                "subscriptions.max_backoff",
                "must be at least subscriptions.initial_backoff",
            );
        }
        if !(1.0..=10.0).contains(&self.multiplier) {
            return invalid("subscriptions.multiplier", "must be between 1.0 and 10.0");
        }
        Ok(())
    }
}

impl Limits {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_payload_bytes == 0 || self.max_payload_bytes > 64 * 1024 * 1024 {
            return invalid("limits.max_payload_bytes", "must be between 1 and 64 MiB");
        }
        if self.max_receive_bytes < 64 * 1024 {
            return invalid("limits.max_receive_bytes", "must be at least 64 KiB");
        }
        if self.lease_ahead_batches > 64 {
            return invalid("limits.lease_ahead_batches", "must be between 0 and 64");
        }
        let in_flight = &self.in_flight;
        for (key, value) in [
            ("limits.in_flight.produce", in_flight.produce),
            ("limits.in_flight.receive", in_flight.receive),
            ("limits.in_flight.settle", in_flight.settle),
            ("limits.in_flight.admin", in_flight.admin),
        ] {
            if !(1..=1_000_000).contains(&value) {
                return invalid(key, "must be between 1 and 1000000");
            }
        }
        if in_flight.latency_target > Duration::from_secs(60) {
            return invalid(
                "limits.in_flight.latency_target",
                "must be at most 60s (0s: off)",
            );
        }
        if self.max_streams_per_connection == 0 {
            return invalid("limits.max_streams_per_connection", "must be at least 1");
        }
        Ok(())
    }
}
