//! Many clients at once: consumers competing for deliveries, producers racing on one key, and
//! Confirm racing Cancel. Multi-threaded runtimes, so calls really overlap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use courier::proto::{AckStatus, GetStatsRequest, MessageOutcome, MessageState};
use futures::future::join_all;

use crate::harness::*;

const MESSAGES: usize = 300;
const CONSUMERS: usize = 8;
const PRODUCERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_consumers_get_each_message_exactly_once() {
    let server = Arc::new(TestServer::start().await);
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let received: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let started = Instant::now();
    let deadline = Duration::from_secs(60);

    // Consumers wait before anything is published, so long polls are woken by publishes too.
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let server = Arc::clone(&server);
            let received = Arc::clone(&received);
            tokio::spawn(async move {
                let mut acked = 0;
                while received.lock().unwrap().len() < MESSAGES && started.elapsed() < deadline {
                    let deliveries = server.receive(SUB, 5, Duration::from_millis(200)).await;
                    for delivery in &deliveries {
                        assert_eq!(delivery.attempt, 1, "no delivery is handed out twice");
                        *received
                            .lock()
                            .unwrap()
                            .entry(delivery.message_id.clone())
                            .or_default() += 1;
                    }
                    let receipts: Vec<&str> =
                        deliveries.iter().map(|d| d.receipt.as_str()).collect();
                    if !receipts.is_empty() {
                        let statuses = server.ack(SUB, &receipts).await;
                        assert!(statuses.iter().all(|s| *s == AckStatus::Ok), "{statuses:?}");
                        acked += receipts.len();
                    }
                }
                acked
            })
        })
        .collect();

    let producers = (0..PRODUCERS).map(|producer| {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (producer..MESSAGES).step_by(PRODUCERS) {
                ids.push(server.publish(TOPIC, &format!("order-{n}")).await);
            }
            ids
        })
    });
    let published: Vec<String> = join_all(producers)
        .await
        .into_iter()
        .flat_map(Result::unwrap)
        .collect();
    assert_eq!(published.len(), MESSAGES);

    let acked: usize = join_all(consumers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    let received = received.lock().unwrap().clone();
    assert_eq!(
        received.len(),
        MESSAGES,
        "every message reached a consumer within {deadline:?}"
    );
    assert!(
        received.values().all(|&count| count == 1),
        "a message was delivered twice"
    );
    assert!(published.iter().all(|id| received.contains_key(id)));
    assert_eq!(acked, MESSAGES);

    let stats = server
        .admin()
        .get_stats(GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    let sub = stats
        .subscriptions
        .iter()
        .find(|s| s.subscription == SUB)
        .unwrap();
    assert_eq!(
        (sub.pending, sub.leased, sub.acked, sub.dead),
        (0, 0, MESSAGES as u64, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_prepares_of_one_key_create_one_message() {
    let server = Arc::new(TestServer::start().await);
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let attempts = (0..20).map(|_| {
        let mut producer = server.producer();
        tokio::spawn(async move {
            producer
                .prepare(prepare_request(PRODUCER, TOPIC, "order-1"))
                .await
                .expect("Prepare")
                .into_inner()
        })
    });
    let responses: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        responses.iter().filter(|r| r.created).count(),
        1,
        "exactly one Prepare created it"
    );
    assert!(
        responses
            .iter()
            .all(|r| r.message_id == responses[0].message_id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_confirm_and_cancel_have_one_winner() {
    let server = Arc::new(TestServer::start().await);
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(server.prepare(TOPIC, &format!("order-{n}")).await);
    }
    let races = ids.iter().map(|id| {
        let (server, id) = (Arc::clone(&server), id.clone());
        tokio::spawn(async move {
            let (confirm, cancel) = tokio::join!(server.confirm(&id), server.cancel(&id));
            (id, confirm, cancel)
        })
    });
    for race in join_all(races).await {
        let (id, confirm, cancel) = race.unwrap();
        let final_state = server.status(&id).await.state();
        match (confirm, cancel) {
            (Ok(MessageState::Confirmed), Err(status)) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition);
                assert_eq!(final_state, MessageState::Confirmed);
                assert_eq!(server.status(&id).await.deliveries.len(), 1);
            }
            (Err(status), Ok(MessageState::Cancelled)) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition);
                assert_eq!(final_state, MessageState::Cancelled);
                assert_eq!(
                    server.status(&id).await.outcome(),
                    MessageOutcome::Cancelled
                );
            }
            other => panic!("exactly one of Confirm and Cancel wins, got {other:?}"),
        }
    }
}
