//! Retention: final messages are deleted after `retention.final_messages`, and their producer
//! keys are free again.

use std::time::Duration;

use courier::proto::{AckStatus, RejectRequest};

use super::{Driven, after};
use crate::harness::*;

#[tokio::test]
async fn retention_deletes_final_messages_and_frees_their_keys() {
    let server = Driven::start_with(|config| {
        config.retention.final_messages = Duration::from_secs(3600);
    })
    .await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    server
        .create_subscription(fast_subscription("parked", "parking", 1))
        .await;

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
    let dead = server
        .producer()
        .publish(publish_request(PRODUCER, "parking", "dead"))
        .await
        .expect("Publish")
        .into_inner()
        .message_id;
    let parked = server.receive("parked", 10, Duration::from_secs(1)).await;
    server
        .consumer()
        .reject(RejectRequest {
            subscription: "parked".into(),
            receipt: parked[0].receipt.clone(),
            reason: "poison".into(),
        })
        .await
        .expect("Reject");

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
