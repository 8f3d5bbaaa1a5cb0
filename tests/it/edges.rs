//! Errors at the edges, found by trying bad input: bytes that are not the request they claim
//! to be, requests over the decoding limit, text the store cannot keep, malformed durations,
//! and messages that must read as Courier's words, never Rust's debug form. Every case runs on
//! the backend the suite runs on (`COURIER_TEST_BACKEND`), so both answer alike.

use std::collections::HashMap;
use std::time::Duration;

use courier::proto::{
    AckRequest, CancelRequest, CheckStatusRequest, ConfirmRequest, CreateSubscriptionRequest,
    ExtendLeaseRequest, GetSubscriptionRequest, NackRequest, PrepareRequest, PublishRequest,
    ReceiveRequest, RegisterCheckerRequest, RejectRequest, ResolveRequest, RetryPolicy,
    Subscription, UpdateSubscriptionRequest,
};
use prost::Message as _;
use prost::bytes::{Buf, BufMut};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_types::StatusExt;

use crate::harness::*;

/// Sends `bytes` as the request body of `method` ("/courier.v1.Producer/Confirm"), as a client
/// with a broken encoder would.
async fn call_raw(api: &Api, method: &'static str, bytes: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(api.channel());
    grpc.ready().await.expect("the channel is ready");
    let path = http::uri::PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(bytes), path, RawCodec)
        .await
        .expect_err("raw bytes are refused")
}

/// Sends `body` as it is, gRPC framing included, and returns the status of the answer.
async fn call_framed(api: &Api, method: &str, body: Vec<u8>) -> tonic::Status {
    use tower_service::Service as _;
    let mut channel = api.channel();
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .expect("the channel is ready");
    let request = http::Request::post(method)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            prost::bytes::Bytes::from(body),
        )))
        .expect("a request");
    let answer = channel.call(request).await.expect("an answer");
    tonic::Status::from_header_map(answer.headers()).expect("a trailers-only answer")
}

/// Passes bytes through unchanged, both ways.
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

/// Fragments of Rust's debug form; none may reach a client.
const DEBUG_FORMS: [&str; 8] = [
    "(\"",
    "r#",
    "Name(",
    "Some(",
    "MessageKey(",
    "MessageId(",
    "{ ",
    "Error {",
];

#[track_caller]
fn assert_plain_words(status: &tonic::Status) {
    for fragment in DEBUG_FORMS {
        assert!(
            !status.message().contains(fragment),
            "{fragment:?} in {:?}",
            status.message()
        );
    }
}

#[tokio::test]
async fn undecodable_requests_are_invalid_arguments_in_plain_words() {
    let server = TestServer::start().await;

    // message → producer_key → key holds the byte 0xFF: not UTF-8.
    let bad_utf8 = vec![0x0A, 0x05, 0x12, 0x03, 0x12, 0x01, 0xFF];
    let status = call_raw(&server, "/courier.v1.Producer/Confirm", bad_utf8).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "the request is not a valid courier.v1.ConfirmRequest: a string field is not valid UTF-8"
    );

    let prepare = prepare_request(PRODUCER, TOPIC, "order-1").encode_to_vec();
    let truncated = prepare[..prepare.len() - 3].to_vec();
    let status = call_raw(&server, "/courier.v1.Producer/Prepare", truncated).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "the request is not a valid courier.v1.PrepareRequest: it ends in the middle of a field \
         (truncated?)"
    );

    // A frame that declares 100 bytes and carries 10.
    let mut cut_short = vec![0, 0, 0, 0, 100];
    cut_short.extend_from_slice(&prepare[..10]);
    let status = call_framed(&server, "/courier.v1.Producer/Prepare", cut_short).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "the request ends before the length its gRPC frame declares"
    );

    for method in [
        "/courier.v1.Producer/Publish",
        "/courier.v1.Consumer/Ack",
        "/courier.v1.Admin/Resolve",
    ] {
        let status = call_raw(&server, method, vec![0xFF; 16]).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{method}: {status:?}");
        assert!(
            status
                .message()
                .starts_with("the request is not a valid courier.v1."),
            "{method}: {:?}",
            status.message()
        );
        assert_plain_words(&status);
    }
    server.assert_still_serving().await;
}

