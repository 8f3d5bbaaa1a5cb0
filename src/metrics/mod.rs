//! Prometheus metrics: every metric Courier exports is defined here (`families.rs`,
//! `gauges.rs`), and the rest of the code records through the small functions of `events.rs`
//! (`metrics::message_prepared()`, …).
//!
//! Counters and histograms live in one process-wide set, as they count what this process did.
//! The gauges (backlog per subscription, messages awaiting a check) describe the database, so
//! they are read from [`Store::stats`] when Prometheus scrapes, by the server that owns the
//! store (`crate::http_listener`). RPCs are counted by a tower layer on the gRPC server
//! ([`rpc`]), which sees the final gRPC status whether it travels in the headers or the
//! trailers.
//!
//! [`Store::stats`]: crate::store::Store::stats

pub mod minutes;
pub mod rpc;

mod events;
mod families;
mod gauges;

use prometheus_client::registry::Registry;

use crate::store::Stats;

use families::METRICS;
use gauges::register_gauges;

pub use events::*;
pub use rpc::RpcMetricsLayer;

/// Every metric name starts with this (and an underscore).
const PREFIX: &str = "courier";

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
    use std::time::Duration;

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
}
