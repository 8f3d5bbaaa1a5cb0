//! The producer's requests (Prepare, Publish, RegisterChecker) and the messages it reads back.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::config::{Config, Limits};
use crate::domain::{
    self, CheckerRegistration, Headers, MessageId, MessageKey, MessageRecord, Name, OrderingKey,
    Timestamp,
};
use crate::proto;
use crate::store::{InsertOutcome, NewMessage};

use super::checks::{Checks, RequestError};
use super::durations::{MINUTE, SECOND, duration, timestamp};
use super::scalars::endpoint;
use super::states::{delivery_state, message_outcome, message_state};

pub(super) const CHECK_AFTER: RangeInclusive<Duration> =
    SECOND..=Duration::from_secs(7 * 24 * 3600);
const DELIVER_AFTER: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(7 * 24 * 3600);
const CHECKER_TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(10)..=MINUTE;

/// The fields Prepare and Publish share.
#[derive(Debug)]
pub struct MessageFields {
    pub producer: String,
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
    pub check_after: Option<prost_types::Duration>,
    pub deliver_after: Option<prost_types::Duration>,
    pub ordering_key: String,
}

impl From<proto::PrepareRequest> for MessageFields {
    fn from(request: proto::PrepareRequest) -> Self {
        Self {
            producer: request.producer,
            topic: request.topic,
            key: request.key,
            payload: request.payload,
            headers: request.headers,
            check_after: request.check_after,
            deliver_after: request.deliver_after,
            ordering_key: request.ordering_key,
        }
    }
}

impl From<proto::PublishRequest> for MessageFields {
    fn from(request: proto::PublishRequest) -> Self {
        Self {
            producer: request.producer,
            topic: request.topic,
            key: request.key,
            payload: request.payload,
            headers: request.headers,
            check_after: None,
            deliver_after: request.deliver_after,
            ordering_key: request.ordering_key,
        }
    }
}

/// Validates a Prepare (`publish = false`) or Publish into the message to store.
pub fn new_message(
    fields: MessageFields,
    publish: bool,
    config: &Config,
) -> Result<NewMessage, RequestError> {
    let mut checks = Checks::default();
    let producer = checks.take(Name::parse("producer", &fields.producer));
    let topic = checks.take(Name::parse("topic", &fields.topic));
    let key = checks.take(MessageKey::parse("key", &fields.key));
    let ordering_key = checks.take(OrderingKey::parse("ordering_key", &fields.ordering_key));
    check_payload(&mut checks, &fields.payload, &config.limits);
    let headers = headers(&mut checks, fields.headers, &config.limits);
    let check_after = checks
        .take(duration("check_after", fields.check_after, &CHECK_AFTER))
        .map(|value| value.unwrap_or(config.checks.first_after));
    let deliver_after = checks
        .take(duration(
            "deliver_after",
            fields.deliver_after,
            &DELIVER_AFTER,
        ))
        .map(Option::unwrap_or_default);

    let (
        Some(producer),
        Some(topic),
        Some(key),
        Some(ordering_key),
        Some(check_after),
        Some(deliver_after),
    ) = (
        producer,
        topic,
        key,
        ordering_key,
        check_after,
        deliver_after,
    )
    else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(NewMessage {
        id: MessageId::new(),
        producer,
        topic,
        key,
        ordering_key,
        payload: fields.payload,
        headers,
        check_after,
        deliver_after,
        publish,
        // Metadata, not a field: the handler adds the call's trace context.
        trace: None,
        now: Timestamp::now(),
    })
}

fn check_payload(checks: &mut Checks, payload: &[u8], limits: &Limits) {
    if payload.len() > limits.max_payload_bytes {
        checks.limit(
            "limits.max_payload_bytes",
            format!(
                "payload is {} bytes; limits.max_payload_bytes allows {}",
                payload.len(),
                limits.max_payload_bytes
            ),
        );
    }
}

/// Checks the header names and the count and size limits; sorts the headers so equal maps
/// compare equal in the store's dedup.
fn headers(checks: &mut Checks, headers: HashMap<String, String>, limits: &Limits) -> Headers {
    if headers.contains_key("") {
        checks.field("headers", "a header name is empty");
    }
    if headers.len() > limits.max_headers {
        checks.limit(
            "limits.max_headers",
            format!(
                "{} headers given; limits.max_headers allows {}",
                headers.len(),
                limits.max_headers
            ),
        );
    }
    let total_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    if total_bytes > limits.max_header_bytes {
        checks.limit(
            "limits.max_header_bytes",
            format!(
                "headers are {total_bytes} bytes in total; limits.max_header_bytes allows {}",
                limits.max_header_bytes
            ),
        );
    }
    headers.into_iter().collect()
}

