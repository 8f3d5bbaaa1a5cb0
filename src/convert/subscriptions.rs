//! Subscriptions: CreateSubscription and UpdateSubscription checked and resolved against the
//! configured defaults, and subscriptions back to proto.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::config::SubscriptionDefaults;
use crate::domain::{DeadHeadPolicy, FieldViolation, Name, RetryPolicy, Subscription, Timestamp};
use crate::proto;

use super::checks::{Checks, RequestError};
use super::durations::{DAY, SECOND, duration, human, optional_duration, timestamp};
use super::scalars::{endpoint, optional_name};
use super::states::{dead_head, dead_head_policy};

const ACK_DEADLINE: RangeInclusive<Duration> = SECOND..=Duration::from_secs(12 * 3600);
const INITIAL_BACKOFF: RangeInclusive<Duration> = Duration::from_millis(1)..=DAY;
const MAX_BACKOFF_CAP: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_ATTEMPTS: RangeInclusive<u32> = 1..=1000;
const MULTIPLIER: RangeInclusive<f64> = 1.0..=10.0;

/// A subscription as requested, every field checked and resolved against the defaults, except
/// the topic: an update may leave it to the stored subscription.
#[derive(Debug)]
pub struct SubscriptionSpec {
    pub name: Name,
    pub ack_deadline: Duration,
    pub retry_policy: RetryPolicy,
    pub push_endpoint: Option<String>,
    pub ordered: bool,
    pub dead_head: DeadHeadPolicy,
}

impl SubscriptionSpec {
    pub fn with_topic(self, topic: Name, created_at: Timestamp) -> Subscription {
        Subscription {
            name: self.name,
            topic,
            ack_deadline: self.ack_deadline,
            retry_policy: self.retry_policy,
            push_endpoint: self.push_endpoint,
            ordered: self.ordered,
            dead_head: self.dead_head,
            created_at,
        }
    }
}

/// The `subscription` of CreateSubscription: the topic is required; created now.
pub fn create_subscription(
    value: Option<proto::Subscription>,
    defaults: &SubscriptionDefaults,
) -> Result<Subscription, RequestError> {
    let value = value.ok_or_else(|| required("subscription"))?;
    let mut checks = Checks::default();
    let topic = checks.take(Name::parse("subscription.topic", &value.topic));
    let spec = subscription_fields(&mut checks, value, defaults);
    let (Some(topic), Some(spec)) = (topic, spec) else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(spec.with_topic(topic, Timestamp::now()))
}

/// The `subscription` of UpdateSubscription, with its topic if it names one.
pub fn update_subscription(
    value: Option<proto::Subscription>,
    defaults: &SubscriptionDefaults,
) -> Result<(SubscriptionSpec, Option<Name>), RequestError> {
    let value = value.ok_or_else(|| required("subscription"))?;
    let mut checks = Checks::default();
    let topic = checks.take(optional_name("subscription.topic", &value.topic));
    let spec = subscription_fields(&mut checks, value, defaults);
    let (Some(topic), Some(spec)) = (topic, spec) else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok((spec, topic))
}

fn required(field: &str) -> RequestError {
    RequestError::Invalid(vec![FieldViolation::new(field, "is required")])
}

fn subscription_fields(
    checks: &mut Checks,
    value: proto::Subscription,
    defaults: &SubscriptionDefaults,
) -> Option<SubscriptionSpec> {
    let name = checks.take(Name::parse("subscription.name", &value.name));
    let ack_deadline = checks
        .take(duration(
            "subscription.ack_deadline",
            value.ack_deadline,
            &ACK_DEADLINE,
        ))
        .map(|value| value.unwrap_or(defaults.ack_deadline));
    let retry_policy = retry_policy(checks, value.retry_policy.unwrap_or_default(), defaults);
    let push_endpoint = if value.push_endpoint.is_empty() {
        Some(None)
    } else {
        checks
            .take(endpoint("subscription.push_endpoint", &value.push_endpoint))
            .map(Some)
    };
    let dead_head = checks.take(dead_head_policy("subscription.dead_head", value.dead_head));
    Some(SubscriptionSpec {
        name: name?,
        ack_deadline: ack_deadline?,
        retry_policy: retry_policy?,
        push_endpoint: push_endpoint?,
        ordered: value.ordered,
        dead_head: dead_head?,
    })
}

