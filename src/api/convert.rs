//! Every conversion between proto and domain types, and every request check, in one place.
//! Handlers call one function here per request and get validated domain values back, or a
//! [`RequestError`] that lists every problem of the request at once (not just the first), so a
//! client can fix them all in one round trip.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::config::{Config, Limits, SubscriptionDefaults};
use crate::domain::{
    self, CheckerRegistration, DeadHeadPolicy, DeliveryState, FieldViolation, Headers,
    LeasedDelivery, MessageId, MessageKey, MessageOutcome, MessageRecord, MessageRef,
    MessageState, Name, OrderingKey, Receipt, RetryPolicy, Subscription, Timestamp,
};
use crate::proto;
use crate::store::{Batch, DeliveryQuery, InsertOutcome, MessageQuery, NewMessage, Page, Stats};

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

const CHECK_AFTER: RangeInclusive<Duration> = SECOND..=Duration::from_secs(7 * 24 * 3600);
const DELIVER_AFTER: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(7 * 24 * 3600);
const CHECKER_TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(10)..=MINUTE;
const RECEIVE_WAIT: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(30);
const NACK_DELAY: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(12 * 3600);
const LEASE_EXTENSION: RangeInclusive<Duration> = SECOND..=Duration::from_secs(12 * 3600);
const ACK_DEADLINE: RangeInclusive<Duration> = SECOND..=Duration::from_secs(12 * 3600);
const INITIAL_BACKOFF: RangeInclusive<Duration> = Duration::from_millis(1)..=DAY;
const MAX_BACKOFF_CAP: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_ATTEMPTS: RangeInclusive<u32> = 1..=1000;
const MULTIPLIER: RangeInclusive<f64> = 1.0..=10.0;

/// Most messages one Receive hands out, and most receipts one Ack takes.
pub const MAX_BATCH: u32 = 1000;
const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;
const MAX_REJECT_REASON_BYTES: usize = 1024;

/// Why a request was refused before reaching the store.
#[derive(Debug)]
pub enum RequestError {
    /// Missing or malformed fields (INVALID_ARGUMENT).
    Invalid(Vec<FieldViolation>),
    /// Well-formed, but over a configured limit (RESOURCE_EXHAUSTED).
    OverLimit(Vec<LimitViolation>),
}

/// A configured limit that a request exceeds; `limit` is the configuration key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitViolation {
    pub limit: &'static str,
    pub description: String,
}

/// Collects the problems of one request. Field violations outrank limit violations: a
/// malformed request is reported as malformed even if it is also too big.
#[derive(Debug, Default)]
struct Checks {
    fields: Vec<FieldViolation>,
    limits: Vec<LimitViolation>,
}

impl Checks {
    /// Keeps the value, or records the violation and gives `None`.
    fn take<T>(&mut self, result: Result<T, FieldViolation>) -> Option<T> {
        result.map_err(|violation| self.fields.push(violation)).ok()
    }

    fn field(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.fields.push(FieldViolation::new(field, description));
    }

    fn limit(&mut self, limit: &'static str, description: String) {
        self.limits.push(LimitViolation { limit, description });
    }

    /// The error for a request whose checks left some value unset. Every `None` from
    /// [`Checks::take`] recorded a violation, so the list is never empty in practice.
    fn into_error(self) -> RequestError {
        if self.fields.is_empty() && !self.limits.is_empty() {
            RequestError::OverLimit(self.limits)
        } else {
            RequestError::Invalid(self.fields)
        }
    }

    fn finish(self) -> Result<(), RequestError> {
        if self.fields.is_empty() && self.limits.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scalars: names, ids, durations, times, enums
// ---------------------------------------------------------------------------------------------

/// A name that is required: `[A-Za-z0-9._-]{1,128}`.
pub fn name(field: &str, value: &str) -> Result<Name, RequestError> {
    Name::parse(field, value).map_err(|violation| RequestError::Invalid(vec![violation]))
}

/// An optional filter: empty means "no filter".
fn optional_name(field: &str, value: &str) -> Result<Option<Name>, FieldViolation> {
    if value.is_empty() {
        Ok(None)
    } else {
        Name::parse(field, value).map(Some)
    }
}

fn message_id(field: &str, value: &str) -> Result<MessageId, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    MessageId::parse(value).map_err(|error| FieldViolation::new(field, error.to_string()))
}

fn receipt(field: &str, value: &str) -> Result<Receipt, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    Receipt::parse(value).ok_or_else(|| {
        FieldViolation::new(field, "is not a receipt handed out by Receive or Deliver")
    })
}

