//! Receive: leasing, max_messages, the long poll, fan-out to every subscription, delayed
//! delivery, and push subscriptions turned away.

use std::time::{Duration, Instant, SystemTime};

use courier::proto::{
    AckStatus, DeliveryState, MessageOutcome, PublishRequest, ReceiveRequest, Subscription,
};
use tonic::Code;

use crate::harness::*;

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
async fn on_a_backlog_the_next_batch_is_leased_ahead_and_handed_out_in_order() {
    let server = TestServer::start_with(|config| config.limits.lease_ahead_batches = 4).await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(server.publish(TOPIC, &format!("order-{n}")).await);
    }
    let keys = |deliveries: &[courier::proto::Delivery]| -> Vec<String> {
        deliveries.iter().map(|d| d.key.clone()).collect()
    };

    // A full Receive: the next batch of two is leased before anyone asks for it.
    let first = server.receive(SUB, 2, Duration::ZERO).await;
    assert_eq!(keys(&first), ["order-0", "order-1"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.delivery_status(&ids[3], SUB).await.state() != DeliveryState::Leased {
        assert!(Instant::now() < deadline, "the next batch is leased ahead");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Committed; held for the next Receive a moment later (and for a second).
    tokio::time::sleep(Duration::from_millis(50)).await;

    // A larger Receive gets the two leased ahead, topped up by a lease, in order; then the rest.
    let second = server.receive(SUB, 3, Duration::from_secs(5)).await;
    assert_eq!(keys(&second), ["order-2", "order-3", "order-4"]);
    assert!(second.iter().all(|d| d.attempt == 1));
    let rest = server.receive(SUB, 10, Duration::from_secs(5)).await;
    assert_eq!(keys(&rest), ["order-5"]);

    let receipts: Vec<&str> = first
        .iter()
        .chain(&second)
        .chain(&rest)
        .map(|d| d.receipt.as_str())
        .collect();
    assert!(
        server
            .ack(SUB, &receipts)
            .await
            .iter()
            .all(|status| *status == AckStatus::Ok)
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
