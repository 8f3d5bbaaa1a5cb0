//! Bad input: every malformed request is refused with the documented code (INVALID_ARGUMENT
//! with a field violation naming the field, RESOURCE_EXHAUSTED for limits, NOT_FOUND for
//! unknown names), and the server keeps serving after each.

use std::collections::HashMap;
use std::time::Duration;

use courier::proto::message_ref::Ref;
use courier::proto::{
    AckRequest, CancelRequest, CheckStatusRequest, ConfirmRequest, CreateSubscriptionRequest,
    Decision, ExtendLeaseRequest, GetSubscriptionRequest, ListMessagesRequest, MessageRef,
    NackRequest, PrepareRequest, ProducerKey, ReceiveRequest, RedriveRequest,
    RegisterCheckerRequest, RejectRequest, ResolveRequest, RetryPolicy, Subscription,
};
use tonic::Code;

use crate::harness::*;

fn negative(millis: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: millis / 1000,
        nanos: ((millis % 1000) * 1_000_000) as i32,
    })
}

const DAY: u64 = 24 * 3600;

#[tokio::test]
async fn prepare_refuses_missing_and_malformed_fields() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut producer = server.producer();
    let valid = || prepare_request(PRODUCER, TOPIC, "order-1");

    let cases: Vec<(&str, PrepareRequest)> = vec![
        (
            "producer",
            PrepareRequest {
                producer: String::new(),
                ..valid()
            },
        ),
        (
            "producer",
            PrepareRequest {
                producer: "shop/eu".into(),
                ..valid()
            },
        ),
        (
            "producer",
            PrepareRequest {
                producer: "a".repeat(129),
                ..valid()
            },
        ),
        (
            "topic",
            PrepareRequest {
                topic: String::new(),
                ..valid()
            },
        ),
        (
            "topic",
            PrepareRequest {
                topic: "has space".into(),
                ..valid()
            },
        ),
        (
            "topic",
            PrepareRequest {
                topic: "ordérs".into(),
                ..valid()
            },
        ),
        (
            "key",
            PrepareRequest {
                key: String::new(),
                ..valid()
            },
        ),
        (
            "key",
            PrepareRequest {
                key: "k".repeat(257),
                ..valid()
            },
        ),
        (
            "key",
            PrepareRequest {
                key: "é".repeat(129),
                ..valid()
            },
        ),
        (
            "check_after",
            PrepareRequest {
                check_after: ms(500),
                ..valid()
            },
        ),
        (
            "check_after",
            PrepareRequest {
                check_after: secs(7 * DAY + 1),
                ..valid()
            },
        ),
        (
            "check_after",
            PrepareRequest {
                check_after: negative(-1000),
                ..valid()
            },
        ),
        (
            "deliver_after",
            PrepareRequest {
                deliver_after: secs(7 * DAY + 1),
                ..valid()
            },
        ),
        (
            "deliver_after",
            PrepareRequest {
                deliver_after: negative(-1000),
                ..valid()
            },
        ),
    ];
    for (field, request) in cases {
        assert_invalid_field(producer.prepare(request).await, field);
        server.assert_still_serving().await;
    }

    // The limits themselves are allowed.
    let topic = "t".repeat(128);
    server
        .create_subscription(subscription(SUB.repeat(2).as_str(), &topic))
        .await;
    let at_the_limits = PrepareRequest {
        producer: "p".repeat(128),
        topic,
        key: "é".repeat(128),
        check_after: secs(1),
        deliver_after: secs(7 * DAY),
        ..valid()
    };
    let response = producer
        .prepare(at_the_limits)
        .await
        .expect("names, key and durations at their limits");
    assert!(response.into_inner().created);
}

#[tokio::test]
async fn publish_refuses_missing_and_malformed_fields() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut producer = server.producer();
    let valid = || publish_request(PRODUCER, TOPIC, "order-1");
    let cases = vec![
        (
            "producer",
            courier::proto::PublishRequest {
                producer: String::new(),
                ..valid()
            },
        ),
        (
            "topic",
            courier::proto::PublishRequest {
                topic: "a:b".into(),
                ..valid()
            },
        ),
        (
            "key",
            courier::proto::PublishRequest {
                key: "k".repeat(257),
                ..valid()
            },
        ),
        (
            "deliver_after",
            courier::proto::PublishRequest {
                deliver_after: negative(-5),
                ..valid()
            },
        ),
    ];
    for (field, request) in cases {
        assert_invalid_field(producer.publish(request).await, field);
        server.assert_still_serving().await;
    }
    let listed = server
        .admin()
        .list_messages(ListMessagesRequest::default())
        .await
        .unwrap();
    assert!(
        listed.into_inner().messages.is_empty(),
        "no refused request stored anything"
    );
}