/// A receipt names its subscription; a call must not act on another subscription's lease
/// through it. Checked after the subscription is known to exist, so an unknown subscription
/// is NOT_FOUND whatever the receipts say.
fn check_owner(checks: &mut Checks, field: &str, receipt: &Receipt, subscription: &Name) {
    if receipt.subscription != *subscription {
        checks.field(
            field,
            format!(
                "belongs to subscription {}, not {subscription}",
                receipt.subscription
            ),
        );
    }
}

/// A page token is the id of the last item of the previous page; empty means the first page.
fn page_token(field: &str, value: &str) -> Result<Option<MessageId>, FieldViolation> {
    if value.is_empty() {
        return Ok(None);
    }
    MessageId::parse(value)
        .map(Some)
        .map_err(|_| FieldViolation::new(field, "is not a page token from a previous response"))
}

fn next_page_token(next: Option<MessageId>) -> String {
    next.map(|id| id.to_string()).unwrap_or_default()
}

fn page_size(field: &str, value: u32) -> Result<u32, FieldViolation> {
    match value {
        0 => Ok(DEFAULT_PAGE_SIZE),
        1..=MAX_PAGE_SIZE => Ok(value),
        _ => Err(FieldViolation::new(
            field,
            format!("is {value}; at most {MAX_PAGE_SIZE} are allowed"),
        )),
    }
}

/// An optional duration, checked against its allowed range; `None` when unset.
fn duration(
    field: &str,
    value: Option<prost_types::Duration>,
    range: &RangeInclusive<Duration>,
) -> Result<Option<Duration>, FieldViolation> {
    let Some(value) = value else {
        return Ok(None);
    };
    if !super::well_known::is_valid_duration(&value) {
        return Err(FieldViolation::new(
            field,
            "is not a valid duration: nanos must be within ±999,999,999 and share the sign of seconds",
        ));
    }
    let duration = Duration::try_from(value).map_err(|error| match error {
        prost_types::DurationError::NegativeDuration(_) => {
            FieldViolation::new(field, "must not be negative")
        }
        _ => FieldViolation::new(field, "is not a valid duration"),
    })?;
    if range.contains(&duration) {
        Ok(Some(duration))
    } else {
        Err(FieldViolation::new(
            field,
            format!(
                "is {}; it must be between {} and {}",
                human(duration),
                human(*range.start()),
                human(*range.end())
            ),
        ))
    }
}

fn required_duration(
    field: &str,
    value: Option<prost_types::Duration>,
    range: &RangeInclusive<Duration>,
) -> Result<Duration, FieldViolation> {
    duration(field, value, range)?.ok_or_else(|| FieldViolation::new(field, "is required"))
}

/// Durations the way the configuration writes them: `250ms`, `10s`, `12h`, `7d`.
fn human(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let units = [(DAY, "d"), (HOUR, "h"), (MINUTE, "m"), (SECOND, "s")];
    for (unit, suffix) in units {
        if duration >= unit && duration.as_nanos().is_multiple_of(unit.as_nanos()) {
            return format!("{}{suffix}", duration.as_nanos() / unit.as_nanos());
        }
    }
    if duration.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}ns", duration.as_nanos())
    }
}

