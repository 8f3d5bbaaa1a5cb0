//! Producer: Prepare, Confirm, Cancel, Publish, CheckStatus, RegisterChecker; the message
//! state machine and producer-key dedup.

use std::time::Duration;

use courier::proto::{
    AckStatus, CancelRequest, CheckStatusRequest, ConfirmRequest, DeliveryState,
    ListMessagesRequest, MessageOutcome, MessageState, RegisterCheckerRequest, RejectRequest,
};
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn prepare_stores_a_prepared_message_that_is_not_delivered() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;

    let id = server.prepare(TOPIC, "order-1").await;

    let message = server.status(&id).await;
    assert_eq!(message.message_id, id);
    assert_eq!(message.producer, PRODUCER);
    assert_eq!(message.topic, TOPIC);
    assert_eq!(message.key, "order-1");
    assert_eq!(message.headers, headers_of("order-1"));
    assert_eq!(message.payload_bytes, payload_of("order-1").len() as u64);
    assert_eq!(message.state(), MessageState::Prepared);
    assert_eq!(message.outcome(), MessageOutcome::Prepared);
    assert!(message.created_at.is_some() && message.updated_at.is_some());
    assert!(
        message.deliveries.is_empty(),
        "a prepared message has no deliveries"
    );
    assert!(
        server.receive(SUB, 10, Duration::ZERO).await.is_empty(),
        "a prepared message is not delivered"
    );
}

#[tokio::test]
async fn confirm_is_idempotent_and_cancel_after_confirm_names_the_state() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.prepare(TOPIC, "order-1").await;

    assert_eq!(server.confirm(&id).await.unwrap(), MessageState::Confirmed);
    assert_eq!(server.confirm(&id).await.unwrap(), MessageState::Confirmed);
    assert_precondition_names(server.cancel(&id).await, "CONFIRMED");

    let message = server.status(&id).await;
    assert_eq!(message.state(), MessageState::Confirmed);
    assert_eq!(message.outcome(), MessageOutcome::Delivering);
    assert_eq!(message.deliveries.len(), 1, "one delivery per subscription");
    let delivery = &message.deliveries[0];
    assert_eq!(delivery.subscription, SUB);
    assert_eq!(delivery.message_id, id);
    assert_eq!(delivery.state(), DeliveryState::Pending);
    assert_eq!(delivery.attempts, 0);

    let received = server.receive_one(SUB, Duration::ZERO).await;
    assert_eq!(received.message_id, id);
}

#[tokio::test]
async fn cancel_is_idempotent_and_confirm_after_cancel_names_the_state() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.prepare(TOPIC, "order-1").await;

    assert_eq!(server.cancel(&id).await.unwrap(), MessageState::Cancelled);
    assert_eq!(server.cancel(&id).await.unwrap(), MessageState::Cancelled);
    assert_precondition_names(server.confirm(&id).await, "CANCELLED");

    let message = server.status(&id).await;
    assert_eq!(message.state(), MessageState::Cancelled);
    assert_eq!(message.outcome(), MessageOutcome::Cancelled);
    assert!(message.deliveries.is_empty());
    assert!(server.receive(SUB, 10, Duration::ZERO).await.is_empty());
}

#[tokio::test]
async fn unknown_messages_are_not_found() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let unknown = uuid::Uuid::now_v7().to_string();

    assert_code(server.confirm(&unknown).await, Code::NotFound);
    assert_code(server.cancel(&unknown).await, Code::NotFound);
    let mut producer = server.producer();
    for message in [by_id(&unknown), by_key(PRODUCER, "never-prepared")] {
        let result = producer
            .check_status(CheckStatusRequest {
                message: message.clone(),
            })
            .await;
        assert_code(result, Code::NotFound);
        assert_code(
            producer.confirm(ConfirmRequest { message }).await,
            Code::NotFound,
        );
    }
}

