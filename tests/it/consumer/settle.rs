//! Settling a lease: Ack and Reject (both idempotent), and receipts that lost their lease or
//! whose delivery is gone.

use std::time::Duration;

use courier::proto::{
    AckRequest, AckStatus, DeleteSubscriptionRequest, DeliveryState, MessageOutcome, ReceiveRequest,
};
use tonic::Code;

use super::{extend, nack, reject};
use crate::harness::*;

#[tokio::test]
async fn ack_settles_the_delivery_and_is_idempotent() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.publish(TOPIC, "order-1").await;
    let delivery = server.receive_one(SUB, Duration::ZERO).await;

    assert_eq!(server.ack(SUB, &[&delivery.receipt]).await, [AckStatus::Ok]);
    assert_eq!(
        server.ack(SUB, &[&delivery.receipt]).await,
        [AckStatus::Ok],
        "acking twice is OK"
    );

    let status = server.delivery_status(&id, SUB).await;
    assert_eq!(status.state(), DeliveryState::Acked);
    assert_eq!(
        server.status(&id).await.outcome(),
        MessageOutcome::Delivered
    );
    assert!(server.receive(SUB, 10, Duration::ZERO).await.is_empty());

    // An acked delivery can no longer be given back, extended or rejected.
    let mut consumer = server.consumer();
    assert_code(
        consumer.nack(nack(SUB, &delivery.receipt, None)).await,
        Code::FailedPrecondition,
    );
    assert_code(
        consumer
            .extend_lease(extend(SUB, &delivery.receipt, Duration::from_secs(5)))
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        consumer
            .reject(reject(SUB, &delivery.receipt, "late"))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(
        server.delivery_status(&id, SUB).await.state(),
        DeliveryState::Acked
    );
}

#[tokio::test]
async fn a_receipt_from_before_a_redelivery_has_lost_its_lease() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.publish(TOPIC, "order-1").await;
    let other = server.publish(TOPIC, "order-2").await;
    let first = server.receive(SUB, 2, Duration::ZERO).await;
    assert_eq!(first.len(), 2);
    let (stale, kept) = if first[0].message_id == id {
        (&first[0], &first[1])
    } else {
        (&first[1], &first[0])
    };

    server
        .consumer()
        .nack(nack(SUB, &stale.receipt, Some(Duration::ZERO)))
        .await
        .expect("Nack");
    let again = server.receive_one(SUB, Duration::from_secs(2)).await;
    assert_eq!(again.message_id, id);
    assert_eq!(again.attempt, 2);
    assert_ne!(
        again.receipt, stale.receipt,
        "every lease has its own receipt"
    );

    let statuses = server
        .ack(SUB, &[&kept.receipt, &stale.receipt, &again.receipt])
        .await;
    assert_eq!(
        statuses,
        [AckStatus::Ok, AckStatus::LeaseLost, AckStatus::Ok]
    );
    assert_eq!(
        server.status(&id).await.outcome(),
        MessageOutcome::Delivered
    );
    assert_eq!(
        server.status(&other).await.outcome(),
        MessageOutcome::Delivered
    );
    let mut consumer = server.consumer();
    assert_code(
        consumer.nack(nack(SUB, &stale.receipt, None)).await,
        Code::FailedPrecondition,
    );
    assert_code(
        consumer
            .extend_lease(extend(SUB, &stale.receipt, Duration::from_secs(5)))
            .await,
        Code::FailedPrecondition,
    );
}

#[tokio::test]
async fn a_receipt_whose_delivery_is_gone_is_not_found() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    server.publish(TOPIC, "order-1").await;
    let delivery = server.receive_one(SUB, Duration::ZERO).await;

    // Deleting the subscription deletes its deliveries; the name can then be used again.
    server
        .admin()
        .delete_subscription(DeleteSubscriptionRequest { name: SUB.into() })
        .await
        .expect("DeleteSubscription");
    let mut consumer = server.consumer();
    let ack = AckRequest {
        subscription: SUB.into(),
        receipts: vec![delivery.receipt.clone()],
    };
    assert_code(consumer.ack(ack).await, Code::NotFound);
    let receive = ReceiveRequest {
        max_bytes: 0,
        subscription: SUB.into(),
        max_messages: 1,
        wait: None,
    };
    assert_code(consumer.receive(receive).await, Code::NotFound);
    server.create_subscription(subscription(SUB, TOPIC)).await;

    assert_eq!(
        server.ack(SUB, &[&delivery.receipt]).await,
        [AckStatus::NotFound]
    );
    assert_code(
        consumer.nack(nack(SUB, &delivery.receipt, None)).await,
        Code::NotFound,
    );
    assert_code(
        consumer
            .extend_lease(extend(SUB, &delivery.receipt, Duration::from_secs(5)))
            .await,
        Code::NotFound,
    );
    assert_code(
        consumer
            .reject(reject(SUB, &delivery.receipt, "gone"))
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn reject_parks_the_delivery_as_dead_and_is_idempotent() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.publish(TOPIC, "order-1").await;
    let delivery = server.receive_one(SUB, Duration::ZERO).await;

    let mut consumer = server.consumer();
    consumer
        .reject(reject(SUB, &delivery.receipt, "poison"))
        .await
        .expect("Reject");
    consumer
        .reject(reject(SUB, &delivery.receipt, "poison"))
        .await
        .expect("Reject again");

    let status = server.delivery_status(&id, SUB).await;
    assert_eq!(
        status.state(),
        DeliveryState::Dead,
        "dead at once, with attempts left"
    );
    assert_eq!(status.attempts, 1);
    assert!(
        status.last_error.contains("poison"),
        "{:?}",
        status.last_error
    );
    assert_eq!(
        server.status(&id).await.outcome(),
        MessageOutcome::DeadLettered
    );
    assert!(
        server
            .receive(SUB, 1, Duration::from_millis(200))
            .await
            .is_empty()
    );
}