pub fn timestamp(time: Timestamp) -> prost_types::Timestamp {
    let millis = time.as_millis();
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        // The remainder is below 1000, so the product fits an i32.
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(duration).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

fn optional_duration(duration: Duration) -> Option<prost_types::Duration> {
    Some(proto_duration(duration))
}

pub fn message_state(state: MessageState) -> proto::MessageState {
    match state {
        MessageState::Prepared => proto::MessageState::Prepared,
        MessageState::Confirmed => proto::MessageState::Confirmed,
        MessageState::Cancelled => proto::MessageState::Cancelled,
        MessageState::Unresolved => proto::MessageState::Unresolved,
    }
}

fn message_outcome(outcome: MessageOutcome) -> proto::MessageOutcome {
    match outcome {
        MessageOutcome::Prepared => proto::MessageOutcome::Prepared,
        MessageOutcome::Cancelled => proto::MessageOutcome::Cancelled,
        MessageOutcome::Unresolved => proto::MessageOutcome::Unresolved,
        MessageOutcome::Delivering => proto::MessageOutcome::Delivering,
        MessageOutcome::Delivered => proto::MessageOutcome::Delivered,
        MessageOutcome::DeadLettered => proto::MessageOutcome::DeadLettered,
    }
}

fn delivery_state(state: DeliveryState) -> proto::DeliveryState {
    match state {
        DeliveryState::Pending => proto::DeliveryState::Pending,
        DeliveryState::Leased => proto::DeliveryState::Leased,
        DeliveryState::Acked => proto::DeliveryState::Acked,
        DeliveryState::Dead => proto::DeliveryState::Dead,
        DeliveryState::Discarded => proto::DeliveryState::Discarded,
    }
}

fn dead_head(policy: DeadHeadPolicy) -> proto::DeadHead {
    match policy {
        DeadHeadPolicy::Block => proto::DeadHead::Block,
        DeadHeadPolicy::Skip => proto::DeadHead::Skip,
    }
}

/// A dead-head policy: UNSPECIFIED means the default, BLOCK.
fn dead_head_policy(field: &str, value: i32) -> Result<DeadHeadPolicy, FieldViolation> {
    match proto::DeadHead::try_from(value).map_err(|_| unknown_enum(field, value))? {
        proto::DeadHead::Unspecified | proto::DeadHead::Block => Ok(DeadHeadPolicy::Block),
        proto::DeadHead::Skip => Ok(DeadHeadPolicy::Skip),
    }
}

fn ack_status(status: domain::AckStatus) -> proto::AckStatus {
    match status {
        domain::AckStatus::Ok => proto::AckStatus::Ok,
        domain::AckStatus::LeaseLost => proto::AckStatus::LeaseLost,
        domain::AckStatus::NotFound => proto::AckStatus::NotFound,
    }
}

fn unknown_enum(field: &str, value: i32) -> FieldViolation {
    FieldViolation::new(field, format!("{value} is not a known value"))
}

/// A state filter: UNSPECIFIED means "any".
fn message_state_filter(field: &str, value: i32) -> Result<Option<MessageState>, FieldViolation> {
    match proto::MessageState::try_from(value).map_err(|_| unknown_enum(field, value))? {
        proto::MessageState::Unspecified => Ok(None),
        proto::MessageState::Prepared => Ok(Some(MessageState::Prepared)),
        proto::MessageState::Confirmed => Ok(Some(MessageState::Confirmed)),
        proto::MessageState::Cancelled => Ok(Some(MessageState::Cancelled)),
        proto::MessageState::Unresolved => Ok(Some(MessageState::Unresolved)),
    }
}

fn message_outcome_filter(
    field: &str,
    value: i32,
) -> Result<Option<MessageOutcome>, FieldViolation> {
    let outcome =
        match proto::MessageOutcome::try_from(value).map_err(|_| unknown_enum(field, value))? {
            proto::MessageOutcome::Unspecified => return Ok(None),
            proto::MessageOutcome::Prepared => MessageOutcome::Prepared,
            proto::MessageOutcome::Cancelled => MessageOutcome::Cancelled,
            proto::MessageOutcome::Unresolved => MessageOutcome::Unresolved,
            proto::MessageOutcome::Delivering => MessageOutcome::Delivering,
            proto::MessageOutcome::Delivered => MessageOutcome::Delivered,
            proto::MessageOutcome::DeadLettered => MessageOutcome::DeadLettered,
        };
    Ok(Some(outcome))
}

fn delivery_state_filter(field: &str, value: i32) -> Result<Option<DeliveryState>, FieldViolation> {
    match proto::DeliveryState::try_from(value).map_err(|_| unknown_enum(field, value))? {
        proto::DeliveryState::Unspecified => Ok(None),
        proto::DeliveryState::Pending => Ok(Some(DeliveryState::Pending)),
        proto::DeliveryState::Leased => Ok(Some(DeliveryState::Leased)),
        proto::DeliveryState::Acked => Ok(Some(DeliveryState::Acked)),
        proto::DeliveryState::Dead => Ok(Some(DeliveryState::Dead)),
        proto::DeliveryState::Discarded => Ok(Some(DeliveryState::Discarded)),
    }
}

/// An operator's decision: only COMMIT and ROLLBACK decide anything.
fn decision(field: &str, value: i32) -> Result<domain::Decision, FieldViolation> {
    match proto::Decision::try_from(value).map_err(|_| unknown_enum(field, value))? {
        proto::Decision::Commit => Ok(domain::Decision::Commit),
        proto::Decision::Rollback => Ok(domain::Decision::Rollback),
        proto::Decision::Unspecified | proto::Decision::Unknown => Err(FieldViolation::new(
            field,
            "must be DECISION_COMMIT or DECISION_ROLLBACK",
        )),
    }
}

fn message_ref_in(
    checks: &mut Checks,
    field: &str,
    value: Option<proto::MessageRef>,
) -> Option<MessageRef> {
    use proto::message_ref::Ref;
    match value.and_then(|value| value.r#ref) {
        None => {
            checks.field(field, "is required: set message_id or producer_key");
            None
        }
        Some(Ref::MessageId(id)) => checks
            .take(message_id(&format!("{field}.message_id"), &id))
            .map(MessageRef::Id),
        Some(Ref::ProducerKey(producer_key)) => {
            let producer = checks.take(Name::parse(
                &format!("{field}.producer_key.producer"),
                &producer_key.producer,
            ));
            let key = checks.take(MessageKey::parse(
                &format!("{field}.producer_key.key"),
                &producer_key.key,
            ));
            Some(MessageRef::ProducerKey {
                producer: producer?,
                key: key?,
            })
        }
    }
}

/// The `message` field of Confirm, Cancel and CheckStatus.
pub fn message_ref(value: Option<proto::MessageRef>) -> Result<MessageRef, RequestError> {
    let mut checks = Checks::default();
    let Some(message) = message_ref_in(&mut checks, "message", value) else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(message)
}

// ---------------------------------------------------------------------------------------------
// Producer
// ---------------------------------------------------------------------------------------------

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
    ) = (producer, topic, key, ordering_key, check_after, deliver_after)
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

