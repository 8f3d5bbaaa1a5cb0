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
    /// Deliveries that share an ordering key form a lane, delivered one at a time in confirm
    /// order. Set at creation; immutable like the topic.
    pub ordered: bool,
    /// What a DEAD delivery at the head of a lane does to the rest of it.
    pub dead_head: DeadHeadPolicy,
    pub created_at: Timestamp,
}

/// What a lane of an ordered subscription does when its head delivery goes DEAD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeadHeadPolicy {
    /// Hold the lane until an operator redrives the head (delivered first) or discards it.
    #[default]
    Block,
    /// Go on with the next delivery of the lane, as SQS FIFO and Pub/Sub do.
    Skip,
}

impl DeadHeadPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "BLOCK",
            Self::Skip => "SKIP",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Block, Self::Skip]
            .into_iter()
            .find(|policy| policy.as_str() == value)
    }
}

impl Subscription {
    /// Same configuration, whatever the creation time: the test for an idempotent re-create.
    pub fn same_config(&self, other: &Subscription) -> bool {
        self.name == other.name
            && self.topic == other.topic
            && self.ack_deadline == other.ack_deadline
            && self.retry_policy == other.retry_policy
            && self.push_endpoint == other.push_endpoint
            && self.ordered == other.ordered
            && self.dead_head == other.dead_head
    }
}