#[tokio::test]
async fn a_payload_over_the_limit_is_resource_exhausted() {
    let server = TestServer::start_with(|config| config.limits.max_payload_bytes = 1024).await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut producer = server.producer();

    let at_limit = PrepareRequest {
        payload: vec![7; 1024],
        ..prepare_request(PRODUCER, TOPIC, "fits")
    };
    producer
        .prepare(at_limit)
        .await
        .expect("a payload of exactly the limit");
    let over = PrepareRequest {
        payload: vec![7; 1025],
        ..prepare_request(PRODUCER, TOPIC, "too-big")
    };
    assert_code(producer.prepare(over).await, Code::ResourceExhausted);
    server.assert_still_serving().await;
    let over = courier::proto::PublishRequest {
        payload: vec![7; 1025],
        ..publish_request(PRODUCER, TOPIC, "too-big")
    };
    assert_code(producer.publish(over).await, Code::ResourceExhausted);
    server.assert_still_serving().await;
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_resource_exhausted() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut producer = server.producer();
    let limits = server.config.limits.clone();
    let numbered = |count: usize| -> HashMap<String, String> {
        (0..count)
            .map(|n| (format!("h{n}"), "v".to_string()))
            .collect()
    };

    let at_limit = PrepareRequest {
        headers: numbered(limits.max_headers),
        ..prepare_request(PRODUCER, TOPIC, "many")
    };
    producer
        .prepare(at_limit)
        .await
        .expect("exactly max_headers headers");
    let too_many = PrepareRequest {
        headers: numbered(limits.max_headers + 1),
        ..prepare_request(PRODUCER, TOPIC, "too-many")
    };
    assert_code(producer.prepare(too_many).await, Code::ResourceExhausted);
    server.assert_still_serving().await;

    let large = HashMap::from([("big".to_string(), "x".repeat(limits.max_header_bytes))]);
    let too_large = PrepareRequest {
        headers: large,
        ..prepare_request(PRODUCER, TOPIC, "too-large")
    };
    assert_code(producer.prepare(too_large).await, Code::ResourceExhausted);
    server.assert_still_serving().await;
    let publish = courier::proto::PublishRequest {
        headers: numbered(limits.max_headers + 1),
        ..publish_request(PRODUCER, TOPIC, "too-many")
    };
    assert_code(producer.publish(publish).await, Code::ResourceExhausted);
    server.assert_still_serving().await;
}

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
    assert_eq!(
        server.status(&id).await.outcome(),
        courier::proto::MessageOutcome::Prepared
    );
}

