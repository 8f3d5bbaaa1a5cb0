//! Consumer requests refused: Receive, Ack, Nack, ExtendLease and Reject.

use std::time::Duration;

use courier::proto::{
    AckRequest, AckStatus, ExtendLeaseRequest, NackRequest, ReceiveRequest, RejectRequest,
};
use tonic::Code;

use super::negative;
use crate::harness::*;

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
            reason: String::new(),
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
        reason: String::new(),
    };
    assert_invalid_field(consumer.nack(elsewhere).await, "receipt");

    let nack = |delay| NackRequest {
        subscription: SUB.into(),
        receipt: receipt.clone(),
        delay,
        reason: String::new(),
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
    assert_eq!(server.ack(SUB, &[&receipt]).await, [AckStatus::Ok]);
}