fn retry_policy(
    checks: &mut Checks,
    value: proto::RetryPolicy,
    defaults: &SubscriptionDefaults,
) -> Option<RetryPolicy> {
    const FIELD: &str = "subscription.retry_policy";
    let max_attempts = match value.max_attempts {
        0 => Some(defaults.max_attempts),
        n if MAX_ATTEMPTS.contains(&n) => Some(n),
        n => {
            checks.field(
                format!("{FIELD}.max_attempts"),
                format!("is {n}; it must be between 1 and 1000"),
            );
            None
        }
    };
    let initial_backoff = checks
        .take(duration(
            &format!("{FIELD}.initial_backoff"),
            value.initial_backoff,
            &INITIAL_BACKOFF,
        ))
        .map(|value| value.unwrap_or(defaults.initial_backoff));
    let max_backoff = checks.take(duration(
        &format!("{FIELD}.max_backoff"),
        value.max_backoff,
        &(Duration::ZERO..=MAX_BACKOFF_CAP),
    ));
    let multiplier = if value.multiplier == 0.0 {
        Some(defaults.multiplier)
    } else if MULTIPLIER.contains(&value.multiplier) {
        Some(value.multiplier)
    } else {
        checks.field(
            format!("{FIELD}.multiplier"),
            format!("is {}; it must be between 1.0 and 10.0", value.multiplier),
        );
        None
    };
    let (max_attempts, initial_backoff, max_backoff, multiplier) =
        (max_attempts?, initial_backoff?, max_backoff?, multiplier?);
    let max_backoff = match max_backoff {
        Some(max_backoff) if max_backoff < initial_backoff => {
            checks.field(
                format!("{FIELD}.max_backoff"),
                format!(
                    "is {}; it must be at least initial_backoff ({})",
                    human(max_backoff),
                    human(initial_backoff)
                ),
            );
            return None;
        }
        Some(max_backoff) => max_backoff,
        // Left unset, the cap must not fall below an initial backoff set above the default.
        None => defaults.max_backoff.max(initial_backoff),
    };
    Some(RetryPolicy {
        max_attempts,
        initial_backoff,
        max_backoff,
        multiplier,
    })
}

pub fn subscription(subscription: Subscription) -> proto::Subscription {
    let policy = subscription.retry_policy;
    proto::Subscription {
        name: subscription.name.to_string(),
        topic: subscription.topic.to_string(),
        ack_deadline: optional_duration(subscription.ack_deadline),
        retry_policy: Some(proto::RetryPolicy {
            max_attempts: policy.max_attempts,
            initial_backoff: optional_duration(policy.initial_backoff),
            max_backoff: optional_duration(policy.max_backoff),
            multiplier: policy.multiplier,
        }),
        push_endpoint: subscription.push_endpoint.unwrap_or_default(),
        created_at: Some(timestamp(subscription.created_at)),
        ordered: subscription.ordered,
        dead_head: dead_head(subscription.dead_head).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::durations::HOUR;
    use crate::convert::test_support::{fields, seconds};

    #[test]
    fn subscriptions_take_defaults_and_check_ranges() {
        let defaults = SubscriptionDefaults::default();
        let spec = create_subscription(
            Some(proto::Subscription {
                name: "billing".into(),
                topic: "orders".into(),
                ..Default::default()
            }),
            &defaults,
        )
        .unwrap();
        assert_eq!(spec.topic.as_str(), "orders");
        assert_eq!(spec.ack_deadline, defaults.ack_deadline);
        assert_eq!(spec.retry_policy, defaults.retry_policy());
        assert_eq!(spec.push_endpoint, None);

        let bad = proto::Subscription {
            name: "billing".into(),
            topic: String::new(),
            ack_deadline: seconds(0),
            retry_policy: Some(proto::RetryPolicy {
                max_attempts: 1001,
                initial_backoff: seconds(10),
                max_backoff: seconds(5),
                multiplier: 11.0,
            }),
            push_endpoint: "nope".into(),
            created_at: None,
            ordered: true,
            dead_head: 7,
        };
        assert_eq!(
            fields(create_subscription(Some(bad), &defaults).unwrap_err()),
            [
                "subscription.topic",
                "subscription.ack_deadline",
                "subscription.retry_policy.max_attempts",
                "subscription.retry_policy.multiplier",
                "subscription.push_endpoint",
                "subscription.dead_head",
            ]
        );
    }

    #[test]
    fn unset_max_backoff_never_falls_below_initial() {
        let defaults = SubscriptionDefaults::default();
        let (spec, topic) = update_subscription(
            Some(proto::Subscription {
                name: "billing".into(),
                retry_policy: Some(proto::RetryPolicy {
                    initial_backoff: seconds(3600),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            &defaults,
        )
        .unwrap();
        assert_eq!(topic, None);
        assert_eq!(spec.retry_policy.max_backoff, HOUR);
    }
}
