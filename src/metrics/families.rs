//! The process-wide counters and histograms: their labels, and how they are registered with
//! their names and help texts.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the RPC latency buckets, in seconds: sub-millisecond store hits up to
/// Receive's longest long poll (30 s).
const RPC_BUCKETS: [f64; 15] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RpcLabels {
    pub(super) service: &'static str,
    pub(super) method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RpcCodeLabels {
    pub(super) service: &'static str,
    pub(super) method: &'static str,
    pub(super) code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SourceLabels {
    pub(super) source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabels {
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SubscriptionLabels {
    pub(super) subscription: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DeadLabels {
    pub(super) subscription: String,
    pub(super) reason: &'static str,
}

type RpcHistograms = Family<RpcLabels, Histogram, fn() -> Histogram>;

fn rpc_histogram() -> Histogram {
    Histogram::new(RPC_BUCKETS)
}

/// The process-wide counters and histograms. Families are shared handles: registering a clone
/// exports the same values.
#[derive(Clone)]
pub(super) struct Metrics {
    pub(super) rpc_handled: Family<RpcCodeLabels, Counter>,
    pub(super) rpc_duration: RpcHistograms,
    pub(super) messages_prepared: Counter,
    pub(super) messages_confirmed: Family<SourceLabels, Counter>,
    pub(super) messages_cancelled: Family<SourceLabels, Counter>,
    pub(super) messages_unresolved: Counter,
    pub(super) messages_deleted: Counter,
    pub(super) checks: Family<OutcomeLabels, Counter>,
    pub(super) deliveries_leased: Family<SubscriptionLabels, Counter>,
    pub(super) deliveries_redelivered: Family<SubscriptionLabels, Counter>,
    pub(super) deliveries_acked: Family<SubscriptionLabels, Counter>,
    pub(super) deliveries_nacked: Family<SubscriptionLabels, Counter>,
    pub(super) deliveries_push_failed: Family<SubscriptionLabels, Counter>,
    pub(super) deliveries_dead: Family<DeadLabels, Counter>,
    pub(super) deliveries_redriven: Family<SubscriptionLabels, Counter>,
    pub(super) leases_expired: Counter,
    pub(super) stats_errors: Counter,
    pub(super) sqlite_wal_pages: Gauge,
    pub(super) sqlite_checkpoint_failures: Counter,
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
            sqlite_wal_pages: Gauge::default(),
            sqlite_checkpoint_failures: Counter::default(),
        }
    }
}

pub(super) static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

impl Metrics {
    /// Registers every counter and histogram (and the build info) with `registry`.
    pub(super) fn register(&self, registry: &mut Registry) {
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
        registry.register(
            "sqlite_wal_pages",
            "Pages in the SQLite write-ahead log at the last checkpoint (SQLite only); it \
             starts over from 0 once a checkpoint has caught up, so a steady climb means \
             checkpoints cannot finish",
            m.sqlite_wal_pages,
        );
        registry.register(
            "sqlite_checkpoint_failures",
            "Checkpoints of the SQLite write-ahead log that failed (SQLite only; a full disk, \
             an I/O error)",
            m.sqlite_checkpoint_failures,
        );
    }
}
