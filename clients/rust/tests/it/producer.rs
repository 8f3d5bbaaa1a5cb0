//! The two-phase send without a database: Confirm after Ok, Cancel after Err or a panic.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use courier_client::{Confirmation, MessageState, OutgoingMessage, SendError};
use futures::FutureExt as _;

use crate::harness::*;

#[tokio::test]
async fn a_send_whose_local_work_succeeds_is_confirmed_and_delivered() {
    let courier = Courier::start().await;
    courier.subscribe(SUB, Duration::from_secs(30), 5).await;
    let producer = courier.producer();

    let message = OutgoingMessage::new(TOPIC, "order-1").payload(b"paid".to_vec());
    let sent = producer
        .send(message, async |message_id| {
            assert!(
                !message_id.is_empty(),
                "the id is at hand in the local work"
            );
            Ok::<_, std::io::Error>(message_id.len())
        })
        .await
        .expect("sent");
    assert!(matches!(sent.confirmation, Confirmation::Confirmed));
    assert_eq!(sent.value, sent.message_id.len());
    assert_eq!(
        courier.status(&sent.message_id).await.state(),
        MessageState::Confirmed
    );

    let deliveries = courier.receive(SUB, Duration::from_secs(5)).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].message_id, sent.message_id);
    assert_eq!(deliveries[0].payload, b"paid");
}

#[tokio::test]
async fn a_send_whose_local_work_fails_is_cancelled() {
    let courier = Courier::start().await;
    courier.subscribe(SUB, Duration::from_secs(30), 5).await;
    let producer = courier.producer();
    let mut seen_id = String::new();

    let error = producer
        .send(OutgoingMessage::new(TOPIC, "order-2"), async |message_id| {
            seen_id = message_id;
            Err::<(), _>(std::io::Error::other("out of stock"))
        })
        .await
        .expect_err("the local work failed");
    let SendError::Local(local) = error else {
        panic!("expected the local error, got {error:?}");
    };
    assert_eq!(local.to_string(), "out of stock");
    assert_eq!(
        courier.status(&seen_id).await.state(),
        MessageState::Cancelled
    );
    assert!(courier.receive(SUB, Duration::ZERO).await.is_empty());
}

#[tokio::test]
async fn a_panic_in_the_local_work_cancels_and_goes_on() {
    let courier = Courier::start().await;
    courier.subscribe(SUB, Duration::from_secs(30), 5).await;
    let producer = courier.producer();
    let seen_id = Arc::new(std::sync::Mutex::new(String::new()));

    let seen = seen_id.clone();
    let outcome = AssertUnwindSafe(producer.send(
        OutgoingMessage::new(TOPIC, "order-3"),
        async move |message_id| -> Result<(), std::io::Error> {
            *seen.lock().unwrap() = message_id;
            panic!("bug in the local work");
        },
    ))
    .catch_unwind()
    .await;
    let panic = outcome.expect_err("the panic goes on after the Cancel");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"bug in the local work"));
    let message_id = seen_id.lock().unwrap().clone();
    assert_eq!(
        courier.status(&message_id).await.state(),
        MessageState::Cancelled
    );
}

#[tokio::test]
async fn a_key_sent_before_does_not_run_the_local_work_again() {
    let courier = Courier::start().await;
    courier.subscribe(SUB, Duration::from_secs(30), 5).await;
    let producer = courier.producer();
    let first = producer
        .send(OutgoingMessage::new(TOPIC, "order-4"), async |_| {
            Ok::<_, std::io::Error>(())
        })
        .await
        .expect("sent");

    let ran = AtomicBool::new(false);
    let error = producer
        .send(OutgoingMessage::new(TOPIC, "order-4"), async |_| {
            ran.store(true, Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        })
        .await
        .expect_err("a duplicate");
    assert!(
        !ran.load(Ordering::SeqCst),
        "the local work did not run again"
    );
    match error {
        SendError::Duplicate { message_id, state } => {
            assert_eq!(message_id, first.message_id);
            assert_eq!(state, MessageState::Confirmed);
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
}

#[tokio::test]
async fn prepare_errors_come_back_in_couriers_words() {
    let courier = Courier::start().await;
    // No subscription on the topic: Prepare fails fast and nothing runs.
    let error = courier
        .producer()
        .send(OutgoingMessage::new(TOPIC, "order-5"), async |_| {
            Ok::<_, std::io::Error>(())
        })
        .await
        .expect_err("no subscription");
    let SendError::Prepare(status) = error else {
        panic!("expected a Prepare error, got {error:?}");
    };
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
}