/// A gRPC endpoint: `http(s)://host[:port]`. A path, query or credentials would be silently
/// ignored by the gRPC client, so they are refused rather than stored.
fn endpoint(field: &str, value: &str) -> Result<String, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    let invalid = |problem: &str| {
        FieldViolation::new(
            field,
            format!("{problem}; write it like http://10.0.0.7:7001 or https://host:443"),
        )
    };
    let url =
        url::Url::parse(value).map_err(|error| invalid(&format!("is not a URL ({error})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must use http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry credentials"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a path, query or fragment"));
    }
    // The normalized form (lowercase host, no default port, no trailing slash), so equal
    // endpoints compare equal when a subscription is created again.
    Ok(url.as_str().trim_end_matches('/').to_owned())
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

fn delivery_status(status: domain::DeliveryStatus) -> proto::DeliveryStatus {
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

// ---------------------------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct ReceiveParams {
    pub subscription: Name,
    pub batch: Batch,
    pub wait: Duration,
}

/// A Receive: `max_bytes` 0 means `ceiling` (`limits.max_receive_bytes`), more is refused.
pub fn receive(
    request: proto::ReceiveRequest,
    ceiling: u32,
) -> Result<ReceiveParams, RequestError> {
    let mut checks = Checks::default();
    let subscription = checks.take(Name::parse("subscription", &request.subscription));
    let max_messages = match request.max_messages {
        0 => Some(1),
        1..=MAX_BATCH => Some(request.max_messages),
        other => {
            checks.field(
                "max_messages",
                format!("is {other}; at most {MAX_BATCH} are allowed"),
            );
            None
        }
    };
    let max_bytes = match request.max_bytes {
        0 => Some(ceiling),
        bytes if bytes <= ceiling => Some(bytes),
        other => {
            checks.field(
                "max_bytes",
                format!("is {other}; at most {ceiling} are allowed (limits.max_receive_bytes)"),
            );
            None
        }
    };
    let wait = checks
        .take(duration("wait", request.wait, &RECEIVE_WAIT))
        .map(Option::unwrap_or_default);
    let (Some(subscription), Some(messages), Some(max_bytes), Some(wait)) =
        (subscription, max_messages, max_bytes, wait)
    else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(ReceiveParams {
        subscription,
        batch: Batch {
            messages,
            bytes: u64::from(max_bytes),
        },
        wait,
    })
}

pub fn delivery(leased: LeasedDelivery) -> proto::Delivery {
    proto::Delivery {
        receipt: leased.receipt.to_string(),
        message_id: leased.receipt.message_id.to_string(),
        subscription: leased.receipt.subscription.to_string(),
        topic: leased.topic.to_string(),
        producer: leased.producer.to_string(),
        key: leased.key.as_str().to_owned(),
        payload: leased.payload,
        headers: leased.headers.into_iter().collect(),
        attempt: leased.attempt,
        published_at: Some(timestamp(leased.published_at)),
        lease_expires_at: Some(timestamp(leased.lease_expires_at)),
        ordering_key: leased.ordering_key.as_str().to_owned(),
    }
}

#[derive(Debug)]
pub struct AckParams {
    pub subscription: Name,
    pub receipts: Vec<Receipt>,
}

pub fn ack(request: proto::AckRequest) -> Result<AckParams, RequestError> {
    let mut checks = Checks::default();
    let subscription = checks.take(Name::parse("subscription", &request.subscription));
    if request.receipts.is_empty() {
        checks.field("receipts", "at least one receipt is required");
    }
    if request.receipts.len() > MAX_BATCH as usize {
        checks.field(
            "receipts",
            format!(
                "has {} receipts; at most {MAX_BATCH} are allowed",
                request.receipts.len()
            ),
        );
    }
    let receipts: Vec<Option<Receipt>> = request
        .receipts
        .iter()
        .enumerate()
        .map(|(index, value)| checks.take(receipt(&format!("receipts[{index}]"), value)))
        .collect();
    let (Some(subscription), Some(receipts)) = (
        subscription,
        receipts.into_iter().collect::<Option<Vec<_>>>(),
    ) else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(AckParams {
        subscription,
        receipts,
    })
}

impl AckParams {
    /// Every receipt must belong to the request's subscription.
    pub fn check_owner(&self) -> Result<(), RequestError> {
        let mut checks = Checks::default();
        for (index, receipt) in self.receipts.iter().enumerate() {
            check_owner(
                &mut checks,
                &format!("receipts[{index}]"),
                receipt,
                &self.subscription,
            );
        }
        checks.finish()
    }
}

pub fn ack_response(receipts: &[Receipt], statuses: Vec<domain::AckStatus>) -> proto::AckResponse {
    let results = receipts
        .iter()
        .zip(statuses)
        .map(|(receipt, status)| proto::AckResult {
            receipt: receipt.to_string(),
            status: ack_status(status).into(),
        })
        .collect();
    proto::AckResponse { results }
}

/// The subscription and receipt every single-receipt consumer call carries.
#[derive(Debug)]
pub struct LeaseTarget {
    pub subscription: Name,
    pub receipt: Receipt,
}

impl LeaseTarget {
    /// The receipt must belong to the request's subscription.
    pub fn check_owner(&self) -> Result<(), RequestError> {
        let mut checks = Checks::default();
        check_owner(&mut checks, "receipt", &self.receipt, &self.subscription);
        checks.finish()
    }
}

fn lease_target(checks: &mut Checks, subscription: &str, value: &str) -> Option<LeaseTarget> {
    let subscription = checks.take(Name::parse("subscription", subscription));
    let receipt = checks.take(receipt("receipt", value));
    Some(LeaseTarget {
        subscription: subscription?,
        receipt: receipt?,
    })
}

#[derive(Debug)]
pub struct NackParams {
    pub target: LeaseTarget,
    pub delay: Option<Duration>,
}

pub fn nack(request: proto::NackRequest) -> Result<NackParams, RequestError> {
    let mut checks = Checks::default();
    let target = lease_target(&mut checks, &request.subscription, &request.receipt);
    let delay = checks.take(duration("delay", request.delay, &NACK_DELAY));
    let (Some(target), Some(delay)) = (target, delay) else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(NackParams { target, delay })
}

#[derive(Debug)]
pub struct ExtendLeaseParams {
    pub target: LeaseTarget,
    pub extension: Duration,
}

pub fn extend_lease(request: proto::ExtendLeaseRequest) -> Result<ExtendLeaseParams, RequestError> {
    let mut checks = Checks::default();
    let target = lease_target(&mut checks, &request.subscription, &request.receipt);
    let extension = checks.take(required_duration(
        "extension",
        request.extension,
        &LEASE_EXTENSION,
    ));
    let (Some(target), Some(extension)) = (target, extension) else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(ExtendLeaseParams { target, extension })
}

pub fn extend_lease_response(lease_expires_at: Timestamp) -> proto::ExtendLeaseResponse {
    proto::ExtendLeaseResponse {
        lease_expires_at: Some(timestamp(lease_expires_at)),
    }
}

#[derive(Debug)]
pub struct RejectParams {
    pub target: LeaseTarget,
    pub reason: String,
}

pub fn reject(request: proto::RejectRequest) -> Result<RejectParams, RequestError> {
    let mut checks = Checks::default();
    let target = lease_target(&mut checks, &request.subscription, &request.receipt);
    checks.take(domain::storable_text("reason", &request.reason));
    if request.reason.len() > MAX_REJECT_REASON_BYTES {
        checks.field(
            "reason",
            format!(
                "is {} bytes; at most {MAX_REJECT_REASON_BYTES} are allowed",
                request.reason.len()
            ),
        );
    }
    let Some(target) = target else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(RejectParams {
        target,
        reason: request.reason,
    })
}

// ---------------------------------------------------------------------------------------------
// Admin
// ---------------------------------------------------------------------------------------------

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

pub fn topic_filter(value: &str) -> Result<Option<Name>, RequestError> {
    optional_name("topic", value).map_err(|violation| RequestError::Invalid(vec![violation]))
}

pub fn list_messages(request: proto::ListMessagesRequest) -> Result<MessageQuery, RequestError> {
    let mut checks = Checks::default();
    let topic = checks.take(optional_name("topic", &request.topic));
    let producer = checks.take(optional_name("producer", &request.producer));
    let state = checks.take(message_state_filter("state", request.state));
    let outcome = checks.take(message_outcome_filter("outcome", request.outcome));
    let page_size = checks.take(page_size("page_size", request.page_size));
    let before = checks.take(page_token("page_token", &request.page_token));
    let (Some(topic), Some(producer), Some(state), Some(outcome), Some(page_size), Some(before)) =
        (topic, producer, state, outcome, page_size, before)
    else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(MessageQuery {
        topic,
        producer,
        state,
        outcome,
        page_size,
        before,
    })
}

pub fn list_messages_response(page: Page<MessageRecord>) -> proto::ListMessagesResponse {
    proto::ListMessagesResponse {
        messages: page.items.into_iter().map(message).collect(),
        next_page_token: next_page_token(page.next),
    }
}

pub fn list_deliveries(
    request: proto::ListDeliveriesRequest,
) -> Result<DeliveryQuery, RequestError> {
    let mut checks = Checks::default();
    let subscription = checks.take(Name::parse("subscription", &request.subscription));
    let state = checks.take(delivery_state_filter("state", request.state));
    let page_size = checks.take(page_size("page_size", request.page_size));
    let after = checks.take(page_token("page_token", &request.page_token));
    let (Some(subscription), Some(state), Some(page_size), Some(after)) =
        (subscription, state, page_size, after)
    else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(DeliveryQuery {
        subscription,
        state,
        blocking_only: request.blocking_only,
        page_size,
        after,
    })
}

pub fn list_deliveries_response(
    page: Page<domain::DeliveryStatus>,
) -> proto::ListDeliveriesResponse {
    proto::ListDeliveriesResponse {
        deliveries: page.items.into_iter().map(delivery_status).collect(),
        next_page_token: next_page_token(page.next),
    }
}

/// The dead letters Redrive or DiscardDeadLetters act on: all of the subscription's when
/// `message_ids` is empty.
#[derive(Debug)]
pub struct DeadLetters {
    pub subscription: Name,
    pub message_ids: Vec<MessageId>,
}

pub fn redrive(request: proto::RedriveRequest) -> Result<DeadLetters, RequestError> {
    dead_letters(&request.subscription, &request.message_ids)
}

pub fn discard_dead_letters(
    request: proto::DiscardDeadLettersRequest,
) -> Result<DeadLetters, RequestError> {
    dead_letters(&request.subscription, &request.message_ids)
}

fn dead_letters(subscription: &str, message_ids: &[String]) -> Result<DeadLetters, RequestError> {
    let mut checks = Checks::default();
    let subscription = checks.take(Name::parse("subscription", subscription));
    let message_ids: Option<Vec<MessageId>> = message_ids
        .iter()
        .enumerate()
        .map(|(index, id)| checks.take(message_id(&format!("message_ids[{index}]"), id)))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let (Some(subscription), Some(message_ids)) = (subscription, message_ids) else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(DeadLetters {
        subscription,
        message_ids,
    })
}

pub fn resolve(
    request: proto::ResolveRequest,
) -> Result<(MessageRef, domain::Decision), RequestError> {
    let mut checks = Checks::default();
    let message = message_ref_in(&mut checks, "message", request.message);
    let decision = checks.take(decision("decision", request.decision));
    let (Some(message), Some(decision)) = (message, decision) else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok((message, decision))
}

pub fn stats(stats: Stats) -> proto::GetStatsResponse {
    let topics = stats
        .topics
        .into_iter()
        .map(|topic| proto::TopicStats {
            topic: topic.topic,
            prepared: topic.prepared,
            confirmed: topic.confirmed,
            cancelled: topic.cancelled,
            unresolved: topic.unresolved,
            unrouted: topic.unrouted,
        })
        .collect();
    let subscriptions = stats
        .subscriptions
        .into_iter()
        .map(|subscription| proto::SubscriptionStats {
            subscription: subscription.subscription,
            topic: subscription.topic,
            pending: subscription.pending,
            leased: subscription.leased,
            acked: subscription.acked,
            dead: subscription.dead,
            oldest_pending_age: subscription.oldest_pending_age.map(proto_duration),
            discarded: subscription.discarded,
            blocked_lanes: subscription.blocked_lanes,
        })
        .collect();
    proto::GetStatsResponse {
        topics,
        subscriptions,
        unrouted_confirms: stats.unrouted_confirms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(seconds: i64) -> Option<prost_types::Duration> {
        Some(prost_types::Duration { seconds, nanos: 0 })
    }

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

    fn fields(error: RequestError) -> Vec<String> {
        match error {
            RequestError::Invalid(violations) => violations.into_iter().map(|v| v.field).collect(),
            RequestError::OverLimit(limits) => panic!("expected field violations, got {limits:?}"),
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

    #[test]
    fn durations_must_be_in_range() {
        let range = CHECK_AFTER;
        assert_eq!(duration("d", None, &range), Ok(None));
        assert_eq!(duration("d", seconds(1), &range), Ok(Some(SECOND)));
        let violation = duration("d", seconds(8 * 24 * 3600), &range).unwrap_err();
        assert_eq!(violation.description, "is 8d; it must be between 1s and 7d");
        let negative = prost_types::Duration {
            seconds: 0,
            nanos: -5,
        };
        assert!(duration("d", Some(negative), &range).is_err());
    }

    #[test]
    fn timestamps_convert_before_and_after_the_epoch() {
        let ts = timestamp(Timestamp::from_millis(1_500));
        assert_eq!((ts.seconds, ts.nanos), (1, 500_000_000));
        let ts = timestamp(Timestamp::from_millis(-1));
        assert_eq!((ts.seconds, ts.nanos), (-1, 999_000_000));
    }

    #[test]
    fn endpoints_must_be_plain_http_urls() {
        assert_eq!(
            endpoint("e", "http://10.0.0.7:7001").unwrap(),
            "http://10.0.0.7:7001"
        );
        assert_eq!(
            endpoint("e", "https://checker/").unwrap(),
            "https://checker"
        );
        assert_eq!(
            endpoint("e", " HTTP://Checker:80 ").unwrap(),
            "http://checker"
        );
        for bad in [
            "",
            "10.0.0.7:7001",
            "ftp://host:1",
            "http://host:1/path",
            "http://u:p@host:1",
            "http://",
        ] {
            assert!(endpoint("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_ref_needs_one_valid_variant() {
        use proto::message_ref::Ref;
        assert!(message_ref(None).is_err());
        let by_key = proto::MessageRef {
            r#ref: Some(Ref::ProducerKey(proto::ProducerKey {
                producer: String::new(),
                key: String::new(),
            })),
        };
        assert_eq!(
            fields(message_ref(Some(by_key)).unwrap_err()),
            ["message.producer_key.producer", "message.producer_key.key"]
        );
        let by_id = proto::MessageRef {
            r#ref: Some(Ref::MessageId("nope".into())),
        };
        assert_eq!(
            fields(message_ref(Some(by_id)).unwrap_err()),
            ["message.message_id"]
        );
    }

    #[test]
    fn ack_checks_each_receipt_and_its_subscription() {
        let id = MessageId::new();
        let request = proto::AckRequest {
            subscription: "billing".into(),
            receipts: vec![
                format!("{id}:1:billing"),
                "garbage".into(),
                format!("{id}:1:shipping"),
            ],
        };
        assert_eq!(fields(ack(request).unwrap_err()), ["receipts[1]"]);
        let foreign = proto::AckRequest {
            subscription: "billing".into(),
            receipts: vec![format!("{id}:1:billing"), format!("{id}:1:shipping")],
        };
        let params = ack(foreign).unwrap();
        assert_eq!(fields(params.check_owner().unwrap_err()), ["receipts[1]"]);
        let empty = proto::AckRequest {
            subscription: "billing".into(),
            receipts: vec![],
        };
        assert_eq!(fields(ack(empty).unwrap_err()), ["receipts"]);
    }

    #[test]
    fn receive_limits_and_defaults() {
        let params = receive(
            proto::ReceiveRequest {
                subscription: "billing".into(),
                ..Default::default()
            },
            4_000_000,
        )
        .unwrap();
        assert_eq!(
            (params.batch, params.wait),
            (
                Batch {
                    messages: 1,
                    bytes: 4_000_000
                },
                Duration::ZERO
            )
        );
        let error = receive(
            proto::ReceiveRequest {
                subscription: "billing".into(),
                max_messages: 1001,
                wait: seconds(31),
                max_bytes: 4_000_001,
            },
            4_000_000,
        )
        .unwrap_err();
        assert_eq!(fields(error), ["max_messages", "max_bytes", "wait"]);
    }

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

    #[test]
    fn page_tokens_and_filters() {
        let query = list_messages(proto::ListMessagesRequest::default()).unwrap();
        assert_eq!(query.page_size, 100);
        assert!(query.topic.is_none() && query.state.is_none() && query.before.is_none());
        let error = list_messages(proto::ListMessagesRequest {
            page_token: "bogus".into(),
            page_size: 5000,
            state: 42,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(fields(error), ["state", "page_size", "page_token"]);
    }

    #[test]
    fn resolve_needs_a_real_decision() {
        let request = proto::ResolveRequest {
            message: Some(proto::MessageRef {
                r#ref: Some(proto::message_ref::Ref::MessageId(
                    MessageId::new().to_string(),
                )),
            }),
            decision: proto::Decision::Unknown.into(),
        };
        assert_eq!(fields(resolve(request).unwrap_err()), ["decision"]);
    }
}
