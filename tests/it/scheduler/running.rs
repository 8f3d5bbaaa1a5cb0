//! The background loops of a whole server: they wake and act by themselves, without a test
//! driving them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use courier::proto::{Decision, DeliveryState, MessageOutcome, MessageState, Subscription};
use tonic::Status;

use super::fakes::{FakeChecker, FakeReceiver, always};
use super::{PUSH_SUB, push_subscription};
use crate::harness::*;

#[tokio::test]
async fn the_running_server_checks_back_by_itself() {
    let server = TestServer::start_with(|config| {
        config.checks.first_after = Duration::from_millis(100);
        config.checks.initial_backoff = Duration::from_millis(20);
        config.checks.max_backoff = Duration::from_millis(40);
        config.checks.max_attempts = 3;
    })
    .await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let (_, commit_url) = FakeChecker::start(always(Decision::Commit)).await;
    server.register_checker(&commit_url, None).await;
    // The check loop plans to look again in a minute (at most its idle ceiling, 30 s) ...
    let mut later = prepare_request(PRODUCER, TOPIC, "later");
    later.check_after = secs(60);
    server.producer().prepare(later).await.expect("Prepare");
    // ... and a Prepare whose check is due sooner wakes it.
    let id = server.prepare(TOPIC, "order-1").await;
    let delivery = server.receive_one(SUB, Duration::from_secs(5)).await;
    assert_eq!(delivery.message_id, id);
    assert_eq!(server.status(&id).await.state(), MessageState::Confirmed);

    let (unknown, unknown_url) = FakeChecker::start(always(Decision::Unknown)).await;
    server.register_checker(&unknown_url, None).await;
    let id = server.prepare(TOPIC, "order-2").await;
    eventually(
        Duration::from_secs(5),
        "the message is unresolved",
        || async { (server.status(&id).await.state() == MessageState::Unresolved).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        unknown.calls().len(),
        3,
        "exactly checks.max_attempts checks"
    );
}

#[tokio::test]
async fn the_running_server_pushes_by_itself() {
    let server = TestServer::start().await;
    let (receiver, url) = FakeReceiver::start(|delivery| {
        Box::pin(async move {
            if delivery.attempt < 3 {
                Err(Status::unavailable("not yet"))
            } else {
                Ok(())
            }
        })
    })
    .await;
    server
        .create_subscription(push_subscription(PUSH_SUB, &url, 5))
        .await;
    let id = server.publish(TOPIC, "order-1").await;
    eventually(
        Duration::from_secs(5),
        "the push is acknowledged",
        || async {
            (server.status(&id).await.outcome() == MessageOutcome::Delivered).then_some(())
        },
    )
    .await;
    assert_eq!(receiver.attempts(), [1, 2, 3]);
}

#[tokio::test]
async fn a_slow_receiver_does_not_delay_another_subscription() {
    let server = TestServer::start_with(|config| config.push.per_subscription = 2).await;
    let (slow, slow_url) = FakeReceiver::start(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Ok(())
        })
    })
    .await;
    let (fast, fast_url) = FakeReceiver::start(|_| Box::pin(async { Ok(()) })).await;
    server
        .create_subscription(Subscription {
            ack_deadline: secs(30),
            ..push_subscription("slow", &slow_url, 5)
        })
        .await;
    server
        .create_subscription(push_subscription("fast", &fast_url, 5))
        .await;

    let mut ids = Vec::new();
    for key in ["a", "b", "c", "d", "e"] {
        ids.push(server.publish(TOPIC, key).await);
    }
    eventually(
        Duration::from_secs(3),
        "the fast subscription has every delivery",
        || async {
            let acked = server
                .deliveries("fast")
                .await
                .iter()
                .filter(|d| d.state() == DeliveryState::Acked)
                .count();
            (acked == ids.len()).then_some(())
        },
    )
    .await;
    assert_eq!(fast.seen().len(), ids.len());
    eventually(
        Duration::from_secs(1),
        "the slow receiver holds two calls",
        || async { (slow.in_flight.load(Ordering::SeqCst) == 2).then_some(()) },
    )
    .await;
    assert_eq!(
        slow.answered.load(Ordering::SeqCst),
        0,
        "the slow receiver is still busy"
    );
    assert_eq!(
        slow.seen().len(),
        2,
        "push.per_subscription bounds the calls in flight to one subscription"
    );
    assert_eq!(slow.most_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_running_server_deletes_final_messages_after_retention() {
    let server = TestServer::start_with(|config| {
        config.retention.final_messages = Duration::from_millis(300);
    })
    .await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let delivered = server.publish(TOPIC, "delivered").await;
    let delivery = server.receive_one(SUB, Duration::from_secs(1)).await;
    server.ack(SUB, &[delivery.receipt.as_str()]).await;
    let cancelled = server.prepare(TOPIC, "cancelled").await;
    server.cancel(&cancelled).await.expect("Cancel");
    for id in [&delivered, &cancelled] {
        eventually(
            Duration::from_secs(3),
            "the final message is deleted",
            || async { server.find(id).await.is_none().then_some(()) },
        )
        .await;
    }
    let mut request = publish_request(PRODUCER, TOPIC, "delivered");
    request.payload = b"other content".to_vec();
    let response = server
        .producer()
        .publish(request)
        .await
        .expect("Publish")
        .into_inner();
    assert!(response.created, "the producer key was freed");
}
