//! The gauges that describe the database, built from one read of its stats at each scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::store::Stats;

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
pub(super) fn register_gauges(registry: &mut Registry, stats: &Stats) {
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
    let blocked_lanes = Family::<BacklogLabels, Gauge>::default();
    for sub in &stats.subscriptions {
        for (state, count) in [
            ("pending", sub.pending),
            ("leased", sub.leased),
            ("dead", sub.dead),
            ("discarded", sub.discarded),
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
        blocked_lanes
            .get_or_create(&BacklogLabels {
                subscription: sub.subscription.clone(),
                topic: sub.topic.clone(),
            })
            .set(saturating_i64(sub.blocked_lanes));
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
        "Deliveries by subscription and state: pending, leased, dead or discarded",
        deliveries,
    );
    registry.register(
        "subscription_blocked_lanes",
        "Ordering-key lanes held by a DEAD head, by subscription (ordered subscriptions that \
         block on one): redrive or discard the head",
        blocked_lanes,
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
