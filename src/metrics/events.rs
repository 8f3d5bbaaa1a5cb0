//! Recording: one small function per event, called where the event happens.

use std::time::Duration;

use super::families::{
    DeadLabels, METRICS, OutcomeLabels, RpcCodeLabels, RpcLabels, SourceLabels, SubscriptionLabels,
};
use super::minutes::{self, Series};
use crate::domain::{LeasedDelivery, MessageState};

/// Who decided a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Publish: created CONFIRMED.
    Publish,
    /// The producer's Confirm or Cancel.
    Producer,
    /// The producer's Checker, asked by check-back.
    Check,
    /// An operator's Resolve.
    Operator,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Producer => "producer",
            Self::Check => "check",
            Self::Operator => "operator",
        }
    }
}

/// What a producer's Checker answered, or why there was no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Commit,
    Rollback,
    Unknown,
    /// The call failed or timed out, or the answer held no decision.
    Error,
    /// The producer registered no checker.
    NoChecker,
}

impl CheckOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::Rollback => "rollback",
            Self::Unknown => "unknown",
            Self::Error => "error",
            Self::NoChecker => "no_checker",
        }
    }
}

/// Why a delivery became DEAD (where Courier learns of it): the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// The consumer rejected it (on any attempt).
    Rejected,
    /// The consumer nacked its last attempt.
    Nacked,
    /// The lease of its last attempt ran out without an Ack.
    LeaseExpired,
    /// Its last push attempt failed.
    PushFailed,
}

impl DeadReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Nacked => "nacked",
            Self::LeaseExpired => "lease_expired",
            Self::PushFailed => "push_failed",
        }
    }
}

fn subscription(name: &str) -> SubscriptionLabels {
    SubscriptionLabels {
        subscription: name.to_owned(),
    }
}

/// A Prepare created a message.
pub fn message_prepared() {
    METRICS.messages_prepared.inc();
}

/// A decision applied to a message; `state` is the state it left the message in.
pub fn message_decided(state: MessageState, source: Source) {
    let labels = SourceLabels {
        source: source.as_str(),
    };
    match state {
        MessageState::Confirmed => {
            METRICS.messages_confirmed.get_or_create(&labels).inc();
            minutes::count(Series::Confirmed, 1);
        }
        MessageState::Cancelled => {
            METRICS.messages_cancelled.get_or_create(&labels).inc();
        }
        MessageState::Unresolved => {
            METRICS.messages_unresolved.inc();
        }
        MessageState::Prepared => {}
    }
}

/// A Publish created a message (CONFIRMED at once).
pub fn message_published() {
    message_decided(MessageState::Confirmed, Source::Publish);
}

/// One check-back call ended (or could not be made).
pub fn check_answered(outcome: CheckOutcome) {
    METRICS
        .checks
        .get_or_create(&OutcomeLabels {
            outcome: outcome.as_str(),
        })
        .inc();
}

/// Deliveries of `subscription_name` were leased (Receive or push dispatch).
pub fn deliveries_leased(subscription_name: &str, deliveries: &[LeasedDelivery]) {
    if deliveries.is_empty() {
        return;
    }
    minutes::count(Series::Delivered, deliveries.len() as u64);
    let labels = subscription(subscription_name);
    METRICS
        .deliveries_leased
        .get_or_create(&labels)
        .inc_by(deliveries.len() as u64);
    let redelivered = deliveries.iter().filter(|d| d.attempt > 1).count() as u64;
    if redelivered > 0 {
        METRICS
            .deliveries_redelivered
            .get_or_create(&labels)
            .inc_by(redelivered);
    }
}

pub fn deliveries_acked(subscription_name: &str, count: u64) {
    minutes::count(Series::Acked, count);
    if count > 0 {
        METRICS
            .deliveries_acked
            .get_or_create(&subscription(subscription_name))
            .inc_by(count);
    }
}

pub fn delivery_nacked(subscription_name: &str) {
    METRICS
        .deliveries_nacked
        .get_or_create(&subscription(subscription_name))
        .inc();
}

pub fn delivery_push_failed(subscription_name: &str) {
    METRICS
        .deliveries_push_failed
        .get_or_create(&subscription(subscription_name))
        .inc();
}

pub fn delivery_dead(subscription_name: &str, reason: DeadReason) {
    deliveries_dead(subscription_name, reason, 1);
}

/// `count` deliveries of `subscription_name` became DEAD for `reason`.
pub fn deliveries_dead(subscription_name: &str, reason: DeadReason, count: u64) {
    minutes::count(Series::Dead, count);
    if count > 0 {
        METRICS
            .deliveries_dead
            .get_or_create(&DeadLabels {
                subscription: subscription_name.to_owned(),
                reason: reason.as_str(),
            })
            .inc_by(count);
    }
}

pub fn deliveries_redriven(subscription_name: &str, count: u64) {
    if count > 0 {
        METRICS
            .deliveries_redriven
            .get_or_create(&subscription(subscription_name))
            .inc_by(count);
    }
}

pub fn leases_expired(count: u64) {
    METRICS.leases_expired.inc_by(count);
}

pub fn messages_deleted(count: u64) {
    METRICS.messages_deleted.inc_by(count);
}

pub(super) fn rpc_finished(
    service: &'static str,
    method: &'static str,
    code: tonic::Code,
    took: Duration,
) {
    METRICS
        .rpc_handled
        .get_or_create(&RpcCodeLabels {
            service,
            method,
            code: code_name(code),
        })
        .inc();
    METRICS
        .rpc_duration
        .get_or_create(&RpcLabels { service, method })
        .observe(took.as_secs_f64());
}

/// A checkpoint of the SQLite WAL ran; the WAL held `wal_pages` pages.
pub fn sqlite_checkpointed(wal_pages: i64) {
    METRICS.sqlite_wal_pages.set(wal_pages);
}

pub fn sqlite_checkpoint_failed() {
    METRICS.sqlite_checkpoint_failures.inc();
}

/// A scrape could not read the gauges from the store.
pub fn stats_failed() {
    METRICS.stats_errors.inc();
}

/// The canonical upper-case name of a gRPC status code, as the gRPC specification writes it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::encode;

    #[test]
    fn check_outcomes_and_decisions_land_in_their_series() {
        let count = |text: &str, series: &str| -> f64 {
            text.lines()
                .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let before = encode(None);
        check_answered(CheckOutcome::Rollback);
        check_answered(CheckOutcome::Error);
        check_answered(CheckOutcome::Error);
        check_answered(CheckOutcome::NoChecker);
        message_decided(MessageState::Cancelled, Source::Check);
        message_decided(MessageState::Unresolved, Source::Check);
        message_decided(MessageState::Prepared, Source::Check);
        let after = encode(None);
        for (series, added) in [
            ("courier_checks_total{outcome=\"rollback\"}", 1.0),
            ("courier_checks_total{outcome=\"error\"}", 2.0),
            ("courier_checks_total{outcome=\"no_checker\"}", 1.0),
            ("courier_messages_cancelled_total{source=\"check\"}", 1.0),
            ("courier_messages_unresolved_total", 1.0),
        ] {
            // Other unit tests may count too, in parallel: at least this test's own.
            assert!(
                count(&after, series) - count(&before, series) >= added,
                "{series} in:\n{after}"
            );
        }
    }

    #[test]
    fn every_code_has_its_canonical_name() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::NotFound), "NOT_FOUND");
        assert_eq!(
            code_name(tonic::Code::FailedPrecondition),
            "FAILED_PRECONDITION"
        );
    }
}
