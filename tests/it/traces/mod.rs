//! Trace context end to end: a producer's `traceparent` / `tracestate` on Prepare or Publish
//! reaches the checker (Check metadata), push receivers (Deliver metadata and the Delivery's
//! fields) and pull consumers (the Delivery's fields). These servers run without span export,
//! so the producer's context goes on unchanged; `export.rs` runs the binary with OTLP on.

mod collector;
mod export;

use std::time::Duration;

use courier::proto::{ConfirmRequest, Delivery, PrepareRequest, PublishRequest, Subscription};
use tonic::Request;

use crate::callbacks::Recorder;
use crate::harness::*;

pub const PRODUCER_SPAN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const OTHER_SPAN: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const STATE: &str = "vendor=a1,other@sys=b2";

/// `message` with `traceparent` and `tracestate` metadata (each left out when empty).
pub fn traced<T>(message: T, traceparent: &str, tracestate: &str) -> Request<T> {
    let mut request = Request::new(message);
    for (key, value) in [("traceparent", traceparent), ("tracestate", tracestate)] {
        if !value.is_empty() {
            request
                .metadata_mut()
                .insert(key, value.parse().expect("ASCII metadata"));
        }
    }
    request
}

/// A Prepare of `key` whose first check is one second after it.
pub fn prepare_checked_soon(key: &str) -> PrepareRequest {
    PrepareRequest {
        check_after: secs(1),
        ..prepare_request(PRODUCER, TOPIC, key)
    }
}

fn trace_of(delivery: &Delivery) -> (&str, &str) {
    (&delivery.traceparent, &delivery.tracestate)
}

#[tokio::test]
async fn the_producers_trace_reaches_its_checker_and_push_receiver_unchanged() {
    let server = TestServer::start().await;
    let recorder = Recorder::default();
    let endpoint = recorder.serve(None).await;
    server.register_checker(&endpoint, None).await;
    server
        .create_subscription(Subscription {
            push_endpoint: endpoint.clone(),
            ..fast_subscription(SUB, TOPIC, 5)
        })
        .await;

    // Prepared and left alone: checked (COMMIT), then pushed.
    let request = traced(prepare_checked_soon("traced-1"), PRODUCER_SPAN, STATE);
    let prepared = server.producer().prepare(request).await.expect("Prepare");
    let message_id = prepared.into_inner().message_id;
    let calls = eventually(Duration::from_secs(20), "a check and a push", || async {
        let calls = recorder.calls();
        (calls.len() >= 2).then_some(calls)
    })
    .await;
    let check = calls.iter().find(|c| c.delivery_trace.is_none()).unwrap();
    let push = calls.iter().find(|c| c.delivery_trace.is_some()).unwrap();
    for call in [check, push] {
        assert_eq!(call.message_id, message_id);
        assert_eq!(call.traceparent.as_deref(), Some(PRODUCER_SPAN));
        assert_eq!(call.tracestate.as_deref(), Some(STATE));
    }
    let fields = push.delivery_trace.clone().unwrap();
    assert_eq!(fields, (PRODUCER_SPAN.to_owned(), STATE.to_owned()));
}

#[tokio::test]
async fn receive_hands_out_the_prepares_trace_and_confirm_keeps_it() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;

    let request = traced(
        prepare_request(PRODUCER, TOPIC, "pulled-1"),
        PRODUCER_SPAN,
        STATE,
    );
    let message_id = server
        .producer()
        .prepare(request)
        .await
        .expect("Prepare")
        .into_inner()
        .message_id;
    // The Confirm is part of another trace; the message stays in the producer's first one.
    let confirm = ConfirmRequest {
        message: by_id(&message_id),
    };
    server
        .producer()
        .confirm(traced(confirm, OTHER_SPAN, "x=1"))
        .await
        .expect("Confirm");
    let delivery = server.receive_one(SUB, Duration::from_secs(5)).await;
    assert_eq!(delivery.message_id, message_id);
    assert_eq!(trace_of(&delivery), (PRODUCER_SPAN, STATE));

    // Without trace context the fields are empty.
    server.publish(TOPIC, "untraced").await;
    let delivery = server.receive_one(SUB, Duration::from_secs(5)).await;
    assert_eq!(trace_of(&delivery), ("", ""));
}

#[tokio::test]
async fn an_invalid_trace_context_is_ignored_not_refused() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let all_zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let cases = [
        // (traceparent, tracestate) sent → (traceparent, tracestate) delivered
        (all_zero_trace, STATE, ("", "")),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "",
            ("", ""),
        ),
        ("not a traceparent", STATE, ("", "")),
        // A bad tracestate goes alone; the traceparent stays.
        (PRODUCER_SPAN, "Upper=case", (PRODUCER_SPAN, "")),
        (PRODUCER_SPAN, &"k=v,".repeat(200), (PRODUCER_SPAN, "")),
    ];
    for (index, (traceparent, tracestate, expected)) in cases.into_iter().enumerate() {
        let key = format!("invalid-{index}");
        let publish = publish_request(PRODUCER, TOPIC, &key);
        let answer = server
            .producer()
            .publish(traced::<PublishRequest>(publish, traceparent, tracestate))
            .await;
        assert!(answer.is_ok(), "{traceparent:?} {tracestate:?}: {answer:?}");
        let delivery = server.receive_one(SUB, Duration::from_secs(5)).await;
        assert_eq!(
            trace_of(&delivery),
            expected,
            "{traceparent:?} {tracestate:?}"
        );
    }
}
