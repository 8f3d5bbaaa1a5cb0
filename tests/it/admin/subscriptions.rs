//! Admin's subscriptions: create (defaults, idempotent re-create, conflicts), update, delete
//! and list.

use courier::proto::{
    CreateSubscriptionRequest, DeleteSubscriptionRequest, GetSubscriptionRequest,
    ListDeliveriesRequest, ListSubscriptionsRequest, RetryPolicy, Subscription,
    UpdateSubscriptionRequest,
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
