use std::time::Duration;

use super::{Name, Timestamp};

/// How a subscription retries unacknowledged deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub multiplier: f64,
}

/// A named stream of deliveries for one topic, with every field resolved (no unset values).
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub name: Name,
    pub topic: Name,
    pub ack_deadline: Duration,
    pub retry_policy: RetryPolicy,
    pub push_endpoint: Option<String>,
    pub created_at: Timestamp,
}

impl Subscription {
    /// Same configuration, whatever the creation time: the test for an idempotent re-create.
    pub fn same_config(&self, other: &Subscription) -> bool {
        self.name == other.name
            && self.topic == other.topic
            && self.ack_deadline == other.ack_deadline
            && self.retry_policy == other.retry_policy
            && self.push_endpoint == other.push_endpoint
    }
}
