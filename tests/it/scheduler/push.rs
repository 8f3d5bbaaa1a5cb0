//! Push delivery: the scheduler calls a push subscription's Receiver, retries failed and
//! unanswered calls with backoff, and dead-letters a delivery after its last attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use courier::domain::Timestamp;
use courier::proto::{DeliveryState, MessageOutcome, ReceiveRequest, RedriveRequest};
use courier::scheduler::PassReport;
use tonic::{Code, Status};

use super::fakes::{closed_endpoint, pushing_to};
use super::{Driven, PUSH_SUB, after, push_subscription, pushes};
use crate::harness::*;

#[tokio::test]
async fn a_push_answered_ok_acknowledges_the_delivery() {
    let (server, receiver) = pushing_to(5, |_| Box::pin(async { Ok(()) })).await;
    let id = server.publish(TOPIC, "order-1").await;

    let report = server.pass(Timestamp::now()).await;
    assert_eq!(report, pushes(|p| p.acked = 1));
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let delivery = &seen[0];
    assert_eq!(delivery.message_id, id);
    assert_eq!(delivery.subscription, PUSH_SUB);
    assert_eq!(
        (delivery.topic.as_str(), delivery.key.as_str()),
        (TOPIC, "order-1")
    );
    assert_eq!(delivery.payload, payload_of("order-1"));
    assert_eq!(delivery.headers, headers_of("order-1"));
    assert_eq!(delivery.attempt, 1);
    assert!(!delivery.receipt.is_empty());
    let message = server.status(&id).await;
    assert_eq!(message.outcome(), MessageOutcome::Delivered);
    assert_eq!(message.deliveries[0].state(), DeliveryState::Acked);
    // Pull consumers are turned away from a push subscription.
    let refused = server
        .consumer()
        .receive(ReceiveRequest {
            subscription: PUSH_SUB.into(),
            max_messages: 1,
            wait: None,
            max_bytes: 0,
        })
        .await;
    assert_code(refused, Code::FailedPrecondition);
}

#[tokio::test]
async fn a_push_failing_twice_is_retried_until_it_succeeds() {
    let (server, receiver) = pushing_to(5, |delivery| {
        Box::pin(async move {
            if delivery.attempt <= 2 {
                Err(Status::unavailable("warming up"))
            } else {
                Ok(())
            }
        })
    })
    .await;
    let id = server.publish(TOPIC, "order-1").await;

    let retried = pushes(|p| p.retried = 1);
    assert_eq!(server.pass(Timestamp::now()).await, retried);
    let delivery = server.status(&id).await.deliveries.remove(0);
    assert_eq!(delivery.state(), DeliveryState::Pending);
    assert_eq!(delivery.attempts, 1);
    assert!(
        delivery.last_error.contains("UNAVAILABLE: warming up"),
        "{}",
        delivery.last_error
    );

    assert_eq!(server.pass(after(60)).await, retried);
    assert_eq!(server.pass(after(120)).await, pushes(|p| p.acked = 1));
    assert_eq!(receiver.attempts(), [1, 2, 3]);
    let delivery = server.status(&id).await.deliveries.remove(0);
    assert_eq!(delivery.state(), DeliveryState::Acked);
    assert_eq!(delivery.attempts, 3);
}

#[tokio::test]
async fn a_push_that_never_succeeds_is_dead_until_redriven() {
    let healthy = Arc::new(AtomicBool::new(false));
    let (server, receiver) = pushing_to(2, {
        let healthy = healthy.clone();
        move |_| {
            let healthy = healthy.load(Ordering::SeqCst);
            Box::pin(async move {
                if healthy {
                    Ok(())
                } else {
                    Err(Status::internal("database is down"))
                }
            })
        }
    })
    .await;
    let id = server.publish(TOPIC, "order-1").await;

    server.pass(Timestamp::now()).await;
    let report = server.pass(after(60)).await;
    assert_eq!(report, pushes(|p| p.dead = 1));
    let message = server.status(&id).await;
    assert_eq!(message.outcome(), MessageOutcome::DeadLettered);
    let delivery = &message.deliveries[0];
    assert_eq!(delivery.state(), DeliveryState::Dead);
    assert_eq!(delivery.attempts, 2);
    assert!(
        delivery.last_error.contains("database is down"),
        "{}",
        delivery.last_error
    );
    // Dead letters are parked: no more pushes.
    assert_eq!(server.pass(after(3600)).await, PassReport::default());
    assert_eq!(receiver.attempts(), [1, 2]);

    healthy.store(true, Ordering::SeqCst);
    let redriven = server
        .admin()
        .redrive(RedriveRequest {
            subscription: PUSH_SUB.into(),
            message_ids: Vec::new(),
            ..Default::default()
        })
        .await
        .expect("Redrive")
        .into_inner()
        .redriven;
    assert_eq!(redriven, 1);
    let report = server.pass(after(3600)).await;
    assert_eq!(report, pushes(|p| p.acked = 1));
    assert_eq!(
        receiver.attempts(),
        [1, 2, 1],
        "attempts start again after a redrive"
    );
    assert_eq!(
        server.status(&id).await.outcome(),
        MessageOutcome::Delivered
    );
}

#[tokio::test]
async fn a_push_without_an_answer_within_the_ack_deadline_is_retried() {
    // The ack deadline of `push_subscription`: 1 s.
    let (server, receiver) = pushing_to(5, |delivery| {
        Box::pin(async move {
            if delivery.attempt == 1 {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Ok(())
        })
    })
    .await;
    let id = server.publish(TOPIC, "order-1").await;

    let started = Instant::now();
    let report = server.pass(Timestamp::now()).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the push gave up at the ack deadline"
    );
    assert_eq!(report, pushes(|p| p.retried = 1));
    let delivery = server.status(&id).await.deliveries.remove(0);
    assert!(
        delivery.last_error.contains("no answer within 1s"),
        "{}",
        delivery.last_error
    );
    let report = server.pass(after(60)).await;
    assert_eq!(report, pushes(|p| p.acked = 1));
    assert_eq!(receiver.attempts(), [1, 2]);
}

#[tokio::test]
async fn an_unreachable_receiver_counts_failed_attempts() {
    let server = Driven::start().await;
    server
        .create_subscription(push_subscription(PUSH_SUB, &closed_endpoint().await, 5))
        .await;
    let id = server.publish(TOPIC, "order-1").await;

    let report = server.pass(Timestamp::now()).await;
    assert_eq!(report, pushes(|p| p.retried = 1));
    let delivery = server.status(&id).await.deliveries.remove(0);
    assert_eq!(delivery.state(), DeliveryState::Pending);
    assert!(
        delivery.last_error.contains("UNAVAILABLE"),
        "{}",
        delivery.last_error
    );
}
