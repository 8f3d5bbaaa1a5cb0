//! Admin's dead letters: Redrive (listed or all, filtered, dry run, paced) and
//! DiscardDeadLetters.

use std::time::Duration;

use courier::proto::{
    DeadLetterFilter, DeliveryState, DiscardDeadLettersRequest, RedriveRequest, RejectRequest,
};
use tonic::Code;

use crate::harness::*;

async fn redrive(
    server: &TestServer,
    subscription: &str,
    message_ids: &[&str],
) -> Result<u64, tonic::Status> {
    server
        .admin()
        .redrive(RedriveRequest {
            subscription: subscription.into(),
            message_ids: message_ids.iter().map(|id| id.to_string()).collect(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().redriven)
}

/// Receives `count` deliveries and rejects them all, making them DEAD.
async fn reject_next(server: &TestServer, count: u32) -> Vec<String> {
    let deliveries = server.receive(SUB, count, Duration::ZERO).await;
    assert_eq!(deliveries.len(), count as usize);
    let mut consumer = server.consumer();
    let mut ids = Vec::new();
    for delivery in deliveries {
        consumer
            .reject(RejectRequest {
                subscription: SUB.into(),
                receipt: delivery.receipt,
                reason: "test".into(),
            })
            .await
            .expect("Reject");
        ids.push(delivery.message_id);
    }
    ids
}

#[tokio::test]
async fn redrive_makes_listed_or_all_dead_deliveries_pending() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    for n in 0..4 {
        server.publish(TOPIC, &format!("order-{n}")).await;
    }
    let dead = reject_next(&server, 3).await;
    let alive = server.receive_one(SUB, Duration::ZERO).await.message_id;

    // Only DEAD deliveries of the listed messages move; a live one is skipped.
    assert_eq!(redrive(&server, SUB, &[&dead[0], &alive]).await.unwrap(), 1);
    assert_eq!(
        server.delivery_status(&dead[0], SUB).await.state(),
        DeliveryState::Pending
    );
    assert_eq!(
        server.delivery_status(&dead[1], SUB).await.state(),
        DeliveryState::Dead
    );
    assert_eq!(
        server.delivery_status(&alive, SUB).await.state(),
        DeliveryState::Leased
    );

    assert_eq!(
        redrive(&server, SUB, &[]).await.unwrap(),
        2,
        "empty list: every dead one"
    );
    assert_eq!(
        redrive(&server, SUB, &[]).await.unwrap(),
        0,
        "nothing is dead any more"
    );
    for id in &dead {
        let status = server.delivery_status(id, SUB).await;
        assert_eq!(
            (status.state(), status.attempts),
            (DeliveryState::Pending, 0)
        );
    }
    let mut redelivered: Vec<_> = server
        .receive(SUB, 10, Duration::ZERO)
        .await
        .into_iter()
        .map(|d| d.message_id)
        .collect();
    redelivered.sort();
    let mut expected = dead.clone();
    expected.sort();
    assert_eq!(redelivered, expected);
    assert_code(redrive(&server, "nobody", &[]).await, Code::NotFound);
}

#[tokio::test]
async fn redrive_and_discard_take_filters_a_dry_run_and_a_rate() {
    let server = TestServer::start().await;
    server
        .create_subscription(fast_subscription(SUB, TOPIC, 1))
        .await;
    for key in ["order-1", "order-2", "order-3"] {
        server.publish(TOPIC, key).await;
    }
    let ids = reject_next(&server, 3).await;
    let filter = |key: &str| DeadLetterFilter {
        key: key.into(),
        error_contains: "TEST".into(),
        ..Default::default()
    };
    let mut admin = server.admin();
    let dry = admin
        .redrive(RedriveRequest {
            subscription: SUB.into(),
            filter: Some(filter("order-2")),
            dry_run: true,
            ..Default::default()
        })
        .await
        .expect("a dry run")
        .into_inner();
    assert_eq!((dry.matched, dry.redriven), (1, 0));
    assert_eq!(
        server.delivery_status(&ids[1], SUB).await.state(),
        DeliveryState::Dead
    );

    // Paced at one per second: the second is due a second after the first.
    let paced = admin
        .redrive(RedriveRequest {
            subscription: SUB.into(),
            message_ids: vec![ids[0].clone(), ids[2].clone()],
            rate: 1.0,
            ..Default::default()
        })
        .await
        .expect("a paced Redrive")
        .into_inner();
    assert_eq!((paced.matched, paced.redriven), (2, 2));
    let first = server.delivery_status(&ids[0], SUB).await;
    let second = server.delivery_status(&ids[2], SUB).await;
    let gap = to_system_time(&second.next_attempt_at)
        .duration_since(to_system_time(&first.next_attempt_at))
        .expect("the second is due later");
    assert_eq!(gap, Duration::from_secs(1));

    let discarded = admin
        .discard_dead_letters(DiscardDeadLettersRequest {
            subscription: SUB.into(),
            filter: Some(filter("order-2")),
            ..Default::default()
        })
        .await
        .expect("DiscardDeadLetters")
        .into_inner();
    assert_eq!((discarded.matched, discarded.discarded), (1, 1));

    assert_invalid_field(
        admin
            .redrive(RedriveRequest {
                subscription: SUB.into(),
                rate: f64::NAN,
                ..Default::default()
            })
            .await,
        "rate",
    );
    assert_invalid_field(
        admin
            .redrive(RedriveRequest {
                subscription: SUB.into(),
                filter: Some(DeadLetterFilter {
                    dead_after: Some(prost_types::Timestamp {
                        seconds: 20,
                        nanos: 0,
                    }),
                    dead_before: Some(prost_types::Timestamp {
                        seconds: 10,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        "filter.dead_before",
    );
    assert_code(
        admin
            .redrive(RedriveRequest {
                subscription: "nobody".into(),
                dry_run: true,
                ..Default::default()
            })
            .await,
        Code::NotFound,
    );
}