#[tokio::test]
async fn consumer_requests_are_validated() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    server.publish(TOPIC, "order-1").await;
    let receipt = server.receive_one(SUB, Duration::ZERO).await.receipt;
    let mut consumer = server.consumer();
    let receive = |subscription: &str, max_messages, wait| ReceiveRequest {
        max_bytes: 0,
        subscription: subscription.into(),
        max_messages,
        wait,
    };

    assert_invalid_field(consumer.receive(receive("", 1, None)).await, "subscription");
    assert_invalid_field(
        consumer.receive(receive("bad/name", 1, None)).await,
        "subscription",
    );
    assert_invalid_field(
        consumer.receive(receive(SUB, 1001, None)).await,
        "max_messages",
    );
    assert_invalid_field(consumer.receive(receive(SUB, 1, secs(31))).await, "wait");
    assert_invalid_field(
        consumer.receive(receive(SUB, 1, negative(-1000))).await,
        "wait",
    );
    assert_code(
        consumer.receive(receive("nobody", 1, None)).await,
        Code::NotFound,
    );
    server.assert_still_serving().await;

    let ack = |receipts: Vec<String>| AckRequest {
        subscription: SUB.into(),
        receipts,
    };
    for bad in ["", "garbage", "not-a-uuid:1:billing"] {
        assert_invalid_field(consumer.ack(ack(vec![bad.into()])).await, "receipts");
        let nack = NackRequest {
            subscription: SUB.into(),
            receipt: bad.into(),
            delay: None,
        };
        assert_invalid_field(consumer.nack(nack).await, "receipt");
        let extend = ExtendLeaseRequest {
            subscription: SUB.into(),
            receipt: bad.into(),
            extension: secs(5),
        };
        assert_invalid_field(consumer.extend_lease(extend).await, "receipt");
        let reject = RejectRequest {
            subscription: SUB.into(),
            receipt: bad.into(),
            reason: String::new(),
        };
        assert_invalid_field(consumer.reject(reject).await, "receipt");
        server.assert_still_serving().await;
    }
    assert_invalid_field(
        consumer.ack(ack(vec![receipt.clone(); 1001])).await,
        "receipts",
    );
    assert_invalid_field(consumer.ack(ack(vec![])).await, "receipts");
    // A receipt names its subscription: it is refused under another one.
    server
        .create_subscription(subscription("shipping", TOPIC))
        .await;
    let elsewhere = AckRequest {
        subscription: "shipping".into(),
        receipts: vec![receipt.clone()],
    };
    assert_invalid_field(consumer.ack(elsewhere).await, "receipts");
    let elsewhere = NackRequest {
        subscription: "shipping".into(),
        receipt: receipt.clone(),
        delay: None,
    };
    assert_invalid_field(consumer.nack(elsewhere).await, "receipt");

    let nack = |delay| NackRequest {
        subscription: SUB.into(),
        receipt: receipt.clone(),
        delay,
    };
    assert_invalid_field(consumer.nack(nack(secs(12 * 3600 + 1))).await, "delay");
    assert_invalid_field(consumer.nack(nack(negative(-1000))).await, "delay");
    let extend = |extension| ExtendLeaseRequest {
        subscription: SUB.into(),
        receipt: receipt.clone(),
        extension,
    };
    assert_invalid_field(consumer.extend_lease(extend(ms(500))).await, "extension");
    assert_invalid_field(
        consumer.extend_lease(extend(secs(12 * 3600 + 1))).await,
        "extension",
    );
    let reject = RejectRequest {
        subscription: SUB.into(),
        receipt: receipt.clone(),
        reason: "r".repeat(1025),
    };
    assert_invalid_field(consumer.reject(reject).await, "reason");
    server.assert_still_serving().await;

    // None of the refused calls touched the lease.
    assert_eq!(
        server.ack(SUB, &[&receipt]).await,
        [courier::proto::AckStatus::Ok]
    );
}

#[tokio::test]
async fn subscriptions_are_validated() {
    let server = TestServer::start().await;
    let mut admin = server.admin();
    let policy = |max_attempts, initial_backoff, max_backoff, multiplier| {
        Some(RetryPolicy {
            max_attempts,
            initial_backoff,
            max_backoff,
            multiplier,
        })
    };
    let valid = || subscription(SUB, TOPIC);
    let cases: Vec<(&str, Subscription)> = vec![
        (
            "name",
            Subscription {
                name: String::new(),
                ..valid()
            },
        ),
        (
            "name",
            Subscription {
                name: "bad/name".into(),
                ..valid()
            },
        ),
        (
            "name",
            Subscription {
                name: "n".repeat(129),
                ..valid()
            },
        ),
        (
            "topic",
            Subscription {
                topic: String::new(),
                ..valid()
            },
        ),
        (
            "topic",
            Subscription {
                topic: "bad topic".into(),
                ..valid()
            },
        ),
        (
            "ack_deadline",
            Subscription {
                ack_deadline: ms(999),
                ..valid()
            },
        ),
        (
            "ack_deadline",
            Subscription {
                ack_deadline: secs(12 * 3600 + 1),
                ..valid()
            },
        ),
        (
            "max_attempts",
            Subscription {
                retry_policy: policy(1001, None, None, 0.0),
                ..valid()
            },
        ),
        (
            "initial_backoff",
            Subscription {
                retry_policy: policy(0, secs(DAY + 1), None, 0.0),
                ..valid()
            },
        ),
        (
            "initial_backoff",
            Subscription {
                retry_policy: policy(0, negative(-1000), None, 0.0),
                ..valid()
            },
        ),
        (
            "max_backoff",
            Subscription {
                retry_policy: policy(0, secs(10), secs(5), 0.0),
                ..valid()
            },
        ),
        (
            "max_backoff",
            Subscription {
                retry_policy: policy(0, None, secs(7 * DAY + 1), 0.0),
                ..valid()
            },
        ),
        (
            "multiplier",
            Subscription {
                retry_policy: policy(0, None, None, 0.5),
                ..valid()
            },
        ),
        (
            "multiplier",
            Subscription {
                retry_policy: policy(0, None, None, 10.5),
                ..valid()
            },
        ),
        (
            "push_endpoint",
            Subscription {
                push_endpoint: "not a url".into(),
                ..valid()
            },
        ),
        (
            "push_endpoint",
            Subscription {
                push_endpoint: "ftp://127.0.0.1:21".into(),
                ..valid()
            },
        ),
    ];
    for (field, subscription) in cases {
        let request = CreateSubscriptionRequest {
            subscription: Some(subscription),
        };
        assert_invalid_field(admin.create_subscription(request).await, field);
        server.assert_still_serving().await;
    }
    let missing = CreateSubscriptionRequest { subscription: None };
    assert_invalid_field(admin.create_subscription(missing).await, "subscription");

    let listed = server
        .admin()
        .list_subscriptions(courier::proto::ListSubscriptionsRequest::default())
        .await;
    assert!(
        listed.unwrap().into_inner().subscriptions.is_empty(),
        "nothing refused was created"
    );

    // Updates go through the same checks.
    server.create_subscription(valid()).await;
    let update = courier::proto::UpdateSubscriptionRequest {
        subscription: Some(Subscription {
            ack_deadline: ms(10),
            ..valid()
        }),
    };
    assert_invalid_field(admin.update_subscription(update).await, "ack_deadline");
}

