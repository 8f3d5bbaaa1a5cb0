//! Message references (by id, or by producer and key) and Resolve's decision, refused when
//! malformed by every call that takes them.

use courier::proto::message_ref::Ref;
use courier::proto::{
    CancelRequest, CheckStatusRequest, ConfirmRequest, Decision, MessageOutcome, MessageRef,
    ProducerKey, ResolveRequest,
};

use crate::harness::*;

#[tokio::test]
async fn message_references_must_be_well_formed() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    server.prepare(TOPIC, "order-1").await;
    let mut producer = server.producer();
    let mut admin = server.admin();
    let malformed: Vec<(&str, Option<MessageRef>)> = vec![
        ("message", None),
        ("message", Some(MessageRef { r#ref: None })),
        ("message_id", by_id("not-a-uuid")),
        ("message_id", by_id("")),
        ("producer", by_key("", "order-1")),
        ("producer", by_key("a/b", "order-1")),
        ("key", by_key(PRODUCER, "")),
        (
            "key",
            Some(MessageRef {
                r#ref: Some(Ref::ProducerKey(ProducerKey {
                    producer: PRODUCER.into(),
                    key: "k".repeat(257),
                })),
            }),
        ),
    ];
    for (field, message) in malformed {
        assert_invalid_field(
            producer
                .confirm(ConfirmRequest {
                    message: message.clone(),
                })
                .await,
            field,
        );
        assert_invalid_field(
            producer
                .cancel(CancelRequest {
                    message: message.clone(),
                })
                .await,
            field,
        );
        assert_invalid_field(
            producer
                .check_status(CheckStatusRequest {
                    message: message.clone(),
                })
                .await,
            field,
        );
        let resolve = ResolveRequest {
            message,
            decision: Decision::Commit as i32,
        };
        assert_invalid_field(admin.resolve(resolve).await, field);
        server.assert_still_serving().await;
    }
    assert_eq!(
        server
            .status(&server.prepare(TOPIC, "order-2").await)
            .await
            .key,
        "order-2"
    );
}

#[tokio::test]
async fn resolve_needs_commit_or_rollback() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.prepare(TOPIC, "order-1").await;
    let mut admin = server.admin();
    for decision in [Decision::Unspecified as i32, Decision::Unknown as i32, 42] {
        let result = admin
            .resolve(ResolveRequest {
                message: by_id(&id),
                decision,
            })
            .await;
        assert_invalid_field(result, "decision");
        server.assert_still_serving().await;
    }
    assert_eq!(server.status(&id).await.outcome(), MessageOutcome::Prepared);
}
