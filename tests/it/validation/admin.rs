//! Admin requests refused: subscriptions (create and update), GetSubscription, Redrive and
//! ListMessages.

use courier::proto::{
    CreateSubscriptionRequest, GetSubscriptionRequest, ListMessagesRequest,
    ListSubscriptionsRequest, RedriveRequest, RetryPolicy, Subscription, UpdateSubscriptionRequest,
};
use tonic::Code;

use super::{DAY, negative};
use crate::harness::*;

#[tokio::test]
async fn subscriptions_are_validated() {
    let server = TestServer::start().await;
    let mut admin = server.admin();
    let policy = |max_attempts, initial_backoff, max_backoff, multiplier| {
        Some(RetryPolicy {
            max_attempts,
            initial_backoff,
            max_backoff,
            multiplier,
        })
    };
    let valid = || subscription(SUB, TOPIC);
    let cases: Vec<(&str, Subscription)> = vec![
        (
            "name",
            Subscription {
                name: String::new(),
                ..valid()
            },
        ),
        (
            "name",
            Subscription {
                name: "bad/name".into(),
                ..valid()
            },
        ),
        (
            "name",
            Subscription {
                name: "n".repeat(129),
                ..valid()
            },
        ),
        (
            "topic",
            Subscription {
                topic: String::new(),
                ..valid()
            },
        ),
        (
            "topic",
            Subscription {
                topic: "bad topic".into(),
                ..valid()
            },
        ),
        (
            "ack_deadline",
            Subscription {
                ack_deadline: ms(999),
                ..valid()
            },
        ),
        (
            "ack_deadline",
            Subscription {
                ack_deadline: secs(12 * 3600 + 1),
                ..valid()
            },
        ),
        (
            "max_attempts",
            Subscription {
                retry_policy: policy(1001, None, None, 0.0),
                ..valid()
            },
        ),
        (
            "initial_backoff",
            Subscription {
                retry_policy: policy(0, secs(DAY + 1), None, 0.0),
                ..valid()
            },
        ),
        (
            "initial_backoff",
            Subscription {
                retry_policy: policy(0, negative(-1000), None, 0.0),
                ..valid()
            },
        ),
        (
            "max_backoff",
            Subscription {
                retry_policy: policy(0, secs(10), secs(5), 0.0),
                ..valid()
            },
        ),
        (
            "max_backoff",
            Subscription {
                retry_policy: policy(0, None, secs(7 * DAY + 1), 0.0),
                ..valid()
            },
        ),
        (
            "multiplier",
            Subscription {
                retry_policy: policy(0, None, None, 0.5),
                ..valid()
            },
        ),
        (
            "multiplier",
            Subscription {
                retry_policy: policy(0, None, None, 10.5),
                ..valid()
            },
        ),
        (
            "push_endpoint",
            Subscription {
                push_endpoint: "not a url".into(),
                ..valid()
            },
        ),
        (
            "push_endpoint",
            Subscription {
                push_endpoint: "ftp://127.0.0.1:21".into(),
                ..valid()
            },
        ),
    ];
    for (field, subscription) in cases {
        let request = CreateSubscriptionRequest {
            subscription: Some(subscription),
        };
        assert_invalid_field(admin.create_subscription(request).await, field);
        server.assert_still_serving().await;
    }
    let missing = CreateSubscriptionRequest { subscription: None };
    assert_invalid_field(admin.create_subscription(missing).await, "subscription");

    let listed = server
        .admin()
        .list_subscriptions(ListSubscriptionsRequest::default())
        .await;
    assert!(
        listed.unwrap().into_inner().subscriptions.is_empty(),
        "nothing refused was created"
    );

    // Updates go through the same checks.
    server.create_subscription(valid()).await;
    let update = UpdateSubscriptionRequest {
        subscription: Some(Subscription {
            ack_deadline: ms(10),
            ..valid()
        }),
    };
    assert_invalid_field(admin.update_subscription(update).await, "ack_deadline");
}

#[tokio::test]
async fn admin_requests_are_validated() {
    let server = TestServer::start().await;
    server.create_subscription(subscription(SUB, TOPIC)).await;
    let mut admin = server.admin();

    assert_invalid_field(
        admin
            .get_subscription(GetSubscriptionRequest {
                name: String::new(),
            })
            .await,
        "name",
    );
    assert_invalid_field(
        admin
            .get_subscription(GetSubscriptionRequest { name: "a b".into() })
            .await,
        "name",
    );
    assert_code(
        admin
            .get_subscription(GetSubscriptionRequest {
                name: "nobody".into(),
            })
            .await,
        Code::NotFound,
    );
    let redrive = RedriveRequest {
        subscription: SUB.into(),
        message_ids: vec!["not-a-uuid".into()],
        ..Default::default()
    };
    assert_invalid_field(admin.redrive(redrive).await, "message_ids");
    let redrive = RedriveRequest {
        subscription: String::new(),
        message_ids: vec![],
        ..Default::default()
    };
    assert_invalid_field(admin.redrive(redrive).await, "subscription");
    let page = ListMessagesRequest {
        page_size: 1001,
        ..Default::default()
    };
    assert_invalid_field(admin.list_messages(page).await, "page_size");
    let filter = ListMessagesRequest {
        topic: "bad topic".into(),
        ..Default::default()
    };
    assert_invalid_field(admin.list_messages(filter).await, "topic");
    server.assert_still_serving().await;
}