pub fn prepare_response(outcome: InsertOutcome) -> proto::PrepareResponse {
    proto::PrepareResponse {
        message_id: outcome.message_id.to_string(),
        created: outcome.created,
        state: message_state(outcome.state).into(),
    }
}

pub fn publish_response(outcome: InsertOutcome) -> proto::PublishResponse {
    proto::PublishResponse {
        message_id: outcome.message_id.to_string(),
        created: outcome.created,
        state: message_state(outcome.state).into(),
    }
}

pub fn register_checker(
    request: proto::RegisterCheckerRequest,
    config: &Config,
) -> Result<CheckerRegistration, RequestError> {
    let mut checks = Checks::default();
    let producer = checks.take(Name::parse("producer", &request.producer));
    let endpoint = checks.take(endpoint("endpoint", &request.endpoint));
    let timeout = checks
        .take(duration("timeout", request.timeout, &CHECKER_TIMEOUT))
        .map(|value| value.unwrap_or(config.checks.timeout));
    let (Some(producer), Some(endpoint), Some(timeout)) = (producer, endpoint, timeout) else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(CheckerRegistration {
        producer,
        endpoint,
        timeout,
    })
}

/// The Message of CheckStatus and ListMessages.
pub fn message(record: MessageRecord) -> proto::Message {
    let outcome = record.outcome();
    proto::Message {
        message_id: record.id.to_string(),
        producer: record.producer.to_string(),
        topic: record.topic.to_string(),
        key: record.key.as_str().to_owned(),
        headers: record.headers.into_iter().collect(),
        state: message_state(record.state).into(),
        outcome: message_outcome(outcome).into(),
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
        check_attempts: record.check_attempts,
        next_check_at: record.next_check_at.map(timestamp),
        deliveries: record.deliveries.into_iter().map(delivery_status).collect(),
        last_check_error: record.last_check_error.unwrap_or_default(),
        payload_bytes: record.payload_bytes,
        ordering_key: record.ordering_key.as_str().to_owned(),
    }
}

pub(super) fn delivery_status(status: domain::DeliveryStatus) -> proto::DeliveryStatus {
    proto::DeliveryStatus {
        subscription: status.subscription.to_string(),
        message_id: status.message_id.to_string(),
        state: delivery_state(status.state).into(),
        attempts: status.attempts,
        next_attempt_at: status.next_attempt_at.map(timestamp),
        lease_expires_at: status.lease_expires_at.map(timestamp),
        last_error: status.last_error.unwrap_or_default(),
        ordering_key: status
            .ordering_key
            .map(|key| key.as_str().to_owned())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::test_support::{fields, seconds};

    fn prepare(request: proto::PrepareRequest) -> Result<NewMessage, RequestError> {
        new_message(request.into(), false, &Config::default())
    }

    fn valid_prepare() -> proto::PrepareRequest {
        proto::PrepareRequest {
            producer: "orders".into(),
            topic: "order.created".into(),
            key: "order-1".into(),
            payload: b"{}".to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn prepare_fills_defaults() {
        let message = prepare(valid_prepare()).unwrap();
        assert_eq!(message.check_after, Duration::from_secs(10));
        assert_eq!(message.deliver_after, Duration::ZERO);
        assert!(!message.publish);
    }

    #[test]
    fn prepare_reports_every_bad_field() {
        let request = proto::PrepareRequest {
            producer: String::new(),
            topic: "a/b".into(),
            key: String::new(),
            check_after: seconds(0),
            deliver_after: seconds(-1),
            ..Default::default()
        };
        let fields = fields(prepare(request).unwrap_err());
        assert_eq!(
            fields,
            ["producer", "topic", "key", "check_after", "deliver_after"]
        );
    }

    #[test]
    fn oversized_payload_and_headers_name_the_limit() {
        let limits = Limits::default();
        let mut request = valid_prepare();
        request.payload = vec![0; limits.max_payload_bytes + 1];
        request.headers = (0..=limits.max_headers)
            .map(|i| (format!("h{i}"), String::new()))
            .collect();
        let Err(RequestError::OverLimit(violations)) = prepare(request) else {
            panic!("expected a limit violation");
        };
        let limits: Vec<_> = violations.iter().map(|v| v.limit).collect();
        assert_eq!(limits, ["limits.max_payload_bytes", "limits.max_headers"]);
    }

    #[test]
    fn header_bytes_count_names_and_values() {
        let mut request = valid_prepare();
        request.headers = HashMap::from([("a".repeat(8 * 1024), "b".repeat(8 * 1024 + 1))]);
        let Err(RequestError::OverLimit(violations)) = prepare(request) else {
            panic!("expected a limit violation");
        };
        assert_eq!(violations[0].limit, "limits.max_header_bytes");
    }
}