#[tokio::test]
async fn publish_confirms_at_once_and_is_delivered_with_its_content() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;

    let id = server.publish(TOPIC, "order-1").await;
    let message = server.status(&id).await;
    assert_eq!(message.state(), MessageState::Confirmed);
    assert_eq!(message.outcome(), MessageOutcome::Delivering);

    let delivery = server.receive_one(SUB, Duration::ZERO).await;
    assert_eq!(delivery.message_id, id);
    assert_eq!(delivery.key, "order-1");
    assert_eq!(delivery.payload, payload_of("order-1"));
    assert_eq!(delivery.headers, headers_of("order-1"));
    assert_eq!(server.ack(SUB, &[&delivery.receipt]).await, [AckStatus::Ok]);
    assert_eq!(
        server.status(&id).await.outcome(),
        MessageOutcome::Delivered
    );
}

#[tokio::test]
async fn check_status_reports_every_outcome_and_each_delivery() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let prepared = server.prepare(TOPIC, "prepared").await;
    let cancelled = server.prepare(TOPIC, "cancelled").await;
    server.cancel(&cancelled).await.unwrap();
    let delivered = server.publish(TOPIC, "delivered").await;
    let dead = server.publish(TOPIC, "dead").await;
    let delivering = server.publish(TOPIC, "delivering").await;

    let mut consumer = server.consumer();
    for delivery in server.receive(SUB, 2, Duration::ZERO).await {
        if delivery.message_id == delivered {
            assert_eq!(server.ack(SUB, &[&delivery.receipt]).await, [AckStatus::Ok]);
        } else {
            assert_eq!(
                delivery.message_id, dead,
                "the two oldest deliveries come first"
            );
            consumer
                .reject(RejectRequest {
                    subscription: SUB.into(),
                    receipt: delivery.receipt,
                    reason: "cannot parse".into(),
                })
                .await
                .expect("Reject");
        }
    }

    let expectations = [
        (&prepared, MessageOutcome::Prepared, None),
        (&cancelled, MessageOutcome::Cancelled, None),
        (
            &delivering,
            MessageOutcome::Delivering,
            Some(DeliveryState::Pending),
        ),
        (
            &delivered,
            MessageOutcome::Delivered,
            Some(DeliveryState::Acked),
        ),
        (
            &dead,
            MessageOutcome::DeadLettered,
            Some(DeliveryState::Dead),
        ),
    ];
    for (id, outcome, delivery_state) in expectations {
        let message = server.status(id).await;
        assert_eq!(message.outcome(), outcome, "outcome of {}", message.key);
        let states: Vec<_> = message.deliveries.iter().map(|d| d.state()).collect();
        assert_eq!(
            states,
            Vec::from_iter(delivery_state),
            "deliveries of {}",
            message.key
        );
    }
    let dead_delivery = server.delivery_status(&dead, SUB).await;
    assert_eq!(dead_delivery.attempts, 1);
    assert!(
        dead_delivery.last_error.contains("cannot parse"),
        "the reject reason is the last error: {:?}",
        dead_delivery.last_error
    );
}