#[tokio::test]
async fn a_request_over_the_decoding_limit_names_the_limit() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;

    let mut request = prepare_request(PRODUCER, TOPIC, "huge");
    request.payload = vec![7; 5 * 1024 * 1024];
    let status = assert_code(
        server.producer().prepare(request).await,
        Code::ResourceExhausted,
    );
    assert!(
        status.message().starts_with("request is 524")
            && status
                .message()
                .contains("limits.max_payload_bytes allows 1048576 bytes"),
        "{:?}",
        status.message()
    );
    let details = status.get_error_details();
    let quota = details.quota_failure().expect("a QuotaFailure detail");
    assert_eq!(quota.violations[0].subject, "limits.max_payload_bytes");

    // Consumer requests carry no payload; their fixed limit is named the same way.
    let ack = AckRequest {
        subscription: SUB.into(),
        receipts: vec!["x".repeat(1024); 5 * 1024],
    };
    let status = assert_code(server.consumer().ack(ack).await, Code::ResourceExhausted);
    assert!(
        status
            .message()
            .contains("this server takes at most 4194304 bytes"),
        "{:?}",
        status.message()
    );
    server.assert_still_serving().await;
}

#[tokio::test]
async fn text_the_store_cannot_keep_is_refused_on_every_backend() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut producer = server.producer();

    let prepare = prepare_request(PRODUCER, TOPIC, "order\0-1");
    let status = assert_invalid_field(producer.prepare(prepare).await, "key");
    assert!(
        status.message().contains("U+0000"),
        "{:?}",
        status.message()
    );
    let publish = publish_request(PRODUCER, TOPIC, "\0");
    assert_invalid_field(producer.publish(publish).await, "key");
    let confirm = ConfirmRequest {
        message: by_key(PRODUCER, "a\0b"),
    };
    assert_invalid_field(producer.confirm(confirm).await, "message.producer_key.key");

    server.publish(TOPIC, "order-2").await;
    let delivery = server.receive_one(SUB, Duration::from_secs(5)).await;
    let reject = RejectRequest {
        subscription: SUB.into(),
        receipt: delivery.receipt.clone(),
        reason: "bad\0payload".into(),
    };
    assert_invalid_field(server.consumer().reject(reject).await, "reason");

    // Headers are kept as JSON, which escapes U+0000: they travel intact on both backends.
    let mut with_nul = publish_request(PRODUCER, TOPIC, "order-3");
    with_nul.headers = HashMap::from([("trace\0id".to_owned(), "a\0b".to_owned())]);
    producer.publish(with_nul.clone()).await.expect("Publish");
    let delivery = server.receive_one(SUB, Duration::from_secs(5)).await;
    assert_eq!(delivery.key, "order-3");
    assert_eq!(delivery.headers, with_nul.headers);
    server.assert_still_serving().await;
}

#[tokio::test]
async fn malformed_durations_are_refused_in_every_field() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let (mut producer, mut consumer, mut admin) =
        (server.producer(), server.consumer(), server.admin());
    let receipt = format!("{}:1:{SUB}", uuid_v7());

    let malformed = [
        prost_types::Duration {
            seconds: 0,
            nanos: 1_000_000_000,
        },
        prost_types::Duration {
            seconds: 2,
            nanos: -1,
        },
        prost_types::Duration {
            seconds: -1,
            nanos: 5,
        },
    ];
    for bad in malformed.map(Some) {
        let prepare = PrepareRequest {
            check_after: bad,
            ..prepare_request(PRODUCER, TOPIC, "k")
        };
        assert_invalid_field(producer.prepare(prepare).await, "check_after");
        let prepare = PrepareRequest {
            deliver_after: bad,
            ..prepare_request(PRODUCER, TOPIC, "k")
        };
        assert_invalid_field(producer.prepare(prepare).await, "deliver_after");
        let mut publish = publish_request(PRODUCER, TOPIC, "k");
        publish.deliver_after = bad;
        assert_invalid_field(producer.publish(publish).await, "deliver_after");
        let register = RegisterCheckerRequest {
            producer: PRODUCER.into(),
            endpoint: "http://127.0.0.1:7001".into(),
            timeout: bad,
        };
        assert_invalid_field(producer.register_checker(register).await, "timeout");

        let receive = ReceiveRequest {
            max_bytes: 0,
            subscription: SUB.into(),
            max_messages: 1,
            wait: bad,
        };
        assert_invalid_field(consumer.receive(receive).await, "wait");
        let nack = NackRequest {
            subscription: SUB.into(),
            receipt: receipt.clone(),
            delay: bad,
            reason: String::new(),
        };
        assert_invalid_field(consumer.nack(nack).await, "delay");
        let extend = ExtendLeaseRequest {
            subscription: SUB.into(),
            receipt: receipt.clone(),
            extension: bad,
        };
        assert_invalid_field(consumer.extend_lease(extend).await, "extension");

        for (field, spec) in [
            (
                "ack_deadline",
                Subscription {
                    ack_deadline: bad,
                    ..subscription("other", TOPIC)
                },
            ),
            (
                "initial_backoff",
                Subscription {
                    retry_policy: Some(RetryPolicy {
                        initial_backoff: bad,
                        ..Default::default()
                    }),
                    ..subscription("other", TOPIC)
                },
            ),
            (
                "max_backoff",
                Subscription {
                    retry_policy: Some(RetryPolicy {
                        max_backoff: bad,
                        ..Default::default()
                    }),
                    ..subscription("other", TOPIC)
                },
            ),
        ] {
            let create = CreateSubscriptionRequest {
                subscription: Some(spec.clone()),
            };
            assert_invalid_field(admin.create_subscription(create).await, field);
            let update = UpdateSubscriptionRequest {
                subscription: Some(spec),
            };
            assert_invalid_field(admin.update_subscription(update).await, field);
        }
    }
    server.assert_still_serving().await;
}

