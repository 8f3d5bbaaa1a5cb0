//! The consumer loop against Courier: Ack on Ok, Nack and redelivery on a retryable error,
//! Reject on a permanent one, leases extended while a handler runs, bounded concurrency, and
//! a graceful shutdown that gives unfinished deliveries back at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use courier_client::proto::{DeliveryState, MessageOutcome};
use courier_client::{Delivery, HandlerError, OutgoingMessage};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::harness::*;

/// Publishes a message with `key` and answers its id.
async fn publish(courier: &Courier, key: &str) -> String {
    courier
        .producer()
        .publish(OutgoingMessage::new(TOPIC, key).payload(key.as_bytes().to_vec()))
        .await
        .expect("Publish")
        .message_id
}

/// Runs `consumer.run(handler)` in the background; cancel the token to stop it.
fn start<H: courier_client::Handler>(
    consumer: courier_client::Consumer,
    handler: H,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), tonic::Status>>,
) {
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { consumer.run(handler, shutdown).await }
    });
    (shutdown, running)
}

/// Every (key, attempt) the handler saw.
type Seen = Arc<Mutex<Vec<(String, u32)>>>;

fn record(seen: &Seen, delivery: &Delivery) {
    seen.lock()
        .unwrap()
        .push((delivery.key.clone(), delivery.attempt));
}

#[tokio::test]
async fn handled_deliveries_are_acked() {
    let courier = Courier::start().await;
    courier.subscribe(SUB, Duration::from_secs(30), 5).await;
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |delivery: Delivery| {
            let seen = seen.clone();
            async move {
                record(&seen, &delivery);
                Ok(())
            }
        }
    };
    let (shutdown, running) = start(courier.consumer(SUB), handler);
    let ids = [publish(&courier, "a").await, publish(&courier, "b").await];
    for id in &ids {
        let message = courier
            .wait_for(id, "delivered", |m| {
                m.outcome() == MessageOutcome::Delivered
            })
            .await;
        assert_eq!(message.deliveries[0].attempts, 1);
    }
    shutdown.cancel();
    running.await.unwrap().expect("a clean stop");
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, [("a".to_owned(), 1), ("b".to_owned(), 1)]);
}

#[tokio::test]
async fn a_retryable_error_nacks_and_the_delivery_comes_again() {
    let courier = Courier::start().await;
    courier.subscribe(SUB, Duration::from_secs(30), 5).await;
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |delivery: Delivery| {
            let seen = seen.clone();
            async move {
                record(&seen, &delivery);
                if delivery.attempt == 1 {
                    // Any error converts with `?`, and is retried.
                    Err(std::io::Error::other("database busy"))?;
                }
                Ok(())
            }
        }
    };
    let (shutdown, running) = start(courier.consumer(SUB), handler);
    let id = publish(&courier, "retry-me").await;
    let message = courier
        .wait_for(&id, "delivered", |m| {
            m.outcome() == MessageOutcome::Delivered
        })
        .await;
    assert_eq!(message.deliveries[0].attempts, 2);
    // The Nack said why; the delivery keeps it.
    assert!(
        message.deliveries[0].last_error.contains("database busy"),
        "{:?}",
        message.deliveries[0].last_error
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [("retry-me".to_owned(), 1), ("retry-me".to_owned(), 2)]
    );
}

#[tokio::test]
async fn a_permanent_error_rejects_with_its_text() {
    let courier = Courier::start().await;
    courier.subscribe(SUB, Duration::from_secs(30), 5).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        move |_delivery: Delivery| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Err(HandlerError::permanent("payload is not an order")) }
        }
    };
    let (shutdown, running) = start(courier.consumer(SUB), handler);
    let id = publish(&courier, "poison").await;
    let message = courier.wait_for_delivery(&id, DeliveryState::Dead).await;
    assert_eq!(message.deliveries[0].attempts, 1, "rejected, not retried");
    assert!(
        message.deliveries[0]
            .last_error
            .contains("payload is not an order"),
        "{:?}",
        message.deliveries[0].last_error
    );
    assert_eq!(message.outcome(), MessageOutcome::DeadLettered);
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn leases_are_extended_while_a_slow_handler_runs() {
    let courier = Courier::start().await;
    // A 1 s lease; the handler takes 3 s. Without extensions the delivery would be leased
    // again (attempt 2) and the first ack would be too late.
    courier.subscribe(SUB, Duration::from_secs(1), 5).await;
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |delivery: Delivery| {
            let seen = seen.clone();
            async move {
                record(&seen, &delivery);
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok(())
            }
        }
    };
    let (shutdown, running) = start(courier.consumer(SUB).concurrency(2), handler);
    let id = publish(&courier, "slow").await;
    let message = courier
        .wait_for(&id, "delivered", |m| {
            m.outcome() == MessageOutcome::Delivered
        })
        .await;
    assert_eq!(message.deliveries[0].attempts, 1, "never leased again");
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(*seen.lock().unwrap(), [("slow".to_owned(), 1)]);
}

