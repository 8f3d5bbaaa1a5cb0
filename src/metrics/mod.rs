//! Prometheus metrics: every metric Courier exports is defined here, and the rest of the code
//! records through the small functions below (`metrics::message_prepared()`, …).
//!
//! Counters and histograms live in one process-wide set, as they count what this process did.
//! The gauges (backlog per subscription, messages awaiting a check) describe the database, so
//! they are read from [`Store::stats`] when Prometheus scrapes, by the server that owns the
//! store ([`http`]). RPCs are counted by a tower layer on the gRPC server ([`rpc`]), which sees
//! the final gRPC status whether it travels in the headers or the trailers.
//!
//! [`Store::stats`]: crate::store::Store::stats

pub mod http;
pub mod rpc;

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::domain::{LeasedDelivery, MessageState};
use crate::store::Stats;

pub use http::serve;
pub use rpc::RpcMetricsLayer;

/// Every metric name starts with this (and an underscore).
const PREFIX: &str = "courier";

/// Upper bounds of the RPC latency buckets, in seconds: sub-millisecond store hits up to
/// Receive's longest long poll (30 s).
const RPC_BUCKETS: [f64; 15] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    service: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcCodeLabels {
    service: &'static str,
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabels {
    subscription: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadLabels {
    subscription: String,
    reason: &'static str,
}

type RpcHistograms = Family<RpcLabels, Histogram, fn() -> Histogram>;

fn rpc_histogram() -> Histogram {
    Histogram::new(RPC_BUCKETS)
}

/// The process-wide counters and histograms. Families are shared handles: registering a clone
/// exports the same values.
#[derive(Clone)]
struct Metrics {
    rpc_handled: Family<RpcCodeLabels, Counter>,
    rpc_duration: RpcHistograms,
    messages_prepared: Counter,
    messages_confirmed: Family<SourceLabels, Counter>,
    messages_cancelled: Family<SourceLabels, Counter>,
    messages_unresolved: Counter,
    messages_deleted: Counter,
    checks: Family<OutcomeLabels, Counter>,
    deliveries_leased: Family<SubscriptionLabels, Counter>,
    deliveries_redelivered: Family<SubscriptionLabels, Counter>,
    deliveries_acked: Family<SubscriptionLabels, Counter>,
    deliveries_nacked: Family<SubscriptionLabels, Counter>,
    deliveries_push_failed: Family<SubscriptionLabels, Counter>,
    deliveries_dead: Family<DeadLabels, Counter>,
    deliveries_redriven: Family<SubscriptionLabels, Counter>,
    leases_expired: Counter,
    stats_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            rpc_handled: Family::default(),
            rpc_duration: Family::new_with_constructor(rpc_histogram),
            messages_prepared: Counter::default(),
            messages_confirmed: Family::default(),
            messages_cancelled: Family::default(),
            messages_unresolved: Counter::default(),
            messages_deleted: Counter::default(),
            checks: Family::default(),
            deliveries_leased: Family::default(),
            deliveries_redelivered: Family::default(),
            deliveries_acked: Family::default(),
            deliveries_nacked: Family::default(),
            deliveries_push_failed: Family::default(),
            deliveries_dead: Family::default(),
            deliveries_redriven: Family::default(),
            leases_expired: Counter::default(),
            stats_errors: Counter::default(),
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

impl Metrics {
    /// Registers every counter and histogram (and the build info) with `registry`.
    fn register(&self, registry: &mut Registry) {
        let m = self.clone();
        registry.register(
            "build",
            "Courier's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "rpc_handled",
            "gRPC calls answered, by service, method and gRPC status code",
            m.rpc_handled,
        );
        registry.register_with_unit(
            "rpc_duration",
            "Time from a gRPC call's arrival to its final status, by service and method",
            Unit::Seconds,
            m.rpc_duration,
        );
        registry.register(
            "messages_prepared",
            "Messages created by Prepare (a repeated Prepare of the same key is not counted)",
            m.messages_prepared,
        );
        registry.register(
            "messages_confirmed",
            "Messages confirmed, by source: publish, producer (Confirm), check (a checker's \
             COMMIT) or operator (Resolve); idempotent repeats of Confirm and Resolve count again",
            m.messages_confirmed,
        );
        registry.register(
            "messages_cancelled",
            "Messages cancelled, by source: producer (Cancel), check (a checker's ROLLBACK) or \
             operator (Resolve); idempotent repeats of Cancel and Resolve count again",
            m.messages_cancelled,
        );
        registry.register(
            "messages_unresolved",
            "Messages that became UNRESOLVED: check-back exhausted its attempts",
            m.messages_unresolved,
        );
        registry.register(
            "messages_deleted",
            "Final messages deleted after their retention period",
            m.messages_deleted,
        );
        registry.register(
            "checks",
            "Check-back calls, by outcome: commit, rollback, unknown, error (the call failed, \
             timed out or answered no decision) or no_checker",
            m.checks,
        );
        registry.register(
            "deliveries_leased",
            "Deliveries handed out by Receive or push dispatch, by subscription",
            m.deliveries_leased,
        );
        registry.register(
            "deliveries_redelivered",
            "Deliveries handed out again (attempt 2 or later), by subscription",
            m.deliveries_redelivered,
        );
        registry.register(
            "deliveries_acked",
            "Deliveries acknowledged (Ack with status OK, or a push the receiver answered OK), \
             by subscription",
            m.deliveries_acked,
        );
        registry.register(
            "deliveries_nacked",
            "Deliveries given back by Nack, by subscription",
            m.deliveries_nacked,
        );
        registry.register(
            "deliveries_push_failed",
            "Pushes the receiver failed (an error status, a timeout, unreachable), by subscription",
            m.deliveries_push_failed,
        );
        registry.register(
            "deliveries_dead",
            "Deliveries that became DEAD, by subscription and reason: rejected (Reject), \
             nacked (a Nack on the last attempt), lease_expired (the lease of the last attempt \
             ran out) or push_failed (the last push attempt failed)",
            m.deliveries_dead,
        );
        registry.register(
            "deliveries_redriven",
            "Dead deliveries made PENDING again by Redrive, by subscription",
            m.deliveries_redriven,
        );
        registry.register(
            "leases_expired",
            "Leases that ran out without an Ack: the delivery is retried, or DEAD when out of \
             attempts",
            m.leases_expired,
        );
        registry.register(
            "stats_errors",
            "Scrapes whose read of the backlog gauges from the store failed or timed out",
            m.stats_errors,
        );
    }
}

// --- recording: one small function per event ---

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

/// Passes a Checker call's result through, counting its outcome.
pub fn check_called<E>(
    result: Result<crate::callbacks::CheckAnswer, E>,
) -> Result<crate::callbacks::CheckAnswer, E> {
    use crate::callbacks::CheckAnswer;
    check_answered(match &result {
        Ok(CheckAnswer::Decided(crate::domain::Decision::Commit)) => CheckOutcome::Commit,
        Ok(CheckAnswer::Decided(crate::domain::Decision::Rollback)) => CheckOutcome::Rollback,
        Ok(CheckAnswer::Unknown) => CheckOutcome::Unknown,
        Ok(CheckAnswer::Unspecified) | Err(_) => CheckOutcome::Error,
    });
    result
}

/// Deliveries of `subscription_name` were leased (Receive or push dispatch).
pub fn deliveries_leased(subscription_name: &str, deliveries: &[LeasedDelivery]) {
    if deliveries.is_empty() {
        return;
    }
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

fn rpc_finished(service: &'static str, method: &'static str, code: tonic::Code, took: Duration) {
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

fn stats_failed() {
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

// --- the exposition ---

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BacklogLabels {
    subscription: String,
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryStateLabels {
    subscription: String,
    topic: String,
    state: &'static str,
}

/// Registers the gauges that describe the database, from one read of its stats.
fn register_gauges(registry: &mut Registry, stats: &Stats) {
    let awaiting_check = Family::<TopicLabels, Gauge>::default();
    let awaiting_resolve = Family::<TopicLabels, Gauge>::default();
    for topic in &stats.topics {
        let labels = TopicLabels {
            topic: topic.topic.clone(),
        };
        awaiting_check
            .get_or_create(&labels)
            .set(saturating_i64(topic.prepared));
        awaiting_resolve
            .get_or_create(&labels)
            .set(saturating_i64(topic.unresolved));
    }
    let unrouted = Gauge::<i64>::default();
    unrouted.set(saturating_i64(stats.unrouted_confirms));

    let deliveries = Family::<DeliveryStateLabels, Gauge>::default();
    let oldest_pending =
        Family::<BacklogLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for sub in &stats.subscriptions {
        for (state, count) in [
            ("pending", sub.pending),
            ("leased", sub.leased),
            ("dead", sub.dead),
        ] {
            deliveries
                .get_or_create(&DeliveryStateLabels {
                    subscription: sub.subscription.clone(),
                    topic: sub.topic.clone(),
                    state,
                })
                .set(saturating_i64(count));
        }
        oldest_pending
            .get_or_create(&BacklogLabels {
                subscription: sub.subscription.clone(),
                topic: sub.topic.clone(),
            })
            .set(sub.oldest_pending_age.unwrap_or_default().as_secs_f64());
    }

    registry.register(
        "messages_awaiting_check",
        "PREPARED messages, by topic: waiting for the producer's Confirm or Cancel, or for \
         check-back",
        awaiting_check,
    );
    registry.register(
        "messages_awaiting_resolve",
        "UNRESOLVED messages, by topic: check-back gave up; held for Admin.Resolve or the \
         producer",
        awaiting_resolve,
    );
    registry.register(
        "messages_unrouted",
        "Confirmed messages that found no subscription at confirm time",
        unrouted,
    );
    registry.register(
        "subscription_deliveries",
        "Deliveries by subscription and state: pending, leased or dead",
        deliveries,
    );
    registry.register_with_unit(
        "subscription_oldest_pending_age",
        "How long the oldest due PENDING delivery of a subscription has waited (0 when none)",
        Unit::Seconds,
        oldest_pending,
    );
}

fn saturating_i64(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The OpenMetrics text exposition: the process's counters, and the gauges from `stats` when
/// the store could be read.
pub fn encode(stats: Option<&Stats>) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    METRICS.register(&mut registry);
    if let Some(stats) = stats {
        register_gauges(&mut registry, stats);
    }
    let mut text = String::new();
    // Writing to a String cannot fail; an encoding error would be a bug in a metric's labels.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::error!(%error, "cannot encode the metrics");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SubscriptionStats, TopicStats};

    #[test]
    fn exposition_carries_counters_and_gauges_with_conventional_names() {
        message_prepared();
        deliveries_acked("metrics-unit-sub", 2);
        rpc_finished(
            "courier.v1.Producer",
            "Prepare",
            tonic::Code::Ok,
            Duration::from_millis(3),
        );
        let stats = Stats {
            topics: vec![TopicStats {
                topic: "unit-orders".into(),
                prepared: 4,
                unresolved: 1,
                ..TopicStats::default()
            }],
            subscriptions: vec![SubscriptionStats {
                subscription: "unit-billing".into(),
                topic: "unit-orders".into(),
                pending: 7,
                dead: 2,
                oldest_pending_age: Some(Duration::from_millis(1500)),
                ..SubscriptionStats::default()
            }],
            unrouted_confirms: 3,
        };
        let text = encode(Some(&stats));
        for line in [
            "# TYPE courier_messages_prepared counter",
            "courier_deliveries_acked_total{subscription=\"metrics-unit-sub\"}",
            "courier_rpc_handled_total{service=\"courier.v1.Producer\",method=\"Prepare\",code=\"OK\"}",
            "# TYPE courier_rpc_duration_seconds histogram",
            "courier_rpc_duration_seconds_bucket{le=\"0.005\",service=\"courier.v1.Producer\",method=\"Prepare\"}",
            "courier_messages_awaiting_check{topic=\"unit-orders\"} 4",
            "courier_messages_awaiting_resolve{topic=\"unit-orders\"} 1",
            "courier_messages_unrouted 3",
            "courier_subscription_deliveries{subscription=\"unit-billing\",topic=\"unit-orders\",state=\"pending\"} 7",
            "courier_subscription_deliveries{subscription=\"unit-billing\",topic=\"unit-orders\",state=\"dead\"} 2",
            "courier_subscription_oldest_pending_age_seconds{subscription=\"unit-billing\",topic=\"unit-orders\"} 1.5",
            "courier_build_info{version=",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        assert!(!encode(None).contains("courier_subscription_deliveries"));
    }

    #[test]
    fn check_outcomes_and_decisions_land_in_their_series() {
        use crate::callbacks::CheckAnswer;
        use crate::domain::Decision;
        let count = |text: &str, series: &str| -> f64 {
            text.lines()
                .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let before = encode(None);
        let _ = check_called::<()>(Ok(CheckAnswer::Decided(Decision::Rollback)));
        let _ = check_called::<()>(Ok(CheckAnswer::Unspecified));
        let _ = check_called(Err("timed out"));
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
