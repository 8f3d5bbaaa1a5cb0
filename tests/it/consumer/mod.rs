//! Consumer: Receive (long poll), Ack, Nack, ExtendLease, Reject; the delivery state machine,
//! redelivery by lease expiry and backoff, fan-out and delayed delivery. One file per topic;
//! the request builders they share are here.

mod receive;
mod redelivery;
mod settle;

use std::time::Duration;

use courier::proto::{ExtendLeaseRequest, NackRequest, RejectRequest};

use crate::harness::duration;

fn nack(subscription: &str, receipt: &str, delay: Option<Duration>) -> NackRequest {
    NackRequest {
        subscription: subscription.into(),
        receipt: receipt.into(),
        delay: delay.map(duration),
        reason: String::new(),
    }
}

fn reject(subscription: &str, receipt: &str, reason: &str) -> RejectRequest {
    RejectRequest {
        subscription: subscription.into(),
        receipt: receipt.into(),
        reason: reason.into(),
    }
}

fn extend(subscription: &str, receipt: &str, extension: Duration) -> ExtendLeaseRequest {
    ExtendLeaseRequest {
        subscription: subscription.into(),
        receipt: receipt.into(),
        extension: Some(duration(extension)),
    }
}
