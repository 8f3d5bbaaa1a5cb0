//! Redelivery: Nack with a delay or with backoff until dead (then Redrive), ExtendLease, and
//! leases that expire.

use std::time::{Duration, Instant};

use courier::proto::{AckStatus, DeliveryState, MessageOutcome, RedriveRequest};

use super::{extend, nack};
use crate::harness::*;

#[tokio::test]
async fn nack_with_a_delay_holds_the_delivery_back_until_then() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.publish(TOPIC, "order-1").await;
    let delivery = server.receive_one(SUB, Duration::ZERO).await;

    let delay = Duration::from_secs(1);
    let nacked_at = Instant::now();
    server
        .consumer()
        .nack(nack(SUB, &delivery.receipt, Some(delay)))
        .await
        .expect("Nack");
    let status = server.delivery_status(&id, SUB).await;
    assert_eq!(status.state(), DeliveryState::Pending);
    assert_eq!(status.attempts, 1);
    assert_eq!(status.last_error, "nacked by the consumer");
    assert!(
        server.receive(SUB, 1, Duration::ZERO).await.is_empty(),
        "not before the delay"
    );

    let again = server.receive_one(SUB, Duration::from_secs(4)).await;
    let waited = nacked_at.elapsed();
    assert!(
        waited >= delay - Duration::from_millis(50),
        "redelivered after {waited:?}"
    );
    assert!(
        waited < delay + Duration::from_secs(2),
        "redelivered only after {waited:?}"
    );
    assert_eq!((again.message_id.as_str(), again.attempt), (id.as_str(), 2));
}

#[tokio::test]
async fn nacked_deliveries_retry_with_backoff_until_dead_then_redrive_delivers_again() {
    let server = TestServer::start().await;
    server
        .create_subscription(fast_subscription(SUB, TOPIC, 3))
        .await;
    let id = server.publish(TOPIC, "order-1").await;

    let mut consumer = server.consumer();
    for attempt in 1..=3 {
        let delivery = server.receive_one(SUB, Duration::from_secs(3)).await;
        assert_eq!(delivery.attempt, attempt);
        consumer
            .nack(nack(SUB, &delivery.receipt, None))
            .await
            .expect("Nack");
    }
    let dead = server.delivery_status(&id, SUB).await;
    assert_eq!(dead.state(), DeliveryState::Dead, "dead after max_attempts");
    assert_eq!(dead.attempts, 3);
    assert_eq!(
        server.status(&id).await.outcome(),
        MessageOutcome::DeadLettered
    );
    assert!(
        server
            .receive(SUB, 1, Duration::from_millis(300))
            .await
            .is_empty()
    );

    let redriven = server
        .admin()
        .redrive(RedriveRequest {
            subscription: SUB.into(),
            message_ids: vec![],
            ..Default::default()
        })
        .await
        .expect("Redrive")
        .into_inner()
        .redriven;
    assert_eq!(redriven, 1);
    let pending = server.delivery_status(&id, SUB).await;
    assert_eq!(pending.state(), DeliveryState::Pending);
    assert_eq!(pending.attempts, 0, "redrive resets the attempts");

    let delivery = server.receive_one(SUB, Duration::from_secs(2)).await;
    assert_eq!(delivery.attempt, 1);
    assert_eq!(server.ack(SUB, &[&delivery.receipt]).await, [AckStatus::Ok]);
    assert_eq!(
        server.status(&id).await.outcome(),
        MessageOutcome::Delivered
    );
}

#[tokio::test]
async fn extend_lease_keeps_a_delivery_past_its_original_deadline() {
    let server = TestServer::start().await;
    server
        .create_subscription(fast_subscription(SUB, TOPIC, 5))
        .await;
    let id = server.publish(TOPIC, "order-1").await;
    let delivery = server.receive_one(SUB, Duration::ZERO).await;
    let original_end = to_system_time(&delivery.lease_expires_at);

    let extended = server
        .consumer()
        .extend_lease(extend(SUB, &delivery.receipt, Duration::from_secs(4)))
        .await
        .expect("ExtendLease")
        .into_inner();
    let new_end = to_system_time(&extended.lease_expires_at);
    assert!(
        new_end >= original_end + Duration::from_secs(2),
        "the lease moved from {original_end:?} to {new_end:?}"
    );

    // Past the original 1 s deadline (and the expiry loop's reaction time) nothing comes back.
    assert!(
        server
            .receive(SUB, 1, Duration::from_millis(2500))
            .await
            .is_empty()
    );
    let status = server.delivery_status(&id, SUB).await;
    assert_eq!(
        (status.state(), status.attempts),
        (DeliveryState::Leased, 1)
    );
    assert_eq!(server.ack(SUB, &[&delivery.receipt]).await, [AckStatus::Ok]);
}

