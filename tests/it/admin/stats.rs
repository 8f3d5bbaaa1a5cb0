//! Admin's GetStats: messages and deliveries counted by state, and unrouted confirms.

use std::time::Duration;

use courier::proto::{
    AckStatus, ConfirmRequest, DeleteSubscriptionRequest, GetStatsRequest, GetStatsResponse,
    MessageOutcome, MessageState, RejectRequest, TopicStats,
};

use crate::harness::*;

async fn stats(server: &TestServer) -> GetStatsResponse {
    server
        .admin()
        .get_stats(GetStatsRequest {})
        .await
        .expect("GetStats")
        .into_inner()
}

/// The stats of `TOPIC`.
fn topic_stats(stats: &GetStatsResponse) -> &TopicStats {
    stats
        .topics
        .iter()
        .find(|t| t.topic == TOPIC)
        .expect("stats of the topic")
}

#[tokio::test]
async fn get_stats_counts_messages_and_deliveries_by_state() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    server.prepare(TOPIC, "prepared").await;
    let cancelled = server.prepare(TOPIC, "cancelled").await;
    server.cancel(&cancelled).await.unwrap();
    for n in 0..4 {
        server.publish(TOPIC, &format!("order-{n}")).await;
    }
    let deliveries = server.receive(SUB, 3, Duration::ZERO).await;
    assert_eq!(deliveries.len(), 3);
    assert_eq!(
        server.ack(SUB, &[&deliveries[0].receipt]).await,
        [AckStatus::Ok]
    );
    server
        .consumer()
        .reject(RejectRequest {
            subscription: SUB.into(),
            receipt: deliveries[1].receipt.clone(),
            reason: "poison".into(),
        })
        .await
        .unwrap();
    // deliveries[2] stays leased; the fourth message stays pending.

    let stats = stats(&server).await;
    let topic = topic_stats(&stats);
    assert_eq!(
        (
            topic.prepared,
            topic.confirmed,
            topic.cancelled,
            topic.unresolved,
            topic.unrouted
        ),
        (1, 4, 1, 0, 0)
    );
    let sub = stats
        .subscriptions
        .iter()
        .find(|s| s.subscription == SUB)
        .expect("stats of the subscription");
    assert_eq!(sub.topic, TOPIC);
    assert_eq!((sub.pending, sub.leased, sub.acked, sub.dead), (1, 1, 1, 1));
    assert!(
        sub.oldest_pending_age.is_some(),
        "a due pending delivery has an age"
    );
    assert_eq!(stats.unrouted_confirms, 0);
}

#[tokio::test]
async fn a_confirm_that_finds_no_subscription_is_kept_as_unrouted() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.prepare(TOPIC, "order-1").await;
    server
        .admin()
        .delete_subscription(DeleteSubscriptionRequest { name: SUB.into() })
        .await
        .unwrap();

    let state = server
        .producer()
        .confirm(ConfirmRequest {
            message: by_id(&id),
        })
        .await
        .expect("a confirm without subscriptions still confirms")
        .into_inner()
        .state();
    assert_eq!(state, MessageState::Confirmed);
    let message = server.status(&id).await;
    assert_eq!(
        message.outcome(),
        MessageOutcome::Delivering,
        "it reached nobody"
    );
    assert!(message.deliveries.is_empty());

    let stats = stats(&server).await;
    assert_eq!(stats.unrouted_confirms, 1);
    let topic = topic_stats(&stats);
    assert_eq!((topic.confirmed, topic.unrouted), (1, 1));
}