#[tokio::test]
async fn admin_requests_are_validated() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut admin = server.admin();

    assert_invalid_field(
        admin
            .get_subscription(GetSubscriptionRequest {
                name: String::new(),
            })
            .await,
        "name",
    );
    assert_invalid_field(
        admin
            .get_subscription(GetSubscriptionRequest { name: "a b".into() })
            .await,
        "name",
    );
    assert_code(
        admin
            .get_subscription(GetSubscriptionRequest {
                name: "nobody".into(),
            })
            .await,
        Code::NotFound,
    );
    let redrive = RedriveRequest {
        subscription: SUB.into(),
        message_ids: vec!["not-a-uuid".into()],
        ..Default::default()
    };
    assert_invalid_field(admin.redrive(redrive).await, "message_ids");
    let redrive = RedriveRequest {
        subscription: String::new(),
        message_ids: vec![],
        ..Default::default()
    };
    assert_invalid_field(admin.redrive(redrive).await, "subscription");
    let page = ListMessagesRequest {
        page_size: 1001,
        ..Default::default()
    };
    assert_invalid_field(admin.list_messages(page).await, "page_size");
    let filter = ListMessagesRequest {
        topic: "bad topic".into(),
        ..Default::default()
    };
    assert_invalid_field(admin.list_messages(filter).await, "topic");
    server.assert_still_serving().await;
}

#[tokio::test]
async fn register_checker_is_validated() {
    let server = TestServer::start().await;
    let mut producer = server.producer();
    let valid = || RegisterCheckerRequest {
        producer: PRODUCER.into(),
        endpoint: "http://127.0.0.1:7001".into(),
        timeout: None,
    };
    let cases = vec![
        (
            "producer",
            RegisterCheckerRequest {
                producer: String::new(),
                ..valid()
            },
        ),
        (
            "producer",
            RegisterCheckerRequest {
                producer: "a/b".into(),
                ..valid()
            },
        ),
        (
            "endpoint",
            RegisterCheckerRequest {
                endpoint: String::new(),
                ..valid()
            },
        ),
        (
            "endpoint",
            RegisterCheckerRequest {
                endpoint: "not a url".into(),
                ..valid()
            },
        ),
        (
            "endpoint",
            RegisterCheckerRequest {
                endpoint: "ftp://127.0.0.1:21".into(),
                ..valid()
            },
        ),
        (
            "timeout",
            RegisterCheckerRequest {
                timeout: ms(5),
                ..valid()
            },
        ),
        (
            "timeout",
            RegisterCheckerRequest {
                timeout: secs(61),
                ..valid()
            },
        ),
    ];
    for (field, request) in cases {
        assert_invalid_field(producer.register_checker(request).await, field);
        server.assert_still_serving().await;
    }
}