#[tokio::test]
async fn an_expired_lease_is_redelivered_and_the_old_receipt_loses_it() {
    let server = TestServer::start().await;
    server
        .create_subscription(fast_subscription(SUB, TOPIC, 5))
        .await;
    let id = server.publish(TOPIC, "order-1").await;
    // Taken before the Receive is sent: the lease cannot start earlier, so the time its answer
    // spends on the way back (long on a loaded machine) does not eat into the margin.
    let leased_at = Instant::now();
    let first = server.receive_one(SUB, Duration::ZERO).await;

    let second = server.receive_one(SUB, Duration::from_secs(5)).await;
    assert!(
        leased_at.elapsed() >= Duration::from_millis(900),
        "redelivered after {:?}, before the 1 s deadline",
        leased_at.elapsed()
    );
    assert_eq!(
        (second.message_id.as_str(), second.attempt),
        (id.as_str(), 2)
    );
    assert_eq!(
        server.ack(SUB, &[&first.receipt, &second.receipt]).await,
        [AckStatus::LeaseLost, AckStatus::Ok]
    );
    assert_eq!(
        server.status(&id).await.outcome(),
        MessageOutcome::Delivered
    );
}

#[tokio::test]
async fn a_late_ack_succeeds_while_the_expired_delivery_is_not_leased_again() {
    let server = TestServer::start().await;
    server
        .create_subscription(fast_subscription(SUB, TOPIC, 5))
        .await;
    let id = server.publish(TOPIC, "order-1").await;
    let delivery = server.receive_one(SUB, Duration::ZERO).await;

    eventually(Duration::from_secs(5), "the lease expires", || async {
        let status = server.delivery_status(&id, SUB).await;
        (status.state() == DeliveryState::Pending).then_some(())
    })
    .await;
    assert_eq!(server.ack(SUB, &[&delivery.receipt]).await, [AckStatus::Ok]);
    assert_eq!(
        server.delivery_status(&id, SUB).await.state(),
        DeliveryState::Acked
    );
}

#[tokio::test]
async fn an_expired_lease_on_the_last_attempt_is_dead() {
    let server = TestServer::start().await;
    server
        .create_subscription(fast_subscription(SUB, TOPIC, 1))
        .await;
    let id = server.publish(TOPIC, "order-1").await;
    server.receive_one(SUB, Duration::ZERO).await;

    eventually(Duration::from_secs(5), "the delivery dies", || async {
        let status = server.delivery_status(&id, SUB).await;
        (status.state() == DeliveryState::Dead).then_some(())
    })
    .await;
    assert_eq!(
        server.status(&id).await.outcome(),
        MessageOutcome::DeadLettered
    );
}

#[tokio::test]
async fn a_nack_says_why_and_the_delivery_keeps_it() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.publish(TOPIC, "order-1").await;
    let delivery = server.receive_one(SUB, Duration::ZERO).await;
    let mut consumer = server.consumer();

    let mut bad = nack(SUB, &delivery.receipt, None);
    bad.reason = "x".repeat(1025);
    assert_invalid_field(consumer.nack(bad).await, "reason");
    let mut nul = nack(SUB, &delivery.receipt, None);
    nul.reason = "ledger\0down".into();
    assert_invalid_field(consumer.nack(nul).await, "reason");

    let mut said = nack(SUB, &delivery.receipt, Some(Duration::from_secs(60)));
    said.reason = "the ledger timed out".into();
    consumer.nack(said).await.expect("Nack with a reason");
    let status = server.delivery_status(&id, SUB).await;
    assert_eq!(status.state(), DeliveryState::Pending);
    assert_eq!(
        status.last_error,
        "nacked by the consumer: the ledger timed out"
    );
}
