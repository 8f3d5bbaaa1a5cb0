//! Retention: final messages are deleted after `retention.final_messages` with their history,
//! and their producer keys are free again.

use std::time::Duration;

use courier::proto::{AckStatus, Decision, NackRequest, RejectRequest, ResolveRequest};

use super::{Driven, after};
use crate::harness::*;

#[tokio::test]
async fn retention_deletes_final_messages_and_frees_their_keys() {
    let server = Driven::start_with(|config| {
        config.retention.final_messages = Duration::from_secs(3600);
    })
    .await;
    server.create_subscription(subscription(SUB, TOPIC)).await;

    let delivered = server.publish(TOPIC, "delivered").await;
    let deliveries = server.receive(SUB, 10, Duration::from_secs(1)).await;
    assert_eq!(
        server.ack(SUB, &[deliveries[0].receipt.as_str()]).await,
        [AckStatus::Ok]
    );
    let cancelled = server.prepare(TOPIC, "cancelled").await;
    server.cancel(&cancelled).await.expect("Cancel");
    let prepared = server.prepare(TOPIC, "prepared").await;
    let delivering = server.publish(TOPIC, "delivering").await;
    // A message with a dead letter stays until an operator acts.
    let dead = dead_letter(&server).await;

    // Within the retention period nothing goes.
    assert_eq!(server.pass(after(1800)).await.messages_deleted, 0);
    assert!(server.find(&delivered).await.is_some());

    let report = server.pass(after(3700)).await;
    assert_eq!(report.messages_deleted, 2);
    assert!(
        server.find(&delivered).await.is_none(),
        "delivered and past retention"
    );
    assert!(
        server.find(&cancelled).await.is_none(),
        "cancelled and past retention"
    );
    assert!(
        server.find(&prepared).await.is_some(),
        "PREPARED is never final"
    );
    assert!(
        server.find(&delivering).await.is_some(),
        "an unacked delivery keeps its message"
    );
    assert!(
        server.find(&dead).await.is_some(),
        "a dead letter keeps its message"
    );

    // The keys are free: the same producer key takes other content now.
    for key in ["delivered", "cancelled"] {
        let mut request = publish_request(PRODUCER, TOPIC, key);
        request.payload = b"a new message".to_vec();
        let response = server
            .producer()
            .publish(request)
            .await
            .expect("Publish with a freed key")
            .into_inner();
        assert!(response.created);
    }
}

/// Publishes a message to `parking`, whose one subscription `parked` rejects it: a dead
/// letter, which keeps its message until an operator acts. Answers its id.
async fn dead_letter(server: &Driven) -> String {
    server
        .create_subscription(fast_subscription("parked", "parking", 1))
        .await;
    let dead = server
        .producer()
        .publish(publish_request(PRODUCER, "parking", "dead"))
        .await
        .expect("Publish")
        .into_inner()
        .message_id;
    let parked = server.receive_one("parked", Duration::from_secs(1)).await;
    server
        .consumer()
        .reject(RejectRequest {
            subscription: "parked".into(),
            receipt: parked.receipt,
            reason: "poison".into(),
        })
        .await
        .expect("Reject");
    dead
}

/// How many history events (`message_events` rows) the message `id` has, read straight from
/// the database: once the message is deleted, no RPC shows them.
async fn events_of(server: &Driven, id: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM message_events WHERE message_id = '{id}'");
    server.database().count(&sql).await
}

#[tokio::test]
async fn retention_deletes_the_history_of_the_messages_it_deletes() {
    let server = Driven::start_with(|config| {
        config.retention.final_messages = Duration::from_secs(3600);
    })
    .await;
    server
        .create_subscription(fast_subscription(SUB, TOPIC, 5))
        .await;

    // Delivered on its second attempt: a Nack event.
    let delivered = server.publish(TOPIC, "delivered").await;
    let first = server.receive_one(SUB, Duration::from_secs(1)).await;
    server
        .consumer()
        .nack(NackRequest {
            subscription: SUB.into(),
            receipt: first.receipt,
            delay: Some(duration(Duration::ZERO)),
            reason: String::new(),
        })
        .await
        .expect("Nack");
    let second = server.receive_one(SUB, Duration::from_secs(2)).await;
    assert_eq!(server.ack(SUB, &[&second.receipt]).await, [AckStatus::Ok]);
    // Rolled back by an operator: a Resolve event.
    let resolved = server.prepare(TOPIC, "resolved").await;
    server
        .admin()
        .resolve(ResolveRequest {
            message: by_id(&resolved),
            decision: Decision::Rollback as i32,
        })
        .await
        .expect("Resolve");
    // A dead letter stays, with its Reject event.
    let dead = dead_letter(&server).await;
    for id in [&delivered, &resolved, &dead] {
        assert!(
            events_of(&server, id).await > 0,
            "message {id} has a history"
        );
    }

    assert_eq!(server.pass(after(3700)).await.messages_deleted, 2);
    for id in [&delivered, &resolved] {
        assert!(server.find(id).await.is_none(), "message {id} is deleted");
        assert_eq!(
            events_of(&server, id).await,
            0,
            "no event of the deleted message {id} remains"
        );
    }
    assert!(server.find(&dead).await.is_some());
    assert!(
        events_of(&server, &dead).await > 0,
        "a message that stays keeps its history"
    );
}
