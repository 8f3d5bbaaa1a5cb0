//! Durability: the real `courier` binary, configured through `COURIER_*` environment variables,
//! is killed with SIGKILL and restarted on the same database; every write it had answered is
//! still there.

use std::time::Duration;

use courier::proto::{
    AckStatus, DeliveryState, GetSubscriptionRequest, MessageOutcome, MessageState, Subscription,
};
use futures::future::join_all;

use crate::harness::*;
use crate::process::{Courier, Launch};

#[tokio::test]
async fn every_answered_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let database = Backend::from_env().fresh_database(&dir).await;
    let server = Courier::start(&Launch::new("courier", &database.url, dir.path())).await;
    // Non-default settings, and a lease long enough that nothing is redelivered in this test.
    let created = server
        .create_subscription(Subscription {
            ack_deadline: secs(45),
            ..fast_subscription(SUB, TOPIC, 7)
        })
        .await;
    let acked = server.publish(TOPIC, "acked").await;
    let delivery = server.receive_one(SUB, Duration::ZERO).await;
    assert_eq!(delivery.message_id, acked);
    assert_eq!(server.ack(SUB, &[&delivery.receipt]).await, [AckStatus::Ok]);
    let prepared = server.prepare(TOPIC, "prepared").await;
    let cancelled = server.prepare(TOPIC, "cancelled").await;
    server.cancel(&cancelled).await.unwrap();
    let confirmed = server.prepare(TOPIC, "confirmed").await;
    server.confirm(&confirmed).await.unwrap();
    // A burst of concurrent publishes, answered just before the kill.
    let burst: Vec<String> = join_all((0..50).map(|n| {
        let api = Api::clone(&server);
        async move { api.publish(TOPIC, &format!("burst-{n}")).await }
    }))
    .await;
    let launch = server.kill();

    let server = Courier::start(&launch).await;
    let subscription = server
        .admin()
        .get_subscription(GetSubscriptionRequest { name: SUB.into() })
        .await
        .expect("the subscription survived")
        .into_inner();
    assert_eq!(subscription, created);

    let expectations = [
        (&acked, MessageState::Confirmed, MessageOutcome::Delivered),
        (&prepared, MessageState::Prepared, MessageOutcome::Prepared),
        (
            &cancelled,
            MessageState::Cancelled,
            MessageOutcome::Cancelled,
        ),
        (
            &confirmed,
            MessageState::Confirmed,
            MessageOutcome::Delivering,
        ),
    ];
    for (id, state, outcome) in expectations {
        let message = server.status(id).await;
        assert_eq!(
            (message.state(), message.outcome()),
            (state, outcome),
            "{}",
            message.key
        );
    }
    assert_eq!(
        server.delivery_status(&acked, SUB).await.state(),
        DeliveryState::Acked
    );
    for id in &burst {
        let message = server.status(id).await;
        assert_eq!(message.state(), MessageState::Confirmed, "{}", message.key);
        assert_eq!(message.deliveries.len(), 1, "{}", message.key);
    }

    // The producer keys still dedup, and the pending deliveries arrive with their content.
    let again = server
        .producer()
        .prepare(prepare_request(PRODUCER, TOPIC, "prepared"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (again.message_id.as_str(), again.created),
        (prepared.as_str(), false)
    );
    server.confirm(&prepared).await.unwrap();
    let mut pending = Vec::new();
    while pending.len() < burst.len() + 2 {
        let deliveries = server.receive(SUB, 100, Duration::from_secs(2)).await;
        assert!(
            !deliveries.is_empty(),
            "only {} of {} deliveries arrived",
            pending.len(),
            burst.len() + 2
        );
        pending.extend(deliveries);
    }
    assert_eq!(pending.len(), burst.len() + 2);
    for delivery in &pending {
        assert_eq!(delivery.payload, payload_of(&delivery.key));
        assert_eq!(delivery.attempt, 1);
    }
    assert!(pending.iter().any(|d| d.message_id == confirmed));
    assert!(pending.iter().any(|d| d.message_id == prepared));
    server.kill();
}
