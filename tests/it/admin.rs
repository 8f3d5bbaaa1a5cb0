//! Admin: subscriptions, ListMessages and ListDeliveries with paging, Redrive, Resolve and
//! GetStats.

use std::time::Duration;

use courier::proto::{
    AckStatus, ConfirmRequest, CreateSubscriptionRequest, DeadLetterFilter, Decision,
    DeleteSubscriptionRequest, DeliveryState, DiscardDeadLettersRequest, GetStatsRequest,
    GetSubscriptionRequest, ListDeliveriesRequest, ListMessagesRequest, ListSubscriptionsRequest,
    MessageOutcome, MessageState, RedriveRequest, RejectRequest, ResolveRequest, RetryPolicy,
    Subscription, UpdateSubscriptionRequest,
};
use tonic::Code;

use crate::harness::*;

fn names(subscriptions: &[Subscription]) -> Vec<&str> {
    subscriptions.iter().map(|s| s.name.as_str()).collect()
}

async fn list_subscriptions(server: &TestServer, topic: &str) -> Vec<Subscription> {
    server
        .admin()
        .list_subscriptions(ListSubscriptionsRequest {
            topic: topic.into(),
        })
        .await
        .expect("ListSubscriptions")
        .into_inner()
        .subscriptions
}

async fn resolve(
    server: &TestServer,
    message_id: &str,
    decision: Decision,
) -> Result<MessageState, tonic::Status> {
    server
        .admin()
        .resolve(ResolveRequest {
            message: by_id(message_id),
            decision: decision as i32,
        })
        .await
        .map(|r| r.into_inner().state())
}

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
async fn create_subscription_fills_unset_fields_with_the_defaults() {
    let server = TestServer::start().await;
    let created = server.create_subscription(subscription(SUB, TOPIC)).await;

    let defaults = &server.config.subscriptions;
    assert_eq!(
        (created.name.as_str(), created.topic.as_str()),
        (SUB, TOPIC)
    );
    assert_eq!(created.ack_deadline, Some(duration(defaults.ack_deadline)));
    let policy = created.retry_policy.expect("a retry policy");
    assert_eq!(policy.max_attempts, defaults.max_attempts);
    assert_eq!(
        policy.initial_backoff,
        Some(duration(defaults.initial_backoff))
    );
    assert_eq!(policy.max_backoff, Some(duration(defaults.max_backoff)));
    assert_eq!(policy.multiplier, defaults.multiplier);
    assert!(created.push_endpoint.is_empty());
    assert!(created.created_at.is_some());

    let fetched = server
        .admin()
        .get_subscription(GetSubscriptionRequest { name: SUB.into() })
        .await
        .expect("GetSubscription")
        .into_inner();
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn creating_the_same_subscription_again_is_ok_and_a_different_one_already_exists() {
    let server = TestServer::start().await;
    let first = server
        .create_subscription(fast_subscription(SUB, TOPIC, 3))
        .await;
    let again = server
        .create_subscription(fast_subscription(SUB, TOPIC, 3))
        .await;
    assert_eq!(
        again, first,
        "an identical re-create returns the existing subscription"
    );

    // Unset fields take the defaults, so spelling the defaults out is the same subscription.
    let implicit = server
        .create_subscription(subscription("shipping", TOPIC))
        .await;
    let explicit = server
        .create_subscription(Subscription {
            created_at: None,
            ..implicit.clone()
        })
        .await;
    assert_eq!(explicit, implicit);

    let mut admin = server.admin();
    let conflicting = [
        Subscription {
            ack_deadline: secs(5),
            ..fast_subscription(SUB, TOPIC, 3)
        },
        fast_subscription(SUB, TOPIC, 4),
        fast_subscription(SUB, "payments", 3),
        Subscription {
            push_endpoint: "http://127.0.0.1:9".into(),
            ..fast_subscription(SUB, TOPIC, 3)
        },
    ];
    for subscription in conflicting {
        let result = admin
            .create_subscription(CreateSubscriptionRequest {
                subscription: Some(subscription),
            })
            .await;
        assert_code(result, Code::AlreadyExists);
    }
    let stored = admin
        .get_subscription(GetSubscriptionRequest { name: SUB.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored, first, "a conflicting create changes nothing");
}

#[tokio::test]
async fn update_subscription_replaces_its_settings_but_never_its_topic() {
    let server = TestServer::start().await;
    let created = server
        .create_subscription(fast_subscription(SUB, TOPIC, 3))
        .await;
    let mut admin = server.admin();

    let wanted = Subscription {
        ack_deadline: secs(5),
        retry_policy: Some(RetryPolicy {
            max_attempts: 7,
            initial_backoff: ms(100),
            max_backoff: secs(2),
            multiplier: 3.0,
        }),
        ..subscription(SUB, TOPIC)
    };
    let updated = admin
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(wanted.clone()),
        })
        .await
        .expect("UpdateSubscription")
        .into_inner();
    assert_eq!(updated.ack_deadline, wanted.ack_deadline);
    assert_eq!(updated.retry_policy, wanted.retry_policy);
    assert_eq!(
        updated.created_at, created.created_at,
        "an update keeps the creation time"
    );
    let fetched = admin
        .get_subscription(GetSubscriptionRequest { name: SUB.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, updated);

    // The topic may be left empty; unset fields go back to the defaults.
    let reset = admin
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(Subscription {
                name: SUB.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("UpdateSubscription without a topic")
        .into_inner();
    assert_eq!(reset.topic, TOPIC);
    assert_eq!(
        reset.ack_deadline,
        Some(duration(server.config.subscriptions.ack_deadline))
    );
    assert_eq!(
        reset.retry_policy.unwrap().max_attempts,
        server.config.subscriptions.max_attempts
    );

    let moved = admin
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(subscription(SUB, "payments")),
        })
        .await;
    assert_code(moved, Code::FailedPrecondition);
    let unknown = admin
        .update_subscription(UpdateSubscriptionRequest {
            subscription: Some(subscription("nobody", TOPIC)),
        })
        .await;
    assert_code(unknown, Code::NotFound);
    assert_eq!(list_subscriptions(&server, "").await[0].topic, TOPIC);
}

#[tokio::test]
async fn delete_subscription_removes_it_with_its_deliveries() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    server
        .create_subscription(subscription("shipping", TOPIC))
        .await;
    let id = server.publish(TOPIC, "order-1").await;
    let mut admin = server.admin();

    admin
        .delete_subscription(DeleteSubscriptionRequest { name: SUB.into() })
        .await
        .expect("DeleteSubscription");
    assert_code(
        admin
            .get_subscription(GetSubscriptionRequest { name: SUB.into() })
            .await,
        Code::NotFound,
    );
    assert_code(
        admin
            .delete_subscription(DeleteSubscriptionRequest { name: SUB.into() })
            .await,
        Code::NotFound,
    );
    assert_code(
        admin
            .list_deliveries(ListDeliveriesRequest {
                subscription: SUB.into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
    );
    assert_eq!(names(&list_subscriptions(&server, "").await), ["shipping"]);
    let remaining: Vec<_> = server
        .status(&id)
        .await
        .deliveries
        .into_iter()
        .map(|d| d.subscription)
        .collect();
    assert_eq!(remaining, ["shipping"]);
}

#[tokio::test]
async fn list_subscriptions_filters_by_topic_in_name_order() {
    let server = TestServer::start().await;
    for (name, topic) in [("c-sub", TOPIC), ("a-sub", TOPIC), ("b-sub", "payments")] {
        server.create_subscription(subscription(name, topic)).await;
    }
    assert_eq!(
        names(&list_subscriptions(&server, "").await),
        ["a-sub", "b-sub", "c-sub"]
    );
    assert_eq!(
        names(&list_subscriptions(&server, TOPIC).await),
        ["a-sub", "c-sub"]
    );
    assert_eq!(
        names(&list_subscriptions(&server, "payments").await),
        ["b-sub"]
    );
    assert!(list_subscriptions(&server, "nothing-here").await.is_empty());
}

#[tokio::test]
async fn list_messages_pages_newest_first() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut published = Vec::new();
    for n in 0..5 {
        published.push(server.publish(TOPIC, &format!("order-{n}")).await);
    }

    let mut admin = server.admin();
    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_messages(ListMessagesRequest {
                page_size: 2,
                page_token,
                ..Default::default()
            })
            .await
            .expect("ListMessages")
            .into_inner();
        page_sizes.push(page.messages.len());
        seen.extend(page.messages.into_iter().map(|m| m.message_id));
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(page_sizes.len() < 10, "paging does not end");
        page_token = page.next_page_token;
    }
    assert_eq!(page_sizes, [2, 2, 1]);
    published.reverse();
    assert_eq!(seen, published, "every message once, newest first");

    let bad = admin
        .list_messages(ListMessagesRequest {
            page_size: 2,
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await;
    assert_code(bad, Code::InvalidArgument);
}

#[tokio::test]
async fn list_messages_filters_by_topic_producer_state_and_outcome() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    server
        .create_subscription(subscription("audit", "payments"))
        .await;
    let prepared = server.prepare(TOPIC, "prepared").await;
    let cancelled = server.prepare(TOPIC, "cancelled").await;
    server.cancel(&cancelled).await.unwrap();
    let published = server.publish(TOPIC, "published").await;
    let payment = server
        .producer()
        .publish(publish_request("cashier", "payments", "payment-1"))
        .await
        .unwrap()
        .into_inner()
        .message_id;

    let list = |request: ListMessagesRequest| {
        let mut admin = server.admin();
        async move {
            let mut ids: Vec<_> = admin
                .list_messages(request)
                .await
                .expect("ListMessages")
                .into_inner()
                .messages
                .into_iter()
                .map(|m| m.message_id)
                .collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut ids: Vec<&String>| {
        ids.sort();
        ids.into_iter().cloned().collect::<Vec<_>>()
    };
    assert_eq!(
        list(ListMessagesRequest {
            topic: TOPIC.into(),
            ..Default::default()
        })
        .await,
        sorted(vec![&prepared, &cancelled, &published])
    );
    assert_eq!(
        list(ListMessagesRequest {
            producer: "cashier".into(),
            ..Default::default()
        })
        .await,
        sorted(vec![&payment])
    );
    assert_eq!(
        list(ListMessagesRequest {
            state: MessageState::Confirmed as i32,
            ..Default::default()
        })
        .await,
        sorted(vec![&published, &payment])
    );
    assert_eq!(
        list(ListMessagesRequest {
            outcome: MessageOutcome::Cancelled as i32,
            ..Default::default()
        })
        .await,
        sorted(vec![&cancelled])
    );
    assert_eq!(
        list(ListMessagesRequest {
            topic: TOPIC.into(),
            state: MessageState::Prepared as i32,
            ..Default::default()
        })
        .await,
        sorted(vec![&prepared])
    );
}

#[tokio::test]
async fn list_deliveries_pages_oldest_first_and_filters_by_state() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut published = Vec::new();
    for n in 0..5 {
        published.push(server.publish(TOPIC, &format!("order-{n}")).await);
    }
    let mut admin = server.admin();

    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_deliveries(ListDeliveriesRequest {
                subscription: SUB.into(),
                page_size: 2,
                page_token,
                ..Default::default()
            })
            .await
            .expect("ListDeliveries")
            .into_inner();
        page_sizes.push(page.deliveries.len());
        seen.extend(page.deliveries.into_iter().map(|d| d.message_id));
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(page_sizes.len() < 10, "paging does not end");
        page_token = page.next_page_token;
    }
    assert_eq!(page_sizes, [2, 2, 1]);
    assert_eq!(seen, published, "every delivery once, oldest message first");
    assert_eq!(
        server.deliveries(SUB).await.len(),
        5,
        "one default-sized page holds all"
    );

    let delivery = server.receive_one(SUB, Duration::ZERO).await;
    assert_eq!(server.ack(SUB, &[&delivery.receipt]).await, [AckStatus::Ok]);
    let acked = admin
        .list_deliveries(ListDeliveriesRequest {
            subscription: SUB.into(),
            state: DeliveryState::Acked as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0].message_id, delivery.message_id);
    assert_eq!(acked[0].state(), DeliveryState::Acked);

    let bad = admin
        .list_deliveries(ListDeliveriesRequest {
            subscription: SUB.into(),
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await;
    assert_code(bad, Code::InvalidArgument);
    let unknown = admin
        .list_deliveries(ListDeliveriesRequest {
            subscription: "nobody".into(),
            ..Default::default()
        })
        .await;
    assert_code(unknown, Code::NotFound);
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
async fn resolve_commits_or_rolls_back_a_prepared_message() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let committed = server.prepare(TOPIC, "commit-me").await;
    let rolled_back = server.prepare(TOPIC, "roll-me-back").await;

    assert_eq!(
        resolve(&server, &committed, Decision::Commit)
            .await
            .unwrap(),
        MessageState::Confirmed
    );
    assert_eq!(
        resolve(&server, &committed, Decision::Commit)
            .await
            .unwrap(),
        MessageState::Confirmed
    );
    assert_precondition_names(
        resolve(&server, &committed, Decision::Rollback).await,
        "CONFIRMED",
    );
    assert_eq!(
        server.receive_one(SUB, Duration::ZERO).await.message_id,
        committed
    );

    assert_eq!(
        resolve(&server, &rolled_back, Decision::Rollback)
            .await
            .unwrap(),
        MessageState::Cancelled
    );
    assert_eq!(
        resolve(&server, &rolled_back, Decision::Rollback)
            .await
            .unwrap(),
        MessageState::Cancelled
    );
    assert_precondition_names(
        resolve(&server, &rolled_back, Decision::Commit).await,
        "CANCELLED",
    );
    assert_precondition_names(server.confirm(&rolled_back).await, "CANCELLED");
    assert_eq!(
        server.status(&rolled_back).await.outcome(),
        MessageOutcome::Cancelled
    );

    let by_producer_key = server.prepare(TOPIC, "by-key").await;
    let state = server
        .admin()
        .resolve(ResolveRequest {
            message: by_key(PRODUCER, "by-key"),
            decision: Decision::Commit as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .state();
    assert_eq!(state, MessageState::Confirmed);
    assert_eq!(
        server.status(&by_producer_key).await.state(),
        MessageState::Confirmed
    );

    let unknown = uuid::Uuid::now_v7().to_string();
    assert_code(
        resolve(&server, &unknown, Decision::Commit).await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn get_stats_counts_messages_and_deliveries_by_state() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    server.prepare(TOPIC, "prepared").await;
    let cancelled = server.prepare(TOPIC, "cancelled").await;
    server.cancel(&cancelled).await.unwrap();
    for n in 0..4 {
        server.publish(TOPIC, &format!("order-{n}")).await;
    }
    let deliveries = server.receive(SUB, 3, Duration::ZERO).await;
    assert_eq!(deliveries.len(), 3);
    assert_eq!(
        server.ack(SUB, &[&deliveries[0].receipt]).await,
        [AckStatus::Ok]
    );
    server
        .consumer()
        .reject(RejectRequest {
            subscription: SUB.into(),
            receipt: deliveries[1].receipt.clone(),
            reason: "poison".into(),
        })
        .await
        .unwrap();
    // deliveries[2] stays leased; the fourth message stays pending.

    let stats = server
        .admin()
        .get_stats(GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    let topic = stats
        .topics
        .iter()
        .find(|t| t.topic == TOPIC)
        .expect("stats of the topic");
    assert_eq!(
        (
            topic.prepared,
            topic.confirmed,
            topic.cancelled,
            topic.unresolved,
            topic.unrouted
        ),
        (1, 4, 1, 0, 0)
    );
    let sub = stats
        .subscriptions
        .iter()
        .find(|s| s.subscription == SUB)
        .expect("stats of the subscription");
    assert_eq!(sub.topic, TOPIC);
    assert_eq!((sub.pending, sub.leased, sub.acked, sub.dead), (1, 1, 1, 1));
    assert!(
        sub.oldest_pending_age.is_some(),
        "a due pending delivery has an age"
    );
    assert_eq!(stats.unrouted_confirms, 0);
}

#[tokio::test]
async fn a_confirm_that_finds_no_subscription_is_kept_as_unrouted() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let id = server.prepare(TOPIC, "order-1").await;
    server
        .admin()
        .delete_subscription(DeleteSubscriptionRequest { name: SUB.into() })
        .await
        .unwrap();

    let state = server
        .producer()
        .confirm(ConfirmRequest {
            message: by_id(&id),
        })
        .await
        .expect("a confirm without subscriptions still confirms")
        .into_inner()
        .state();
    assert_eq!(state, MessageState::Confirmed);
    let message = server.status(&id).await;
    assert_eq!(
        message.outcome(),
        MessageOutcome::Delivering,
        "it reached nobody"
    );
    assert!(message.deliveries.is_empty());

    let stats = server
        .admin()
        .get_stats(GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.unrouted_confirms, 1);
    let topic = stats
        .topics
        .iter()
        .find(|t| t.topic == TOPIC)
        .expect("stats of the topic");
    assert_eq!((topic.confirmed, topic.unrouted), (1, 1));
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