#[tokio::test]
async fn no_more_handlers_run_at_once_than_the_concurrency() {
    let courier = Courier::start().await;
    courier.subscribe(SUB, Duration::from_secs(30), 5).await;
    let running_now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (running_now, most) = (running_now.clone(), most.clone());
        move |_delivery: Delivery| {
            let (running_now, most) = (running_now.clone(), most.clone());
            async move {
                let now = running_now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                running_now.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        }
    };
    let mut ids = Vec::new();
    for key in 0..6 {
        ids.push(publish(&courier, &format!("k{key}")).await);
    }
    let (shutdown, running) = start(courier.consumer(SUB).concurrency(2), handler);
    for id in &ids {
        courier
            .wait_for(id, "delivered", |m| {
                m.outcome() == MessageOutcome::Delivered
            })
            .await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(most.load(Ordering::SeqCst), 2, "two at a time, and no more");
}

#[tokio::test]
async fn shutdown_lets_quick_handlers_finish_and_gives_stuck_ones_back_at_once() {
    let courier = Courier::start().await;
    courier.subscribe(SUB, Duration::from_secs(30), 5).await;
    let started = Arc::new(AtomicUsize::new(0));
    let both_started = Arc::new(Notify::new());
    let handler = {
        let (started, both_started) = (started.clone(), both_started.clone());
        move |delivery: Delivery| {
            let (started, both_started) = (started.clone(), both_started.clone());
            async move {
                if started.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
                    both_started.notify_one();
                }
                if delivery.key == "stuck" {
                    std::future::pending::<()>().await;
                }
                // Still running when shutdown is asked for; finishes within the deadline.
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(())
            }
        }
    };
    let quick = publish(&courier, "quick").await;
    let stuck = publish(&courier, "stuck").await;
    let consumer = courier
        .consumer(SUB)
        .shutdown_deadline(Duration::from_secs(1));
    let (shutdown, running) = start(consumer, handler);
    tokio::time::timeout(PATIENCE, both_started.notified())
        .await
        .expect("both handlers start");

    let asked = Instant::now();
    shutdown.cancel();
    running.await.unwrap().expect("a clean stop");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "stopped within the deadline"
    );
    assert_eq!(
        courier.status(&quick).await.outcome(),
        MessageOutcome::Delivered,
        "the quick handler finished and was acked"
    );
    let stuck_delivery = courier.status(&stuck).await.deliveries[0].clone();
    assert_eq!(stuck_delivery.state(), DeliveryState::Pending, "given back");

    // Given back without delay: the next Receive gets it at once.
    let again = courier.receive(SUB, Duration::from_secs(2)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, stuck);
    assert_eq!(again[0].attempt, 2);
}

#[tokio::test]
async fn an_unknown_subscription_stops_the_loop_with_courier_s_answer() {
    let courier = Courier::start().await;
    let handler = |_delivery: Delivery| async { Ok(()) };
    let (_shutdown, running) = start(courier.consumer("no-such-subscription"), handler);
    let error = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the loop stops")
        .unwrap()
        .expect_err("NOT_FOUND ends the loop");
    assert_eq!(error.code(), tonic::Code::NotFound);
}

/// Producer → Courier → consumer in one trace: the context current at Publish travels with the
/// message (stored by Courier, returned on Receive) and is current again in the handler.
#[tokio::test]
async fn a_received_handler_runs_in_the_producers_trace() {
    use opentelemetry::context::FutureExt as _;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };

    let courier = Courier::start().await;
    courier.subscribe(SUB, Duration::from_secs(30), 5).await;
    let producer_span = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let in_trace = opentelemetry::Context::new().with_remote_span_context(producer_span);
    publish(&courier, "traced").with_context(in_trace).await;

    let trace_ids = Arc::new(Mutex::new(Vec::new()));
    let handler = {
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
    };
    let (shutdown, running) = start(courier.consumer(SUB), handler);
    let deadline = Instant::now() + Duration::from_secs(10);
    while trace_ids.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the message was not handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    running.await.unwrap().expect("a clean stop");
    assert_eq!(
        *trace_ids.lock().unwrap(),
        ["4bf92f3577b34da6a3ce929d0e0e4736"]
    );
}
