//! The scheduler's sections: check-back (`checks`), push delivery (`push`) and retention.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, duration_text, invalid};
use crate::domain::RetryPolicy;

/// Check-back of prepared messages through the producers' Checkers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChecksConfig {
    /// First check after Prepare, unless the message sets `check_after`.
    #[serde(with = "duration_text")]
    pub first_after: Duration,
    #[serde(with = "duration_text")]
    pub initial_backoff: Duration,
    #[serde(with = "duration_text")]
    pub max_backoff: Duration,
    /// Checks before a message becomes UNRESOLVED.
    pub max_attempts: u32,
    /// Deadline of one Check call, unless the checker registered its own.
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    /// Check calls in flight at once, over every producer.
    pub concurrency: usize,
}

impl ChecksConfig {
    /// The check schedule as a retry policy: `initial_backoff` doubling up to `max_backoff`,
    /// with the same jitter as deliveries, for `max_attempts` checks.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
            multiplier: 2.0,
        }
    }
}

/// Push delivery to the Receivers of subscriptions that have a `push_endpoint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Deliver calls in flight at once, over every push subscription.
    pub concurrency: usize,
    /// Deliver calls in flight at once to one subscription, so one slow receiver cannot take
    /// every slot.
    pub per_subscription: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// How long a final message (and its producer key) is kept: the dedup window.
    #[serde(with = "duration_text")]
    pub final_messages: Duration,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        Self {
            first_after: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(600),
            max_attempts: 15,
            timeout: Duration::from_secs(5),
            concurrency: 32,
        }
    }
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            per_subscription: 8,
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            final_messages: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl ChecksConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return invalid("checks.max_attempts", "must be at least 1");
        }
        if self.initial_backoff.is_zero() {
            return invalid("checks.initial_backoff", "must be more than 0");
        }
        if self.max_backoff < self.initial_backoff {
            return invalid(
                "checks.max_backoff",
                "must be at least checks.initial_backoff",
            );
        }
        if self.timeout.is_zero() {
            return invalid("checks.timeout", "must be more than 0");
        }
        if !(1..=10_000).contains(&self.concurrency) {
            return invalid("checks.concurrency", "must be between 1 and 10000");
        }
        Ok(())
    }
}

impl PushConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10_000).contains(&self.concurrency) {
            return invalid("push.concurrency", "must be between 1 and 10000");
        }
        if self.per_subscription == 0 || self.per_subscription > self.concurrency {
            return invalid(
                "push.per_subscription",
                "must be at least 1 and at most push.concurrency",
            );
        }
        Ok(())
    }
}

impl RetentionConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.final_messages.is_zero() {
            return invalid("retention.final_messages", "must be more than 0");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn push_slots_per_subscription_fit_the_total() {
        let mut config = Config::default();
        config.push.per_subscription = config.push.concurrency + 1;
        let error = config.validate().unwrap_err();
        assert!(
            error.to_string().contains("push.per_subscription"),
            "{error}"
        );
        config.push.per_subscription = 1;
        config.checks.concurrency = 0;
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("checks.concurrency"), "{error}");
    }
}
