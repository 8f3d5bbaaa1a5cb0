//! Push delivery into a `PushReceiver`, the callback token checks it and the outbox Checker
//! make, and the trace context a delivery carries into its handler.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_client::proto::checker_client::CheckerClient;
use courier_client::proto::receiver_client::ReceiverClient;
use courier_client::proto::{
    self, CheckRequest, DeliveryState, MessageOutcome, RetryPolicy, Subscription,
};
use courier_client::{CallbackAuth, Delivery, Outbox, OutgoingMessage, PushReceiver};
use opentelemetry::trace::TraceContextExt as _;
use tonic::transport::{Endpoint, Server};

use crate::harness::*;

fn push_subscription(endpoint: &str) -> Subscription {
    Subscription {
        name: SUB.into(),
        topic: TOPIC.into(),
        push_endpoint: endpoint.into(),
        ack_deadline: Some(proto::duration(Duration::from_secs(5))),
        retry_policy: Some(RetryPolicy {
            max_attempts: 50,
            initial_backoff: Some(proto::duration(Duration::from_millis(50))),
            max_backoff: Some(proto::duration(Duration::from_millis(100))),
            multiplier: 0.0,
        }),
        ..Subscription::default()
    }
}

/// Keys of the deliveries a handler got.
type Keys = Arc<Mutex<Vec<String>>>;

fn recording_receiver(
    keys: &Keys,
    auth: CallbackAuth,
) -> PushReceiver<impl courier_client::Handler> {
    let keys = keys.clone();
    PushReceiver::new(
        move |delivery: Delivery| {
            let keys = keys.clone();
            async move {
                keys.lock().unwrap().push(delivery.key);
                Ok(())
            }
        },
        auth,
    )
}

#[tokio::test]
async fn pushed_deliveries_with_couriers_token_reach_the_handler() {
    let courier = Courier::start().await;
    let (listener, endpoint) = bind().await;
    let keys = Keys::default();
    let auth = CallbackAuth::jwks_url(courier.jwks_url.clone(), endpoint.clone());
    let router = Server::builder().add_service(recording_receiver(&keys, auth).into_server());
    let _server = serve_on(listener, router);
    courier
        .create_subscription(push_subscription(&endpoint))
        .await;

    let message_id = courier
        .producer()
        .publish(OutgoingMessage::new(TOPIC, "pushed-1"))
        .await
        .expect("Publish")
        .message_id;
    courier
        .wait_for(&message_id, "delivered", |m| {
            m.outcome() == MessageOutcome::Delivered
        })
        .await;
    assert_eq!(*keys.lock().unwrap(), ["pushed-1"]);
}

#[tokio::test]
async fn a_token_for_another_endpoint_is_refused_and_the_delivery_retried() {
    let courier = Courier::start().await;
    let (listener, endpoint) = bind().await;
    let keys = Keys::default();
    // The receiver believes it is reached at another URL than the one Courier signs for.
    let auth = CallbackAuth::jwks_url(courier.jwks_url.clone(), "http://billing.internal:7002");
    let router = Server::builder().add_service(recording_receiver(&keys, auth).into_server());
    let _server = serve_on(listener, router);
    courier
        .create_subscription(push_subscription(&endpoint))
        .await;

    let message_id = courier
        .producer()
        .publish(OutgoingMessage::new(TOPIC, "pushed-2"))
        .await
        .expect("Publish")
        .message_id;
    let message = courier
        .wait_for(&message_id, "refused twice", |m| {
            m.deliveries.first().is_some_and(|d| d.attempts >= 2)
        })
        .await;
    let delivery = &message.deliveries[0];
    assert_ne!(delivery.state(), DeliveryState::Acked);
    assert!(
        delivery.last_error.contains("UNAUTHENTICATED")
            || delivery.last_error.contains("not a call from Courier"),
        "{:?}",
        delivery.last_error
    );
    assert!(keys.lock().unwrap().is_empty(), "the handler never ran");
}

#[tokio::test]
async fn calls_without_couriers_token_are_unauthenticated() {
    let courier = Courier::start().await;
    let (listener, endpoint) = bind().await;
    let keys = Keys::default();
    let receiver_auth = CallbackAuth::jwks_url(courier.jwks_url.clone(), endpoint.clone());
    let (pool, _keep) = crate::databases::sqlite().await;
    let outbox = Outbox::new(pool);
    outbox.install().await.unwrap();
    let checker_auth = CallbackAuth::jwks_url(courier.jwks_url.clone(), endpoint.clone());
    let router = Server::builder()
        .add_service(recording_receiver(&keys, receiver_auth).into_server())
        .add_service(outbox.checker(checker_auth).into_server());
    let _server = serve_on(listener, router);
    let channel = Endpoint::from_shared(endpoint).unwrap().connect_lazy();

    let delivered = ReceiverClient::new(channel.clone())
        .deliver(Delivery {
            message_id: "0190f0a0-0000-7000-8000-000000000001".into(),
            subscription: SUB.into(),
            ..Delivery::default()
        })
        .await
        .expect_err("no token");
    assert_eq!(delivered.code(), tonic::Code::Unauthenticated);
    assert_eq!(delivered.message(), "not a call from Courier");

    let mut forged = tonic::Request::new(CheckRequest {
        message_id: "0190f0a0-0000-7000-8000-000000000001".into(),
        producer: PRODUCER.into(),
        ..CheckRequest::default()
    });
    forged.metadata_mut().insert(
        "authorization",
        "Bearer eyJhbGciOiJub25lIn0.e30.".parse().unwrap(),
    );
    let checked = CheckerClient::new(channel)
        .check(forged)
        .await
        .expect_err("a forged token");
    assert_eq!(checked.code(), tonic::Code::Unauthenticated);
    assert!(keys.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_pushed_handler_runs_in_the_trace_the_message_carries() {
    let trace_ids = Arc::new(Mutex::new(Vec::new()));
    let receiver = PushReceiver::new(
        {
            let trace_ids = trace_ids.clone();
            move |_delivery: Delivery| {
                let trace_ids = trace_ids.clone();
                async move {
                    let context = opentelemetry::Context::current();
                    let trace_id = context.span().span_context().trace_id().to_string();
                    trace_ids.lock().unwrap().push(trace_id);
                    Ok(())
                }
            }
        },
        CallbackAuth::accept_any(),
    );
    let (url, _server) = serve(Server::builder().add_service(receiver.into_server())).await;
    let channel = Endpoint::from_shared(url).unwrap().connect_lazy();
    ReceiverClient::new(channel)
        .deliver(Delivery {
            message_id: "0190f0a0-0000-7000-8000-000000000002".into(),
            subscription: SUB.into(),
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            ..Delivery::default()
        })
        .await
        .expect("delivered");
    assert_eq!(
        *trace_ids.lock().unwrap(),
        ["4bf92f3577b34da6a3ce929d0e0e4736"]
    );
}
