//! Consumer: Receive (long poll), Ack, Nack, ExtendLease, Reject; the delivery state machine,
//! redelivery by lease expiry and backoff, fan-out and delayed delivery.

use std::time::{Duration, Instant, SystemTime};

use courier::proto::{
    AckRequest, AckStatus, DeliveryState, ExtendLeaseRequest, MessageOutcome, NackRequest,
    PublishRequest, ReceiveRequest, RedriveRequest, RejectRequest, Subscription,
};
use tonic::Code;

use crate::harness::*;

fn nack(subscription: &str, receipt: &str, delay: Option<Duration>) -> NackRequest {
    NackRequest {
        subscription: subscription.into(),
        receipt: receipt.into(),
        delay: delay.map(duration),
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

#[tokio::test]
async fn receive_leases_a_delivery_with_attempt_one() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.publish(TOPIC, "order-1").await;

    let before = SystemTime::now();
    let delivery = server.receive_one(SUB, Duration::ZERO).await;
    assert!(!delivery.receipt.is_empty());
    assert_eq!(delivery.message_id, id);
    assert_eq!(delivery.subscription, SUB);
    assert_eq!(delivery.topic, TOPIC);
    assert_eq!(delivery.producer, PRODUCER);
    assert_eq!(delivery.key, "order-1");
    assert_eq!(delivery.payload, payload_of("order-1"));
    assert_eq!(delivery.headers, headers_of("order-1"));
    assert_eq!(delivery.attempt, 1);
    assert!(delivery.published_at.is_some());
    // The default ack deadline is 30 s.
    let lease = to_system_time(&delivery.lease_expires_at)
        .duration_since(before)
        .expect("the lease ends in the future");
    assert!(
        (Duration::from_secs(28)..=Duration::from_secs(32)).contains(&lease),
        "lease of {lease:?}, expected about 30 s"
    );

    let status = server.delivery_status(&id, SUB).await;
    assert_eq!(status.state(), DeliveryState::Leased);
    assert_eq!(status.attempts, 1);
    assert!(
        server.receive(SUB, 10, Duration::ZERO).await.is_empty(),
        "a leased delivery goes to no other consumer"
    );
}

#[tokio::test]
async fn receive_hands_out_at_most_max_messages() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    for n in 0..5 {
        server.publish(TOPIC, &format!("order-{n}")).await;
    }
    assert_eq!(
        server.receive(SUB, 0, Duration::ZERO).await.len(),
        1,
        "0 means 1"
    );
    assert_eq!(server.receive(SUB, 3, Duration::ZERO).await.len(), 3);
    assert_eq!(
        server.receive(SUB, 10, Duration::ZERO).await.len(),
        1,
        "only one is left"
    );
    assert!(server.receive(SUB, 10, Duration::ZERO).await.is_empty());
}

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
        .delete_subscription(courier::proto::DeleteSubscriptionRequest { name: SUB.into() })
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
async fn every_subscription_of_a_topic_gets_its_own_delivery() {
    let server = TestServer::start().await;
    server
        .create_subscription(subscription("billing", TOPIC))
        .await;
    server
        .create_subscription(subscription("shipping", TOPIC))
        .await;
    server
        .create_subscription(subscription("audit", "payments"))
        .await;
    let id = server.publish(TOPIC, "order-1").await;

    let billing = server.receive_one("billing", Duration::ZERO).await;
    let shipping = server.receive_one("shipping", Duration::ZERO).await;
    assert_eq!(
        (billing.message_id.as_str(), shipping.message_id.as_str()),
        (id.as_str(), id.as_str())
    );
    assert_eq!(
        (
            billing.subscription.as_str(),
            shipping.subscription.as_str()
        ),
        ("billing", "shipping")
    );
    assert!(
        server.receive("audit", 10, Duration::ZERO).await.is_empty(),
        "other topics get nothing"
    );

    let mut subscriptions: Vec<_> = server
        .status(&id)
        .await
        .deliveries
        .into_iter()
        .map(|d| d.subscription)
        .collect();
    subscriptions.sort();
    assert_eq!(subscriptions, ["billing", "shipping"]);

    assert_eq!(
        server.ack("billing", &[&billing.receipt]).await,
        [AckStatus::Ok]
    );
    assert_eq!(
        server.status(&id).await.outcome(),
        MessageOutcome::Delivering,
        "shipping is still open"
    );
    assert_eq!(
        server.ack("shipping", &[&shipping.receipt]).await,
        [AckStatus::Ok]
    );
    assert_eq!(
        server.status(&id).await.outcome(),
        MessageOutcome::Delivered
    );
}