#[tokio::test]
async fn repeated_prepare_with_the_same_content_returns_the_same_message() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut producer = server.producer();

    let id = server.prepare(TOPIC, "order-1").await;
    let again = producer
        .prepare(prepare_request(PRODUCER, TOPIC, "order-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (again.message_id.as_str(), again.created),
        (id.as_str(), false)
    );
    assert_eq!(again.state(), MessageState::Prepared);

    server.confirm(&id).await.unwrap();
    let after_confirm = producer
        .prepare(prepare_request(PRODUCER, TOPIC, "order-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (after_confirm.message_id.as_str(), after_confirm.created),
        (id.as_str(), false)
    );
    assert_eq!(after_confirm.state(), MessageState::Confirmed);

    let published = server.publish(TOPIC, "order-2").await;
    let republished = producer
        .publish(publish_request(PRODUCER, TOPIC, "order-2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (republished.message_id.as_str(), republished.created),
        (published.as_str(), false)
    );
    assert_eq!(republished.state(), MessageState::Confirmed);

    let listed = server
        .admin()
        .list_messages(ListMessagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(listed.len(), 2, "dedup stored no second message");
    assert_eq!(
        server.receive(SUB, 10, Duration::ZERO).await.len(),
        2,
        "one delivery each"
    );
}

#[tokio::test]
async fn reusing_a_key_with_other_content_is_already_exists() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    server
        .create_subscription(subscription("audit", "payments"))
        .await;
    let id = server.prepare(TOPIC, "order-1").await;
    let mut producer = server.producer();

    let mut other_payload = prepare_request(PRODUCER, TOPIC, "order-1");
    other_payload.payload = b"something else".to_vec();
    let mut other_headers = prepare_request(PRODUCER, TOPIC, "order-1");
    other_headers.headers.insert("extra".into(), "1".into());
    let other_topic = prepare_request(PRODUCER, "payments", "order-1");
    for request in [other_payload.clone(), other_headers, other_topic] {
        assert_code(producer.prepare(request).await, Code::AlreadyExists);
    }
    let mut publish = publish_request(PRODUCER, TOPIC, "order-1");
    publish.payload = other_payload.payload;
    assert_code(producer.publish(publish).await, Code::AlreadyExists);

    // The stored message is untouched, and the key is free for another producer.
    let message = server.status(&id).await;
    assert_eq!(message.state(), MessageState::Prepared);
    assert_eq!(message.headers, headers_of("order-1"));
    let other_producer = producer
        .prepare(prepare_request("warehouse", TOPIC, "order-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(other_producer.created);
    assert_ne!(other_producer.message_id, id);
}

#[tokio::test]
async fn messages_can_be_named_by_producer_key() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.prepare(TOPIC, "order-1").await;
    let mut producer = server.producer();

    let confirmed = producer
        .confirm(ConfirmRequest {
            message: by_key(PRODUCER, "order-1"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(confirmed.state(), MessageState::Confirmed);
    let status = producer
        .check_status(CheckStatusRequest {
            message: by_key(PRODUCER, "order-1"),
        })
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(status.message_id, id);
    assert_eq!(status.state(), MessageState::Confirmed);
    let cancel = producer
        .cancel(CancelRequest {
            message: by_key(PRODUCER, "order-1"),
        })
        .await;
    assert_precondition_names(cancel, "CONFIRMED");
    // The key belongs to its producer only.
    let other = producer
        .check_status(CheckStatusRequest {
            message: by_key("warehouse", "order-1"),
        })
        .await;
    assert_code(other, Code::NotFound);
}

#[tokio::test]
async fn prepare_and_publish_need_a_subscription_on_the_topic() {
    let server = TestServer::start().await;
    server
        .create_subscription(subscription(SUB, "payments"))
        .await;
    let mut producer = server.producer();

    assert_code(
        producer
            .prepare(prepare_request(PRODUCER, TOPIC, "order-1"))
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        producer
            .publish(publish_request(PRODUCER, TOPIC, "order-2"))
            .await,
        Code::FailedPrecondition,
    );
    let stored = server
        .admin()
        .list_messages(ListMessagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert!(stored.is_empty(), "nothing was accepted: {stored:?}");

    // Once the topic has a subscription the same key is accepted.
    server
        .create_subscription(subscription("billing-2", TOPIC))
        .await;
    server.prepare(TOPIC, "order-1").await;
}

#[tokio::test]
async fn register_checker_accepts_and_replaces_an_endpoint() {
    let server = TestServer::start().await;
    let mut producer = server.producer();
    for (endpoint, timeout) in [
        ("http://127.0.0.1:7001", None),
        ("https://checker.example:443", Some(Duration::from_secs(2))),
        ("http://10.0.0.7:7001", Some(Duration::from_millis(10))),
    ] {
        producer
            .register_checker(RegisterCheckerRequest {
                producer: PRODUCER.into(),
                endpoint: endpoint.into(),
                timeout: timeout.map(duration),
            })
            .await
            .unwrap_or_else(|status| panic!("RegisterChecker {endpoint}: {status:?}"));
    }
}