fn uuid_v7() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A regression net for Debug output: every answer below is an error a client can provoke,
/// and none may carry Rust's debug form.
#[tokio::test]
async fn error_messages_never_show_rusts_debug_form() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let (mut producer, mut consumer, mut admin) =
        (server.producer(), server.consumer(), server.admin());
    server.publish(TOPIC, "taken").await;
    let unknown_receipt = format!("{}:1:{SUB}", uuid_v7());

    let mut answers = vec![
        producer
            .confirm(ConfirmRequest {
                message: by_key(PRODUCER, "no such key"),
            })
            .await
            .map(|_| ()),
        producer
            .cancel(CancelRequest {
                message: by_id(&uuid_v7()),
            })
            .await
            .map(|_| ()),
        producer
            .check_status(CheckStatusRequest {
                message: by_key(PRODUCER, "quote\"and\nnewline"),
            })
            .await
            .map(|_| ()),
        producer
            .publish(PublishRequest {
                payload: b"other".to_vec(),
                ..publish_request(PRODUCER, TOPIC, "taken")
            })
            .await
            .map(|_| ()),
        producer
            .prepare(prepare_request("shop/eu", "bad topic", ""))
            .await
            .map(|_| ()),
        consumer
            .nack(NackRequest {
                subscription: SUB.into(),
                receipt: unknown_receipt.clone(),
                delay: None,
                reason: String::new(),
            })
            .await
            .map(|_| ()),
        consumer
            .receive(ReceiveRequest {
                subscription: "nobody".into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        admin
            .get_subscription(GetSubscriptionRequest {
                name: "nobody".into(),
            })
            .await
            .map(|_| ()),
        admin
            .resolve(ResolveRequest {
                message: by_key(PRODUCER, "missing"),
                decision: courier::proto::Decision::Commit.into(),
            })
            .await
            .map(|_| ()),
    ];
    answers.push(
        admin
            .create_subscription(CreateSubscriptionRequest {
                subscription: Some(Subscription {
                    ack_deadline: Some(prost_types::Duration {
                        seconds: 0,
                        nanos: 1_500,
                    }),
                    ..subscription("fine", TOPIC)
                }),
            })
            .await
            .map(|_| ()),
    );
    for answer in answers {
        let status = answer.expect_err("every call above is refused");
        assert_plain_words(&status);
    }

    // The texts that used to show Debug, in full.
    let status = assert_code(
        producer
            .confirm(ConfirmRequest {
                message: by_key(PRODUCER, "order 7"),
            })
            .await,
        Code::NotFound,
    );
    assert_eq!(
        status.message(),
        "message with producer shop and key \"order 7\" not found"
    );
    let status = assert_invalid_field(
        producer
            .prepare(prepare_request("shop/eu", TOPIC, "k"))
            .await,
        "producer",
    );
    assert!(
        status.message().contains("contains '/'"),
        "{:?}",
        status.message()
    );
}