#[tokio::test]
async fn deliver_after_delays_the_first_delivery() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let delay = Duration::from_secs(1);
    let published_at = Instant::now();
    let response = server
        .producer()
        .publish(PublishRequest {
            deliver_after: Some(duration(delay)),
            ..publish_request(PRODUCER, TOPIC, "order-1")
        })
        .await
        .expect("Publish")
        .into_inner();

    assert!(
        server.receive(SUB, 1, Duration::ZERO).await.is_empty(),
        "not due yet"
    );
    let status = server.delivery_status(&response.message_id, SUB).await;
    assert_eq!(status.state(), DeliveryState::Pending);
    let created_at = to_system_time(&server.status(&response.message_id).await.created_at);
    assert!(
        to_system_time(&status.next_attempt_at) >= created_at + delay - Duration::from_millis(50)
    );

    let delivery = server.receive_one(SUB, Duration::from_secs(4)).await;
    let waited = published_at.elapsed();
    assert!(
        waited >= delay - Duration::from_millis(50),
        "delivered after {waited:?}"
    );
    assert!(
        waited < delay + Duration::from_secs(2),
        "delivered only after {waited:?}"
    );
    assert_eq!(
        (delivery.message_id, delivery.attempt),
        (response.message_id, 1)
    );
}

#[tokio::test]
async fn a_waiting_receive_returns_soon_after_a_confirm() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.prepare(TOPIC, "order-1").await;

    let mut consumer = server.consumer();
    let waiting = tokio::spawn(async move {
        let deliveries = consumer
            .receive(ReceiveRequest {
                max_bytes: 0,
                subscription: SUB.into(),
                max_messages: 1,
                wait: secs(10),
            })
            .await
            .expect("Receive")
            .into_inner()
            .deliveries;
        (deliveries, Instant::now())
    });
    // Let the Receive start waiting before anything is deliverable.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "Receive returned before anything was confirmed"
    );

    let confirming_at = Instant::now();
    server.confirm(&id).await.unwrap();
    let (deliveries, returned_at) = tokio::time::timeout(Duration::from_secs(11), waiting)
        .await
        .expect("Receive returns within its wait")
        .unwrap();
    let latency = returned_at.duration_since(confirming_at);
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].message_id, id);
    assert!(
        latency < Duration::from_millis(500),
        "Receive woke {latency:?} after the confirm"
    );
}

#[tokio::test]
async fn a_waiting_receive_returns_empty_after_its_wait() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let started = Instant::now();
    let deliveries = server.receive(SUB, 5, Duration::from_millis(400)).await;
    let waited = started.elapsed();
    assert!(deliveries.is_empty());
    assert!(
        waited >= Duration::from_millis(350),
        "returned after {waited:?}, before the wait"
    );
    assert!(
        waited < Duration::from_secs(3),
        "returned only after {waited:?}"
    );
}

#[tokio::test]
async fn receive_on_a_push_subscription_fails_precondition() {
    let server = TestServer::start().await;
    server
        .create_subscription(Subscription {
            push_endpoint: "http://127.0.0.1:9".into(),
            ..subscription(SUB, TOPIC)
        })
        .await;
    let result = server
        .consumer()
        .receive(ReceiveRequest {
            max_bytes: 0,
            subscription: SUB.into(),
            max_messages: 1,
            wait: None,
        })
        .await;
    assert_code(result, Code::FailedPrecondition);
}
