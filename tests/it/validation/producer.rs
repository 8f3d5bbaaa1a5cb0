//! Producer requests refused: Prepare and Publish fields, payload and header limits, and
//! RegisterChecker.

use std::collections::HashMap;

use courier::proto::{ListMessagesRequest, PrepareRequest, PublishRequest, RegisterCheckerRequest};
use tonic::Code;

use super::{DAY, negative};
use crate::harness::*;

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
            PublishRequest {
                producer: String::new(),
                ..valid()
            },
        ),
        (
            "topic",
            PublishRequest {
                topic: "a:b".into(),
                ..valid()
            },
        ),
        (
            "key",
            PublishRequest {
                key: "k".repeat(257),
                ..valid()
            },
        ),
        (
            "deliver_after",
            PublishRequest {
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
    let over = PublishRequest {
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
    let publish = PublishRequest {
        headers: numbered(limits.max_headers + 1),
        ..publish_request(PRODUCER, TOPIC, "too-many")
    };
    assert_code(producer.publish(publish).await, Code::ResourceExhausted);
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
