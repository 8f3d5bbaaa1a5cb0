//! The consumer's requests: Receive, Ack, Nack, ExtendLease and Reject, and the deliveries
//! they hand out (also pushed to Receivers).

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::domain::{self, LeasedDelivery, Name, Receipt, Timestamp};
use crate::proto;
use crate::store::Batch;

use super::checks::{Checks, RequestError};
use super::durations::{SECOND, duration, required_duration, timestamp};
use super::scalars::receipt;
use super::states::ack_status;

const RECEIVE_WAIT: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(30);
const NACK_DELAY: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(12 * 3600);
const LEASE_EXTENSION: RangeInclusive<Duration> = SECOND..=Duration::from_secs(12 * 3600);

/// Most messages one Receive hands out, and most receipts one Ack takes.
pub const MAX_BATCH: u32 = 1000;
const MAX_REASON_BYTES: usize = 1024;

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

/// A delivery as handed out, with the trace context it carries (the stored one, or for a push
/// the one the Deliver call sends).
pub fn delivery(leased: LeasedDelivery) -> proto::Delivery {
    let (traceparent, tracestate) = match &leased.trace {
        Some(trace) => (trace.parent.to_string(), trace.tracestate().to_owned()),
        None => (String::new(), String::new()),
    };
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
        traceparent,
        tracestate,
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
    /// The consumer's words, when it gave any.
    pub reason: Option<String>,
}

pub fn nack(request: proto::NackRequest) -> Result<NackParams, RequestError> {
    let mut checks = Checks::default();
    let target = lease_target(&mut checks, &request.subscription, &request.receipt);
    let delay = checks.take(duration("delay", request.delay, &NACK_DELAY));
    check_reason(&mut checks, &request.reason);
    let (Some(target), Some(delay)) = (target, delay) else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(NackParams {
        target,
        delay,
        reason: (!request.reason.is_empty()).then_some(request.reason),
    })
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

/// A Nack's or Reject's reason: stored text, at most [`MAX_REASON_BYTES`].
fn check_reason(checks: &mut Checks, reason: &str) {
    checks.take(domain::storable_text("reason", reason));
    if reason.len() > MAX_REASON_BYTES {
        checks.field(
            "reason",
            format!(
                "is {} bytes; at most {MAX_REASON_BYTES} are allowed",
                reason.len()
            ),
        );
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
    check_reason(&mut checks, &request.reason);
    let Some(target) = target else {
        return Err(checks.into_error());
    };
    checks.finish()?;
    Ok(RejectParams {
        target,
        reason: request.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::test_support::{fields, seconds};
    use crate::domain::MessageId;

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
    fn a_nack_reason_is_optional_stored_text_of_at_most_1024_bytes() {
        let nack_with = |reason: String| {
            nack(proto::NackRequest {
                subscription: "billing".into(),
                receipt: format!("{}:1:billing", MessageId::new()),
                delay: None,
                reason,
            })
        };
        assert_eq!(nack_with(String::new()).unwrap().reason, None);
        let given = nack_with("the ledger timed out".into()).unwrap();
        assert_eq!(given.reason.as_deref(), Some("the ledger timed out"));
        assert_eq!(fields(nack_with("a\0b".into()).unwrap_err()), ["reason"]);
        assert_eq!(fields(nack_with("x".repeat(1025)).unwrap_err()), ["reason"]);
        assert!(nack_with("x".repeat(1024)).is_ok());
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
}
